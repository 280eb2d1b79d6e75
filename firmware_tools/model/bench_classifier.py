"""Classifier latency and size: int8 at 1 and 2 threads, float32 of the same network.

`bench_classifier()` is what `make bench` and the model card report. Each figure is the
median over repeated invocations after a warm-up, on the machine it runs on.
"""

import statistics
import time
from pathlib import Path

import numpy as np

from ...device.classifier import DEFAULT_LABELS, DEFAULT_MODEL, Classifier
from .tflite_eval import FloatModel

DEFAULT_FLOAT_MODEL = Path(DEFAULT_MODEL).with_name("synthseal_scene_float32.tflite")
CAMERA_FRAME_SHAPE = (3040, 4056, 3)  # Raspberry Pi HQ camera full resolution


def median_ms(function, repeats, warmup=5):
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000.0)
    return round(statistics.median(samples), 3)


def bench_classifier(model_path=DEFAULT_MODEL, labels_path=DEFAULT_LABELS, float_model_path=DEFAULT_FLOAT_MODEL, repeats=200):
    rng = np.random.default_rng(0)
    result = {"int8_ms_per_frame": {}, "float32_ms_per_frame": {}}
    for threads in (1, 2):
        classifier = Classifier(model_path, labels_path, num_threads=threads)
        image = rng.integers(0, 256, (classifier.input_height, classifier.input_width, 3), dtype=np.uint8)
        result["int8_ms_per_frame"][str(threads)] = median_ms(lambda: classifier.classify_image(image), repeats)
        if Path(float_model_path).exists():
            float_model = FloatModel(float_model_path, num_threads=threads)
            result["float32_ms_per_frame"][str(threads)] = median_ms(lambda: float_model.predict_image(image), repeats)
    # Whole classify() on a full-resolution camera frame, preprocessing included.
    frame = rng.integers(0, 256, CAMERA_FRAME_SHAPE, dtype=np.uint8)
    result["int8_classify_full_frame_ms"] = {
        "frame_shape": list(CAMERA_FRAME_SHAPE),
        "threads": 2,
        "ms": median_ms(lambda: classifier.classify(frame, channel_order="BGR"), max(20, repeats // 4)),
    }
    if result["float32_ms_per_frame"]:
        result["int8_vs_float32"] = {
            threads: round(ms / result["float32_ms_per_frame"][threads], 3)
            for threads, ms in result["int8_ms_per_frame"].items()
        }
    result["model_size_bytes"] = Path(model_path).stat().st_size
    if Path(float_model_path).exists():
        result["float32_model_size_bytes"] = Path(float_model_path).stat().st_size
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(bench_classifier(), indent=2))
