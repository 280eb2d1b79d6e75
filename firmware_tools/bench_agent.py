"""The agent's sustained throughput at 4056x3040, in its own process as on a device:
seals per second and per-frame latency (p50, p99) from its own camera and through rig
intake over the socket, next to the single-frame cost of each pipeline stage measured
in the same run. A pipelined agent approaches the slowest stage; an unpipelined one
would take the sum of all of them.
"""

import statistics
import tempfile
import threading
import time
from pathlib import Path

from ..device.camera import FakeCamera
from ..device.classifier import Classifier
from ..device.client import AgentClient
from ..device.launch import AgentProcess, write_config
from ..device.seal import Sealer
from ..host.lab import enrolled_device, make_vendor

WIDTH, HEIGHT = 4056, 3040
# The pipeline's two worker stages (device/pipeline.py) and the timings each one spends.
PREPARE_STAGE = ("classify_ms", "watermark_ms", "explicit_label_ms", "jpeg_encode_ms", "fingerprint_ms")
SEAL_STAGE = ("implicit_label_ms", "c2pa_sign_ms", "hash_write_ms", "log_emit_ms")
RIG_CLIENTS = 3  # each waits for its result before sending the next frame, as the Python client does


def _percentile(values, fraction):
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))], 3)


def _stage_costs(tmp, vendor, runs):
    """Single-frame cost of each stage, sealed back to back in this process."""
    state = enrolled_device(tmp / "stages", vendor, "BENCH-2", producer="bench")
    try:
        camera = FakeCamera(WIDTH, HEIGHT, frame_pool=1)
        sealer = Sealer(state, Classifier(num_threads=2), lab=True)
        sealer.seal(camera.capture_array(), "capture", tmp / "stages-out", origin=camera.origin)  # warm-up
        timings = [sealer.seal(camera.capture_array(), "capture", tmp / "stages-out", origin=camera.origin)["timings"]
                   for _ in range(runs)]
    finally:
        state.release()
    prepare = statistics.median(sum(t[k] for k in PREPARE_STAGE) for t in timings)
    seal = statistics.median(sum(t[k] for k in SEAL_STAGE) for t in timings)
    return {"prepare_stage_ms_median": round(prepare, 3), "seal_stage_ms_median": round(seal, 3),
            "single_frame_total_ms": round(prepare + seal, 3), "slowest_stage_ms": round(max(prepare, seal), 3),
            "slowest_stage": "prepare (classify, watermark, visible label, JPEG, fingerprint)" if prepare >= seal else
                             "seal (implicit label, C2PA, write, log)"}


def _rates(count, seconds, latencies):
    return {"frames": count, "seconds": round(seconds, 3), "seals_per_second": round(count / seconds, 3),
            "interval_ms": round(1000.0 * seconds / count, 3),
            "latency_ms_p50": _percentile(latencies, 0.5), "latency_ms_p99": _percentile(latencies, 0.99)}


def bench_agent(frames=16, runs=5):
    with tempfile.TemporaryDirectory(prefix="synthseal-bench-") as tmp:
        tmp = Path(tmp)
        vendor = make_vendor(tmp / "ca", "Bench Vendor")
        stages = _stage_costs(tmp, vendor, runs)
        enrolled_device(tmp / "device", vendor, "BENCH-1", producer="bench").release()
        config = tmp / "agent.toml"
        write_config(config, {
            "agent": {"state_dir": str(tmp / "device"), "output_dir": str(tmp / "out"),
                      "socket": str(tmp / "agent.sock"), "lab": True, "queue_depth": 4, "busy_timeout_s": 120},
            "camera": {"source": "fake", "width": WIDTH, "height": HEIGHT, "fake_frame_pool": 2},
            "classifier": {"model": "shipped", "threads": 2},
            "serial": {"port": ""},
        })
        agent = AgentProcess(config, tmp / "agent.log").start(timeout=120)
        try:
            with AgentClient(tmp / "agent.sock", client="bench-camera", timeout=600) as client:
                client.capture(2)  # warm-up: font layout, C2PA library, interpreter
                started = time.perf_counter()
                answer = client.capture(frames)
                camera_seconds = time.perf_counter() - started
            camera_latency = [o["result"]["latency_ms"] for o in answer["results"]]
            assert all(o["ok"] for o in answer["results"]), answer

            rig_frame = FakeCamera(WIDTH, HEIGHT, sensor_noise=0, frame_pool=1).capture_array()
            latencies, errors = [], []
            lock = threading.Lock()

            def rig(n, count):
                try:
                    with AgentClient(tmp / "agent.sock", client="bench-rig-%d" % n, timeout=600) as rig_client:
                        for _ in range(count):
                            t = time.perf_counter()
                            rig_client.submit_frame(rig_frame, source="rig")
                            with lock:
                                latencies.append(1000.0 * (time.perf_counter() - t))
                except Exception as err:
                    errors.append(repr(err))

            rig(0, 1)  # warm-up
            latencies.clear()
            threads = [threading.Thread(target=rig, args=(n, frames // RIG_CLIENTS)) for n in range(RIG_CLIENTS)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            intake_seconds = time.perf_counter() - started
            if errors:
                raise RuntimeError("intake failed: %s" % errors)
        finally:
            agent.stop()
    camera = _rates(frames, camera_seconds, camera_latency)
    intake = _rates(len(latencies), intake_seconds, latencies)
    for result in (camera, intake):
        result["interval_vs_single_frame_total"] = round(result["interval_ms"] / stages["single_frame_total_ms"], 3)
        result["interval_vs_slowest_stage"] = round(result["interval_ms"] / stages["slowest_stage_ms"], 3)
    return {"frame": "%dx%d" % (WIDTH, HEIGHT), "stages_single_frame": stages,
            "camera_lab_fake_sensor": camera, "intake_raw_rgb_%d_clients" % RIG_CLIENTS: intake,
            "note": "camera latency: queued to committed; intake latency: client round trip including the "
                    "37 MB transfer over the socket. interval_vs_*: below 1 means stages overlap."}
