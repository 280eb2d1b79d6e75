"""`make bench`, section `verify`: how many sealed files per second `verify` checks, from
the file alone and with the pulled log and the CRL, against its references in the same
run on the same files:

- the physical floor: reading each file and hashing it with SHA-256 (verify reads every
  byte and hashes it for the log lookup);
- the reference tool: c2pa-python reading and validating the same files against the same
  trust anchor (verify's C2PA check is this, and everything else is ours).

The files are 1920x1080 frames from the device's own sealer, half rig frames (both
labels, the visible one found in the pixels) and half real captures.
"""

import hashlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import c2pa

from ..device.camera import FakeCamera
from ..device.seal import Sealer
from ..device.service import DeviceAnswers
from ..host import ca, logdb
from ..host.client import DeviceClient
from ..host.lab import enrolled_device, make_vendor
from ..host.simlink import LoopbackTransport
from ..host.verify import Verifier, c2pa_reader_context

WIDTH, HEIGHT = 1920, 1080


def _files_per_s(paths, verify_one, runs):
    """Median files per second over `runs` passes over all paths."""
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        for path in paths:
            verify_one(path)
        rates.append(len(paths) / (time.perf_counter() - t))
    return round(statistics.median(rates), 1)


def bench_verify(files=24, runs=3):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vendor = make_vendor(tmp / "ca", "Bench Vendor")
        state = enrolled_device(tmp / "device", vendor, "BENCH-1", producer="bench")
        sealer = Sealer(state, lab=True)
        camera = FakeCamera(WIDTH, HEIGHT, seed=1)
        paths = [Path(sealer.seal(camera.capture_array(), ("rig", "capture")[i % 2], tmp / "out",
                                  origin=camera.origin)["path"]) for i in range(files)]
        client = DeviceClient(LoopbackTransport(DeviceAnswers(state).answer), give_up_after=30)
        client.authenticate(vendor.operator, vendor.root_pem)
        db = tmp / "audit.sqlite"
        logdb.pull(client, db)
        crl = vendor.ca.crl_pem() + ca.pem(vendor.ca.issuing)

        def floor(path):
            hashlib.sha256(path.read_bytes()).digest()

        context = c2pa_reader_context(vendor.root_pem)

        def c2pa_reader(path):
            with c2pa.Reader("image/jpeg", io.BytesIO(path.read_bytes()), context=context) as reader:
                assert reader.get_validation_state() == "Trusted"

        results = {}
        for name, db_path, crl_pem, expected in (("file_alone", None, None, "incomplete"),
                                                 ("with_log", db, None, "incomplete"),
                                                 ("with_log_and_crl", db, crl, "verified")):
            with Verifier(vendor.root_pem, db_path, crl_pem) as verifier:
                verifier.verify(paths[0])  # warm-up: font layout, c2pa library
                outcomes = {verifier.verify(p)["result"] for p in paths}
                assert outcomes == {expected}, (name, outcomes)
                results[name] = _files_per_s(paths, verifier.verify, runs)
        floor_rate = _files_per_s(paths, floor, runs)
        reader_rate = _files_per_s(paths, c2pa_reader, runs)
        sizes = [p.stat().st_size for p in paths]
        return {"files": files, "frame": "%dx%d" % (WIDTH, HEIGHT), "mean_file_bytes": round(statistics.mean(sizes)),
                "verify_files_per_s": results,
                "floor_read_sha256_files_per_s": floor_rate,
                "c2pa_reader_files_per_s": reader_rate,
                "verify_with_log_vs_c2pa_reader": round(results["with_log"] / reader_rate, 2),
                "verify_file_alone_vs_c2pa_reader": round(results["file_alone"] / reader_rate, 2)}
