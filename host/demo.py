"""`make demo`: the whole job on a simulated device, step by step.

The device agent runs as its own process (`synthseal-device run`) with a fake camera in
lab mode; the host provisions it over a virtual serial link made of real
pseudo-terminals, which the agent serves; a rig client (this process, through the
agent's socket) hands it rendered frames; the host pulls the log over the same link.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .client import DeviceClient, SerialTransport
from .inventory import Inventory
from .ca import pem
from .lab import make_vendor
from .logdb import pull
from .provision import Steps, provision
from .simlink import LinkFaults, VirtualSerialLink
from .verify import Verifier
from .verify_report import write_table
from ..device.camera import FakeCamera
from ..device.client import AgentClient
from ..device.launch import AgentProcess, write_config

DEMO_MARKER = ".synthseal-demo"
SERIAL = "DEMO-0001"
PRODUCER = "synthseal-demo"
DEMO_CA_PASSPHRASE = "demo-only-passphrase"  # the demo CA is thrown away with its folder


def _step(n, text):
    print("\n[%d] %s" % (n, text), flush=True)


def _device(state, *args):
    cmd = [sys.executable, "-m", "synthseal.device.cli", "--state", str(state)] + [str(a) for a in args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _write_config(path, state, files, socket_path, port, sensor_noise, seed):
    write_config(path, {
        "agent": {"state_dir": str(state), "output_dir": str(files), "socket": str(socket_path),
                  "lab": True},  # a lab bench: the fake camera may run, and every record says so
        "camera": {"source": "fake", "width": 1280, "height": 960, "fake_sensor_noise": float(sensor_noise),
                   "fake_seed": seed},
        "serial": {"port": port},
    })


def _start_agent(config, agent_log):
    agent = AgentProcess(config, agent_log).start()
    # Say so when the agent runs without its classifier (e.g. a host-only install).
    for line in agent.output_since_start().splitlines():
        if line.startswith("warning:"):
            print("    agent %s" % line)
    return agent


def _print_results(results, indent="    "):
    for r in results:
        print("%s%s  seq %d  %-20s Label %s  %s  (%s%s)" % (
            indent, Path(r["file"]).name, r["seq"], r["rule"], r["label"] or "-", r["dst"],
            r["origin"]["kind"] + ":" + r["origin"].get("client", r["origin"].get("camera", "?")),
            ", lab" if r["lab"] else ""))


def run_demo(out, frames=6):
    out = Path(out).resolve()
    if out.exists():
        if not (out / DEMO_MARKER).exists():
            print("error: %s exists and is not a demo folder; choose another --out" % out, file=sys.stderr)
            return 2
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / DEMO_MARKER).write_text("made by `synthseal-host demo`; safe to delete\n")
    ca_dir, state, files, db = out / "vendor-ca", out / "device", out / "device" / "out", out / "host" / "audit.sqlite"
    db.parent.mkdir()

    _step(1, "Vendor: demo root and issuing CA (keys encrypted at rest; for demonstration only) and a "
             "technician's operator credential (roles provisioner and collector)")
    vendor = make_vendor(ca_dir, "synthseal Demo Vendor", DEMO_CA_PASSPHRASE)
    root = ca_dir / "vendor-root.pem"
    print("    trust anchor: %s\n    operator: %s" % (root, vendor.operator.describe()))

    _step(2, "Device %s at the factory: a serial number only; no key exists yet" % SERIAL)
    _device(state, "init", "--serial", SERIAL)

    socket_dir = Path(tempfile.mkdtemp(prefix="synthseal-demo-"))  # short: Unix socket paths are limited
    config, agent_log = out / "agent.toml", out / "agent.log"
    rig_frames = FakeCamera(1280, 960, seed=0, sensor_noise=0)  # the rig's renders: clean, as from a GPU
    try:
        # The serial cable: a simulated UART, 115200 baud 8N1, 2 ms latency, bit error rate 1e-5.
        with VirtualSerialLink(baudrate=115200, latency=0.002,
                               faults=LinkFaults(bit_error_rate=1e-5, seed=1)) as link:
            _step(3, "Device: the agent starts as its own process (lab mode: fake camera), owns the state, "
                     "serves its socket and the serial port")
            _write_config(config, state, files, socket_dir / "agent.sock", link.device_port, 3, 0)
            agent = _start_agent(config, agent_log)
            try:
                print("    config %s; agent log %s" % (config, agent_log))
                _step(4, "Host: provision the device over the simulated UART (115200 baud, bit error rate 1e-5): "
                         "mutual authentication, keys made on the device, CSRs checked, certificates issued, "
                         "signed configuration applied, inventory updated")
                host = DeviceClient(SerialTransport(link.host_port, 115200), give_up_after=30.0)
                with Inventory(out / "host" / "inventory.sqlite") as inventory:
                    summary = provision(host, vendor.ca, inventory, vendor.operator, {"producer": PRODUCER},
                                        steps=Steps(5, sys.stdout))
                host.transport.close()
                print("    enrolled in %.1f s: identity %s..., content certificate %s..., configuration version %d"
                      % (summary["seconds"], summary["identity_fingerprint"][:16], summary["content_fingerprint"][:16],
                         summary["config_version"]))
                _step(5, "Device: %d frames in turn: rig render and composite from a rig client over the socket, "
                         "real captures from the agent's own camera; each classified, labelled, sealed, logged"
                         % frames)
                with AgentClient(socket_dir / "agent.sock", client="demo-rig") as rig:
                    for n in range(frames):
                        source = ("rig", "capture", "composite")[n % 3]
                        if source == "capture":
                            _print_results([o["result"] for o in rig.capture(1, "capture")["results"]])
                        else:
                            frame = rig_frames.capture_array()
                            _print_results([rig.submit_frame(frame, source=source)])
            finally:
                agent.stop()

            _step(6, "Device: the camera now films a monitor showing a render (2 clean frames, declared as real "
                     "captures); the agent restarts and its classifier flags those it scores at or above its threshold")
            _write_config(config, state, files, socket_dir / "agent.sock", link.device_port, 0, 1)
            agent = _start_agent(config, agent_log)
            try:
                with AgentClient(socket_dir / "agent.sock", client="demo-cli") as client:
                    _print_results([o["result"] for o in client.capture(2, "capture")["results"]])

                _step(7, "Host: authenticate as collector, check the device's identity against the vendor root, "
                         "pull the audit log into SQLite over the same line")
                host = DeviceClient(SerialTransport(link.host_port, 115200), give_up_after=30.0)
                host.authenticate(vendor.operator, vendor.root_pem)
                info = host.status()
                print("    device %s, firmware %s, %s, log head seq %d" % (
                    info["serial"], info["firmware"], info["state"], info["log"]["next_seq"] - 1))
                summary = pull(host, db)
                host.transport.close()
                print("    %d records pulled, hash chain verified, stored in %s" % (summary["pulled"], db))
                print("    signed tree head: %d records, root %s..., checkpoint %d, signed by the device's identity key "
                      "and consistent with the last one the host saw" % (
                          summary["checkpoint"]["size"], summary["checkpoint"]["root"][:16],
                          summary["checkpoint"]["counter"]))
                print("    %d bytes of records in %.2f s (a log this small is mostly the handshake); "
                      "the line flipped %d bits, and any frame they damaged was asked for again"
                      % (summary["payload_bytes"], summary["seconds"],
                         link.stats["to_host"]["bit_errors"] + link.stats["to_device"]["bit_errors"]))
            finally:
                agent.stop()
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)

    _step(8, "Host: verify every output file")
    # With the log and the vendor's CRL every check can be made: a file is verified, not incomplete.
    crl = ca_dir / "vendor-crl.pem"
    crl.write_text(vendor.ca.crl_pem() + pem(vendor.ca.issuing))
    with Verifier(vendor.root_pem, db, crl.read_text()) as verifier:
        reports = [verifier.verify(path) for path in sorted(files.glob("*.jpg"))]
    write_table(reports, sys.stdout)
    ok = all(r["ok"] for r in reports)
    print("\nSealed files: %s\nAudit log:    %s\nTrust anchor: %s\nCRL:          %s" % (files, db, root, crl))
    print("Check them yourself: .venv/bin/synthseal-host verify --trust-anchor %s --db %s --crl %s -r %s"
          % (root, db, crl, files))
    print("\n%s" % ("All files verified." if ok else "Verification FAILED."))
    return 0 if ok else 1
