"""The vendor converter end to end, in the training environment.

TensorFlow is an optional extra (`make model` installs it in .venv-train); the device and
CI never need it, so this test runs only where that environment and a trained Keras
model (build/model/synthseal_scene.keras, written by `make model`) exist.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TRAIN_PYTHON = REPO / ".venv-train" / "bin" / "python"
KERAS_MODEL = REPO / "build" / "model" / "synthseal_scene.keras"
LABELS = REPO / "models" / "labels.txt"
HELDOUT = REPO / "tests" / "data_classifier" / "heldout_eval.npz"

pytestmark = pytest.mark.skipif(
    not (TRAIN_PYTHON.exists() and KERAS_MODEL.exists()),
    reason="needs the training environment and model from `make model`",
)


def _mosaic(patches, cols=4):
    """The 12 patches tiled 3x4: a 192x256 frame whose patches are exactly these."""
    rows = [np.concatenate(list(patches[r * cols:(r + 1) * cols]), axis=1) for r in range(len(patches) // cols)]
    return np.concatenate(rows, axis=0)


def _write_frames(folder, items):
    folder.mkdir(parents=True, exist_ok=True)
    for n, patches in enumerate(items):
        Image.fromarray(_mosaic(patches)).save(folder / f"{n:03d}.png")


def _convert(*args):
    return subprocess.run([str(TRAIN_PYTHON), "-m", "synthseal.firmware_tools.convert_model", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True)


def test_keras_model_converts_to_full_integer_and_is_evaluated(tmp_path):
    with np.load(HELDOUT) as data:
        images, labels = data["patches"], data["labels"]
    names = LABELS.read_text(encoding="utf-8").split()
    _write_frames(tmp_path / "calibration", images[::7])
    for index, name in enumerate(names):
        _write_frames(tmp_path / "labelled" / name, images[labels == index][:10])
    out = tmp_path / "vendor" / "vendor_int8.tflite"
    result = _convert(KERAS_MODEL, "--representative", tmp_path / "calibration", "--labels", LABELS,
                      "--eval", tmp_path / "labelled", "--out", out, "--report", tmp_path / "report.json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["fully_integer"] and report["problems"] == []
    assert report["eval"]["n_images"] == 10 * len(names)
    assert abs(report["eval"]["accuracy_int8"] - report["eval"]["accuracy_float32"]) <= 0.1
    assert out.exists() and out.with_suffix(".labels.txt").read_text(encoding="utf-8").split() == names


def test_eval_folder_with_an_unknown_class_is_refused(tmp_path):
    with np.load(HELDOUT) as data:
        images = data["patches"][:3]
    _write_frames(tmp_path / "calibration", images)
    _write_frames(tmp_path / "labelled" / "cartoon", images)
    result = _convert(KERAS_MODEL, "--representative", tmp_path / "calibration", "--labels", LABELS,
                      "--eval", tmp_path / "labelled", "--out", tmp_path / "out.tflite")
    assert result.returncode != 0
    assert "cartoon" in result.stderr and "not in the labels" in result.stderr
