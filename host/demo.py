"""`make demo`: the whole job on a simulated device, step by step.

The device agent runs as its own processes (`synthseal-device capture`, `serve`) on a
virtual serial link made of real pseudo-terminals; the host side is this process.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import ca
from .client import DeviceClient, SerialTransport
from .cli import print_verify_table
from .logdb import pull
from .simlink import LinkFaults, VirtualSerialLink
from .verify import verify_file

DEMO_MARKER = ".synthseal-demo"
SERIAL = "DEMO-0001"
PRODUCER = "synthseal-demo"


def _step(n, text):
    print("\n[%d] %s" % (n, text), flush=True)


def _device(state, *args):
    cmd = [sys.executable, "-m", "synthseal.device.cli", "--state", str(state)] + [str(a) for a in args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


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

    _step(1, "Vendor: demo root and issuing CA (keys for demonstration only)")
    root = ca.create_vendor_ca(ca_dir, "synthseal Demo Vendor")
    print("    trust anchor: %s" % root)

    _step(2, "Device %s: content key born on the device; vendor CA issues its certificate" % SERIAL)
    csr = out / "device.csr"
    _device(state, "init", "--serial", SERIAL, "--producer", PRODUCER, "--csr-out", csr)
    chain = out / "device-chain.pem"
    chain.write_text(ca.issue_content_certificate(ca_dir, csr.read_text(), SERIAL))
    _device(state, "install-cert", chain)
    print("    key: %s (mode 0600, never leaves the device)" % (state / "keys" / "content-key.pem"))

    _step(3, "Device: fake camera, %d frames declared rig render / real capture / composite in turn, "
             "then 2 clean renders fed in undeclared (declared as real captures)" % frames)
    _step(4, "Device: each frame classified (int8 TFLite), labelled, sealed (C2PA) and logged")
    for source, count, noise, seed in (("rig,capture,composite", frames, 3, 0), ("capture", 2, 0, 1)):
        print(_device(state, "capture", "--camera", "fake", "--width", 1280, "--height", 960, "--frames", count,
                      "--source", source, "--sensor-noise", noise, "--seed", seed, "--out", files)
              .rstrip().replace(str(out) + "/", "    "))

    _step(5, "Host: pull the audit log into SQLite over a simulated UART (115200 baud 8N1, 2 ms latency, "
             "bit error rate 1e-5)")
    with VirtualSerialLink(baudrate=115200, latency=0.002, faults=LinkFaults(bit_error_rate=1e-5, seed=1)) as link:
        service = subprocess.Popen([sys.executable, "-m", "synthseal.device.cli", "--state", str(state), "serve",
                                    "--port", link.device_port], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)  # the service opens its port
            client = DeviceClient(SerialTransport(link.host_port, 115200), give_up_after=30.0)
            info = client.info()
            print("    device %s, firmware %s, %s, log head seq %d" % (info["serial"], info["firmware"], info["state"],
                                                                       info["log"]["next_seq"] - 1))
            summary = pull(client, db)
            client.transport.close()
            print("    %d records pulled, hash chain verified, stored in %s" % (summary["pulled"], db))
            print("    %d bytes of records in %.2f s (a log this small is mostly the HELLO exchange); "
                  "the line flipped %d bits, and any frame they damaged was asked for again"
                  % (summary["payload_bytes"], summary["seconds"],
                     link.stats["to_host"]["bit_errors"] + link.stats["to_device"]["bit_errors"]))
        finally:
            service.terminate()
            service.wait()

    _step(6, "Host: verify every output file")
    reports = [verify_file(path, root.read_text(), db) for path in sorted(files.glob("*.jpg"))]
    print_verify_table(reports)
    ok = all(r["ok"] for r in reports)
    print("\nSealed files: %s\nAudit log:    %s\nTrust anchor: %s" % (files, db, root))
    print("Check one yourself: .venv/bin/synthseal-host verify --trust-anchor %s --db %s %s/*.jpg" % (root, db, files))
    print("\n%s" % ("All files verified." if ok else "Verification FAILED."))
    return 0 if ok else 1
