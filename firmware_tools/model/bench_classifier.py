"""Classifier latency and size: int8 at 1 and 2 threads, float32 of the same network.

`bench_classifier()` is what `make bench` and the model card report. Each figure is the
median over repeated invocations after a warm-up, on the machine it runs on. A "frame"
is all the model's patches: what classify() costs per capture. The whole-classify
figure includes cutting the patches out of a full-resolution 4056x3040 BGR frame.
"""

import os
import statistics
import time
from multiprocessing import Event, Process
from pathlib import Path

import numpy as np

from ...device.classifier import DEFAULT_LABELS, DEFAULT_MODEL, Classifier
from .tflite_eval import FloatModel

DEFAULT_FLOAT_MODEL = Path(DEFAULT_MODEL).with_name("synthseal_scene_float32.tflite")
CAMERA_FRAME_SHAPE = (3040, 4056, 3)  # Raspberry Pi HQ camera full resolution
THREAD_COUNTS = (1, 2)


def median_ms(function, repeats, warmup=5):
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000.0)
    return round(statistics.median(samples), 3)


def _spin(stop):
    while not stop.is_set():
        sum(range(10000))


class CoresBusy:
    """Keeps every core of this machine busy in other processes (a loaded device)."""

    def __init__(self, count=None):
        self.count = count or os.cpu_count() or 2

    def __enter__(self):
        self.stop = Event()
        self.workers = [Process(target=_spin, args=(self.stop,), daemon=True) for _ in range(self.count)]
        for worker in self.workers:
            worker.start()
        time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for worker in self.workers:
            worker.join(5)


def bench_classifier(model_path=DEFAULT_MODEL, labels_path=DEFAULT_LABELS, float_model_path=DEFAULT_FLOAT_MODEL,
                     repeats=100, loaded=True):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, CAMERA_FRAME_SHAPE, dtype=np.uint8)
    result = {"int8_ms_per_frame": {}, "float32_ms_per_frame": {},
              "int8_classify_full_frame_ms": {"frame_shape": list(CAMERA_FRAME_SHAPE), "ms": {}}}
    classifiers = {}
    for threads in THREAD_COUNTS:
        classifier = classifiers[threads] = Classifier(model_path, labels_path, num_threads=threads)
        patches = rng.integers(0, 256, classifier.patches_shape, dtype=np.uint8)
        result["int8_ms_per_frame"][str(threads)] = median_ms(lambda: classifier.classify_patches(patches), repeats)
        result["int8_classify_full_frame_ms"]["ms"][str(threads)] = median_ms(
            lambda: classifier.classify(frame, channel_order="BGR"), repeats)
        if Path(float_model_path).exists():
            float_model = FloatModel(float_model_path, num_threads=threads)
            result["float32_ms_per_frame"][str(threads)] = median_ms(lambda: float_model.predict_item(patches), repeats)
    result["patches_per_frame"] = classifiers[1].patch_count
    result["patch_size"] = classifiers[1].patch_size
    if result["float32_ms_per_frame"]:
        result["int8_vs_float32"] = {
            threads: round(ms / result["float32_ms_per_frame"][threads], 3)
            for threads, ms in result["int8_ms_per_frame"].items()
        }
    if loaded:
        # The same whole classify() while other processes keep every core busy: what the
        # default thread count has to be right for.
        with CoresBusy():
            result["int8_classify_full_frame_ms_all_cores_busy"] = {
                str(threads): median_ms(lambda: classifiers[threads].classify(frame, channel_order="BGR"),
                                        max(5, repeats // 5), warmup=2)
                for threads in THREAD_COUNTS
            }
    result["model_size_bytes"] = Path(model_path).stat().st_size
    if Path(float_model_path).exists():
        result["float32_model_size_bytes"] = Path(float_model_path).stat().st_size
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(bench_classifier(), indent=2))
