"""check_images: the classifier scored on folders of someone else's pictures."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthseal.device.classifier import Classifier
from synthseal.firmware_tools.model import check_images, dataset

REPO = Path(__file__).resolve().parents[1]
HELDOUT = REPO / "tests" / "data_classifier" / "heldout_eval.npz"


def _mosaic(patches, cols=4):
    """The 12 patches tiled 3x4: a 192x256 frame whose patches are exactly these."""
    rows = [np.concatenate(list(patches[r * cols:(r + 1) * cols]), axis=1) for r in range(len(patches) // cols)]
    return np.concatenate(rows, axis=0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    patches, labels, _ = dataset.load_split(HELDOUT)
    root = tmp_path_factory.mktemp("pictures")
    chosen = {"real": np.flatnonzero(labels == 0)[::13][:6], "renders": np.flatnonzero(labels == 1)[::17][:6]}
    for name, indexes in chosen.items():
        (root / name / "nested").mkdir(parents=True)
        for n, index in enumerate(indexes):
            Image.fromarray(_mosaic(patches[index])).save(root / name / "nested" / f"{n}.png")
    (root / "real" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "real" / "notes.txt").write_text("not an image")
    return root, {name: patches[indexes] for name, indexes in chosen.items()}


def test_scores_are_the_devices_verdicts_and_the_auc_is_theirs(folders, capsys):
    root, patches = folders
    assert check_images.main(["--real", str(root / "real"), "--renders", str(root / "renders"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    classifier = Classifier(num_threads=1)
    expected = {name: [check_images.flag_score(classifier.classify_patches(p)) for p in items]
                for name, items in patches.items()}
    assert [item["score"] for item in report["real"]] == expected["real"]
    assert [item["score"] for item in report["renders"]] == expected["renders"]
    real, renders = np.array(expected["real"]), np.array(expected["renders"])
    as_given = report["as_given"]
    assert as_given["real_flagged"] == pytest.approx((real >= report["threshold"]).mean())
    assert as_given["renders_flagged"] == pytest.approx((renders >= report["threshold"]).mean())
    assert as_given["roc_auc_real_vs_renders"] == pytest.approx(
        check_images.roc_auc(np.r_[real, renders], np.r_[np.zeros(6, bool), np.ones(6, bool)]))
    # The unreadable picture is reported, not scored and not a crash; the text file is not a picture.
    assert [Path(item["file"]).name for item in report["skipped"]] == ["broken.jpg"]
    assert report["n_real"] == 6 and report["n_renders"] == 6


def test_forged_renders_are_renders_with_noise_and_recompression(folders, capsys):
    root, _ = folders
    frame = np.full((96, 128, 3), 120, np.uint8)
    forged = check_images.forge(frame, 0)
    assert forged.shape == frame.shape and 1.5 < forged.astype(float).std() < 5  # sigma 4, softened by JPEG
    assert check_images.main(["--real", str(root / "real"), "--renders", str(root / "renders")]) == 0
    out = capsys.readouterr().out
    assert "renders + noise 4 + JPEG q90" in out and "skipped" in out


@pytest.mark.parametrize("args, message", [
    (["--real", "/nonexistent-folder", "--renders", "."], "is not a folder"),
    (["--real", "{empty}", "--renders", "{empty}"], "no images"),
])
def test_bad_folders_are_a_usage_error(tmp_path, capsys, args, message):
    args = [a.replace("{empty}", str(tmp_path)) for a in args]
    assert check_images.main(args) == 2
    assert message in capsys.readouterr().err


def test_a_threshold_outside_zero_to_one_is_refused(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        check_images.main(["--real", str(tmp_path), "--renders", str(tmp_path), "--threshold", "1.5"])
    assert exit_info.value.code == 2


def test_odd_pixel_formats_are_read_right_or_refused(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 128).astype(np.uint16), (96, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # 16-bit greyscale
    frame, problem = check_images.read_frame(tmp_path / "deep.png")
    assert problem is None and frame.shape == (96, 128, 3)
    assert frame[0, 0, 0] == 0 and frame[0, -1, 0] == 255 and 120 < frame[0, 64, 0] < 136
    Image.fromarray(np.zeros((96, 128), np.float32)).save(tmp_path / "float.tif")
    assert "convert it to 8-bit" in check_images.read_frame(tmp_path / "float.tif")[1]
    Image.fromarray(np.zeros((1, 5000, 3), np.uint8)).save(tmp_path / "line.png")
    assert "smaller than one 64-pixel patch" in check_images.read_frame(tmp_path / "line.png")[1]


def test_as_frame_scales_to_cover_the_camera_frame_and_crops_the_centre():
    picture = np.zeros((300, 400, 3), np.uint8)
    picture[:, 200:] = 255  # right half white: the cut must stay in the middle
    frame = check_images.as_frame(picture, (4056, 3040))
    assert frame.shape == (3040, 4056, 3)
    assert frame[:, :2000].max() == 0 and frame[:, 2060:].min() == 255
    tall = check_images.as_frame(np.zeros((400, 100, 3), np.uint8), (4056, 3040))  # cover, never letterbox
    assert tall.shape == (3040, 4056, 3)


def test_as_frame_scores_the_injected_frame(folders, capsys):
    root, _ = folders
    assert check_images.main(["--real", str(root / "real"), "--renders", str(root / "renders"),
                              "--as-frame", "640x480", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["as_frame"] == "640x480"
    classifier = Classifier(num_threads=1)
    first = sorted((root / "real").rglob("*.png"))[0]
    frame = check_images.as_frame(check_images.read_frame(first)[0], (640, 480))
    assert report["real"][0] == {"file": str(first), "score": check_images.flag_score(classifier.classify(frame))}


@pytest.mark.parametrize("value", ["4056", "4056x", "axb", "10x10", "100000x100000"])
def test_a_bad_frame_size_is_refused(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        check_images.main(["--real", str(tmp_path), "--renders", str(tmp_path), "--as-frame", value])
    assert exit_info.value.code == 2 and "--as-frame" in capsys.readouterr().err
