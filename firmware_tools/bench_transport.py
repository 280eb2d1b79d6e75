"""`make bench`, transport section: a log pull through the link simulator against the
line's capacity, and against ZMODEM (Debian's lrzsz `sz`/`rz`) moving the same bytes
over the same simulated line (baud rate, 2 ms latency, the same seeded bit errors), all
in one run.

Efficiency = payload bytes / (baud / 10 x seconds): the share of what an 8N1 line could
carry in that time that arrived as payload. For a pull the payload is the records'
bytes and the time is the whole `pull` (HELLO, streaming, verification, SQLite); for
ZMODEM the payload is a file holding the same record bytes and the time runs from
starting `rz` until both programs have exited with the file received intact.
"""

import os
import shutil
import statistics
import subprocess
import tempfile
import termios
import time
from pathlib import Path

from ..device.core import auditlog, logrecord
from ..device.launch import AgentProcess, write_config
from ..host import logdb
from ..host.lab import enrolled_device, make_vendor
from ..host.client import DeviceClient, SerialTransport
from ..host.simlink import LinkFaults, VirtualSerialLink

LATENCY = 0.002
# An ordinary capture's decision: records of about 223 bytes, like a camera's log.
CAPTURE_DECISION = {"source": "capture", "rule": "capture", "label": None, "explicit": False,
                    "dst": "digitalCapture", "art17": None, "th": 0.5}
_TERMIOS_SPEED = {115200: termios.B115200, 1000000: getattr(termios, "B1000000", termios.B115200)}

def make_device(directory, payload_bytes):
    """An enrolled device whose log holds at least `payload_bytes` of records; the
    vendor that enrolled it is `state.vendor` (its operator pulls)."""
    vendor = make_vendor(directory / "ca", "Bench Vendor")
    # The bench fills the log as the agent would, then hands the state to it.
    state = enrolled_device(directory / "device", vendor, "BENCH-1", producer="bench")
    state.vendor = vendor
    log = state.log()
    durable, auditlog._fsync = auditlog._fsync, None  # filling the fixture fast; not what is measured
    try:
        total, i = 0, 0
        while total < payload_bytes:
            i += 1
            _, record = log.append(1700000000000 + i, bytes(32), logrecord.EVENT_SEAL,
                                   "BENCH-1-%08d-ab12" % i, CAPTURE_DECISION)
            total += len(record)
    finally:
        auditlog._fsync = durable
        state.release()
    return state


def _start_device(state, port, baud):
    """The device agent serving its log on `port` (no camera, no classifier: only the log)."""
    workdir = state.directory.parent
    config = workdir / ("agent-%s.toml" % Path(port).name)
    write_config(config, {
        "agent": {"state_dir": str(state.directory), "output_dir": str(workdir / "out"),
                  "socket": str(workdir / "agent.sock")},
        "camera": {"source": "none"}, "classifier": {"model": "none"},
        "serial": {"port": port, "baud": baud},
    })
    return AgentProcess(config, workdir / "agent.log").start()


def pull_once(state, baud, ber, seed, workdir):
    faults = LinkFaults(bit_error_rate=ber, seed=seed)
    db = Path(workdir) / ("pull-%d-%g-%d.sqlite" % (baud, ber, seed))
    with VirtualSerialLink(baudrate=baud, latency=LATENCY, faults=faults) as link:
        service = _start_device(state, link.device_port, baud)
        try:
            client = DeviceClient(SerialTransport(link.host_port, baud), give_up_after=120)
            client.authenticate(state.vendor.operator, state.vendor.root_pem)
            summary = logdb.pull(client, db)
            client.transport.close()
        finally:
            service.stop()
        bit_errors = link.stats["to_host"]["bit_errors"] + link.stats["to_device"]["bit_errors"]
    db.unlink()
    return {"efficiency": summary["efficiency"], "seconds": summary["seconds"],
            "payload_bytes": summary["payload_bytes"], "bit_errors": bit_errors}


def _set_speed(port, baud):
    """lrzsz sizes its blocks by the tty's speed: tell it the simulated one."""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    try:
        attrs = termios.tcgetattr(fd)
        attrs[4] = attrs[5] = _TERMIOS_SPEED[baud]
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    finally:
        os.close(fd)


def zmodem_once(payload_file, baud, ber, seed, workdir):
    faults = LinkFaults(bit_error_rate=ber, seed=seed)
    inbox = Path(tempfile.mkdtemp(dir=workdir, prefix="rz-"))
    size = payload_file.stat().st_size
    with VirtualSerialLink(baudrate=baud, latency=LATENCY, faults=faults) as link:
        for port in (link.host_port, link.device_port):
            _set_speed(port, baud)
        with open(link.host_port, "r+b", buffering=0) as host, open(link.device_port, "r+b", buffering=0) as dev:
            started = time.monotonic()
            rz = subprocess.Popen(["rz", "-b", "-y", "-q"], stdin=host, stdout=host, stderr=subprocess.DEVNULL,
                                  cwd=inbox)
            sz = subprocess.Popen(["sz", "-b", "-q", str(payload_file)], stdin=dev, stdout=dev,
                                  stderr=subprocess.DEVNULL)
            try:
                sz_rc, rz_rc = sz.wait(timeout=600), rz.wait(timeout=60)
            finally:
                for proc in (sz, rz):
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            seconds = time.monotonic() - started
        bit_errors = link.stats["to_host"]["bit_errors"] + link.stats["to_device"]["bit_errors"]
    received = inbox / payload_file.name
    intact = received.exists() and received.read_bytes() == payload_file.read_bytes()
    shutil.rmtree(inbox)
    return {"efficiency": round(size / (baud / 10.0 * seconds), 4) if intact else 0.0, "seconds": round(seconds, 3),
            "payload_bytes": size, "bit_errors": bit_errors, "intact": intact, "exit_codes": [sz_rc, rz_rc]}


def _median(runs):
    return round(statistics.median(r["efficiency"] for r in runs), 4)


def bench_transport(payload_bytes=1 << 20, bauds=(115200, 1000000), bers=(0.0, 1e-5), runs=None, log=print):
    """`runs` maps baud -> repetitions (default: 1 at 115200, where 1 MB takes 90 s
    of line time; 3 at 1 Mbaud)."""
    runs = runs or {115200: 1, 1000000: 3}
    if not (shutil.which("sz") and shutil.which("rz")):
        raise SystemExit("bench: ZMODEM reference missing: install Debian's lrzsz (`make setup` does)")
    workdir = Path(tempfile.mkdtemp(prefix="synthseal-bench-transport-"))
    try:
        state = make_device(workdir, payload_bytes)
        log_ = state.log()
        records = log_.read(1, log_.count)
        payload_file = workdir / "records.bin"
        payload_file.write_bytes(b"".join(records))
        report = {"payload_bytes": payload_file.stat().st_size, "records": len(records),
                  "record_bytes_median": int(statistics.median(len(r) for r in records)),
                  "latency_ms": LATENCY * 1000, "links": []}
        for baud in bauds:
            for ber in bers:
                ours, zmodem = [], []
                for i in range(runs.get(baud, 1)):
                    seed = 1000 + i
                    ours.append(pull_once(state, baud, ber, seed, workdir))
                    zmodem.append(zmodem_once(payload_file, baud, ber, seed, workdir))
                    log("transport %7d baud, ber %g, run %d: synthseal %.1f %%, zmodem %.1f %%"
                        % (baud, ber, i + 1, 100 * ours[-1]["efficiency"], 100 * zmodem[-1]["efficiency"]))
                report["links"].append({
                    "baud": baud, "bit_error_rate": ber, "runs": len(ours),
                    "synthseal_efficiency_median": _median(ours), "zmodem_efficiency_median": _median(zmodem),
                    "synthseal_vs_zmodem": round(_median(ours) / _median(zmodem), 3) if _median(zmodem) else None,
                    "synthseal_runs": ours, "zmodem_runs": zmodem})
        return report
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench_enrolment(runs=3, baud=115200, log=print):
    """A whole enrolment (`provision`) of a factory-fresh device served by the agent
    over a simulated UART at `baud`, 2 ms latency, clean line: median seconds, the bytes
    on the wire each way, and the ratio to the line's floor for those bytes (8N1, the
    two directions in turn)."""
    from ..device.state import DeviceState
    from ..host.inventory import Inventory
    from ..host.provision import provision
    workdir = Path(tempfile.mkdtemp(prefix="synthseal-bench-enrol-"))
    try:
        vendor = make_vendor(workdir / "ca", "Bench Vendor")
        results = []
        for i in range(runs):
            state = DeviceState(workdir / ("device-%d" % i))
            state.init("ENROL-%d" % i)
            with VirtualSerialLink(baudrate=baud, latency=LATENCY) as link:
                agent = _start_device(state, link.device_port, baud)
                try:
                    client = DeviceClient(SerialTransport(link.host_port, baud), give_up_after=120)
                    with Inventory(workdir / "inventory.sqlite") as inventory:
                        started = time.monotonic()
                        provision(client, vendor.ca, inventory, vendor.operator, {"producer": "bench"})
                        seconds = time.monotonic() - started
                    client.transport.close()
                    stats = link.stats
                finally:
                    agent.stop()
            wire = stats["to_device"]["bytes"] + stats["to_host"]["bytes"]
            # Each step waits for the answer before the next request, so the directions
            # take turns: the floor is all the bytes at the line rate.
            floor = wire * 10.0 / baud
            results.append({"seconds": round(seconds, 3), "bytes_to_device": stats["to_device"]["bytes"],
                            "bytes_to_host": stats["to_host"]["bytes"], "line_floor_seconds": round(floor, 3)})
            log("enrolment at %d baud, run %d: %.2f s, %d bytes on the wire" % (baud, i + 1, seconds, wire))
        median = statistics.median(r["seconds"] for r in results)
        floor = statistics.median(r["line_floor_seconds"] for r in results)
        return {"baud": baud, "latency_ms": LATENCY * 1000, "runs": runs, "seconds_median": round(median, 3),
                "line_floor_seconds_median": round(floor, 3), "vs_line_floor": round(median / floor, 2),
                "enrolments": results}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
