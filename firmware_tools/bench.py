"""`make bench`: the per-frame seal cost on a Pi HQ camera frame (4056x3040), against
its physical floor (SHA-256 of the same bytes: every seal must at least read them
once) and against c2pa-python signing the same file with its default settings, all
in one run on one machine; the scene classifier's latency (int8 at 1 and 2
threads, float32 of the same network) and size; the agent's sustained seals per second
through its pipeline (bench_agent.py); and the serial transport's share of the line rate
against ZMODEM (bench_transport.py); the audit log's durable appends against SQLite,
host verification and inclusion proofs at 1 M records (bench_log.py); `verify`'s sealed files per
second with and without the log, against c2pa-python's reader (bench_verify.py); what tracing
(watermark, pixel fingerprint) adds to the seal path, its PSNR and what it survives
(bench_trace.py). Medians of several runs; JSON out.
"""

import argparse
import hashlib
import io
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import c2pa
from PIL import Image

from ..device.camera import FakeCamera
from ..device.classifier import Classifier
from ..device.seal import JPEG_QUALITY, Sealer
from .bench_agent import bench_agent
from .bench_log import bench_log
from .bench_trace import bench_trace
from .bench_transport import bench_enrolment, bench_transport
from .bench_verify import bench_verify
from .model.bench_classifier import bench_classifier, median_ms
from ..host.lab import enrolled_device, make_vendor

WIDTH, HEIGHT = 4056, 3040
# The seal proper: visible label, implicit label, C2PA, hash + temporary file, log + rename.
SEAL_STAGES = ("explicit_label_ms", "implicit_label_ms", "c2pa_sign_ms", "hash_write_ms", "log_emit_ms")


def bench_seal(runs):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        state = enrolled_device(tmp / "device", make_vendor(tmp / "ca", "Bench Vendor"), "BENCH-1", producer="bench")
        # The classifier runs on every capture; its time is reported apart from the seal
        # stages, which the seal/floor ratios compare.
        sealer = Sealer(state, Classifier(num_threads=2))
        frame = FakeCamera(WIDTH, HEIGHT).capture_array()
        sealer.seal(frame, "rig", tmp / "out")  # warm-up: font layout, c2pa library load
        stages = {stage: [] for stage in SEAL_STAGES}
        totals, encode, classify = [], [], []
        for _ in range(runs):
            result = sealer.seal(frame, "rig", tmp / "out")
            for stage in SEAL_STAGES:
                stages[stage].append(result["timings"][stage])
            totals.append(sum(result["timings"][s] for s in SEAL_STAGES))
            encode.append(result["timings"]["jpeg_encode_ms"])
            classify.append(median_ms(lambda: sealer.classifier.classify(frame), 1, warmup=0))
        sealed = Path(result["path"]).read_bytes()

        # The same file as c2pa-python's default settings would sign it: the labelled
        # JPEG just before our C2PA step, signed with the same device key.
        encoded = io.BytesIO()
        Image.fromarray(frame).save(encoded, "JPEG", quality=JPEG_QUALITY)
        _, unsigned = sealer.apply_implicit_label(encoded.getvalue(), "1", result["produce_id"])

        def c2pa_default():
            signer = c2pa.Signer.from_callback(state.keystore.sign_der, c2pa.C2paSigningAlg.ES256, state.chain_pem())
            manifest = {"claim_generator_info": [{"name": "bench", "version": "1"}],
                        "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                            {"action": "c2pa.created", "digitalSourceType":
                             "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"}]}}]}
            c2pa.Builder(json.dumps(manifest)).sign(signer, "image/jpeg", io.BytesIO(unsigned), io.BytesIO())

        c2pa_default_ms = median_ms(c2pa_default, runs, warmup=1)
        sha_ms = median_ms(lambda: hashlib.sha256(sealed).digest(), max(runs, 15), warmup=1)
    seal_ms = round(statistics.median(totals), 3)
    return {
        "frame": "%dx%d" % (WIDTH, HEIGHT),
        "runs": runs,
        "sealed_file_bytes": len(sealed),
        "seal_ms_median": seal_ms,
        "seal_stage_ms_median": {s: round(statistics.median(v), 3) for s, v in stages.items()},
        "jpeg_encode_ms_median_excluded": round(statistics.median(encode), 3),
        "classify_ms_median_2_threads": round(statistics.median(classify), 3),
        "sha256_of_sealed_file_ms_median": sha_ms,
        "c2pa_python_default_sign_ms_median": c2pa_default_ms,
        "seal_vs_sha256_floor": round(seal_ms / sha_ms, 2),
        "seal_vs_c2pa_python_default": round(seal_ms / c2pa_default_ms, 3),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m synthseal.firmware_tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--runs", type=int, default=9, help="timed runs per measurement (default: %(default)s)")
    parser.add_argument("--sections", default="seal,trace,classifier,agent,transport,enrolment,log,verify",
                        help="comma-separated sections to run (default: %(default)s)")
    parser.add_argument("--agent-frames", type=int, default=16,
                        help="frames per agent throughput measurement (default: %(default)s)")
    parser.add_argument("--transport-bytes", type=int, default=1 << 20,
                        help="bytes of log records per transfer (default: %(default)s)")
    parser.add_argument("--transport-runs", default="115200:1,1000000:3",
                        help="repetitions per baud rate, BAUD:RUNS,... (default: %(default)s)")
    parser.add_argument("--log-records", type=int, default=2000,
                        help="records per durable-append measurement (default: %(default)s)")
    parser.add_argument("--log-verify-records", type=int, default=20000,
                        help="records in the pulled log that `log verify` re-checks (default: %(default)s)")
    parser.add_argument("--proof-leaves", type=int, default=1 << 20,
                        help="tree size for the inclusion proof measurement (default: %(default)s)")
    parser.add_argument("--verify-files", type=int, default=24,
                        help="sealed files per verify throughput measurement (default: %(default)s)")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    report = {"machine": {"python": platform.python_version(), "machine": platform.machine(),
                          "c2pa_sdk": c2pa.sdk_version()}}
    if "seal" in sections:
        report["seal"] = bench_seal(args.runs)
    if "trace" in sections:
        report["trace"] = bench_trace(args.runs)
    if "classifier" in sections:
        report["classifier"] = bench_classifier()
    if "agent" in sections:
        report["agent"] = bench_agent(args.agent_frames, runs=max(3, args.runs // 2))
    if "transport" in sections:
        runs = dict(tuple(int(v) for v in item.split(":")) for item in args.transport_runs.split(","))
        report["transport"] = bench_transport(args.transport_bytes, bauds=tuple(runs), runs=runs,
                                              log=lambda line: print(line, file=sys.stderr, flush=True))
    if "enrolment" in sections:
        report["enrolment"] = bench_enrolment(runs=max(1, args.runs // 3),
                                              log=lambda line: print(line, file=sys.stderr, flush=True))
    if "log" in sections:
        report["log"] = bench_log(args.log_records, args.log_verify_records, args.proof_leaves)
    if "verify" in sections:
        report["verify"] = bench_verify(args.verify_files, runs=max(3, args.runs // 3))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
