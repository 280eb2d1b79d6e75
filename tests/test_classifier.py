"""The shipped int8 scene classifier, run with the real tflite-runtime interpreter (no TensorFlow)."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthseal.device.classifier import (
    DEFAULT_LABELS,
    DEFAULT_MODEL,
    DEFAULT_THREADS,
    PATCH_ALIGN,
    Classifier,
    ClassifierError,
    aggregate,
    extract_patches,
    load_interpreter_class,
    patch_grid,
    patch_origins,
    preprocess,
    probabilities_from_output,
)
from synthseal.device.core.policy import DEFAULT_THRESHOLD
from synthseal.firmware_tools.model import card
from synthseal.firmware_tools.model.metrics import evaluate, flag_scores, perturbation_table, roc_auc, threshold_curve
from synthseal.firmware_tools.model.perturbations import ACCEPTANCE_PERTURBATION, perturb
from synthseal.firmware_tools.model.tflite_eval import FloatModel, fully_integer_problems, predict_int8

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
FLOAT_MODEL = MODELS / "synthseal_scene_float32.tflite"
METRICS = json.loads((MODELS / "synthseal_scene_metrics.json").read_text(encoding="utf-8"))
CARD = (MODELS / "MODEL_CARD.md").read_text(encoding="utf-8")
HELDOUT = REPO / METRICS["heldout_file"]
CALIBRATION = REPO / METRICS["calibration_file"]
EXPECTED_LABELS = ["real", "synthetic", "screen"]
THRESHOLD = METRICS["calibration"]["threshold"]


def _load(path):
    with np.load(path) as data:
        return data["patches"], data["labels"], data["sources"]


@pytest.fixture(scope="module")
def classifier():
    return Classifier()


@pytest.fixture(scope="module")
def heldout():
    return _load(HELDOUT)


@pytest.fixture(scope="module")
def int8_probabilities(classifier, heldout):
    return predict_int8(classifier, heldout[0])


@pytest.fixture(scope="module")
def int8_metrics(int8_probabilities, heldout):
    return evaluate(int8_probabilities, heldout[1], EXPECTED_LABELS, THRESHOLD)


@pytest.fixture(scope="module")
def float_metrics(heldout):
    items, labels, _ = heldout
    return evaluate(FloatModel(FLOAT_MODEL).predict(items), labels, EXPECTED_LABELS, THRESHOLD)


# ---------------------------------------------------------------- shipped model


def test_interpreter_comes_from_tflite_runtime_under_numpy_1():
    assert load_interpreter_class().__module__.startswith("tflite_runtime")
    assert int(np.__version__.split(".")[0]) < 2  # tflite-runtime wheels are built against numpy 1


@pytest.mark.parametrize("raw, message", [
    ([-128, -128, -128], "not a probability distribution"),   # all zero
    ([127, 127, 127], "not a probability distribution"),      # sums to ~3: logits, no softmax
])
def test_an_output_that_is_not_a_softmax_is_refused(raw, message):
    with pytest.raises(ClassifierError, match=message):
        probabilities_from_output(np.array(raw, np.int8), 1 / 256, -128)


def test_a_softmax_output_is_renormalized():
    probabilities = probabilities_from_output(np.array([-128, 127, -127], np.int8), 1 / 256, -128)
    assert probabilities.sum() == pytest.approx(1.0) and probabilities.argmax() == 1


def test_labels_without_the_required_classes_are_refused(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("Real\nSynthetic\nScreen\n", encoding="utf-8")
    with pytest.raises(ClassifierError, match=r"lacks the classes \['synthetic', 'screen'\]"):
        Classifier(labels_path=labels, required_labels=("synthetic", "screen"))


def test_labels_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    labels = tmp_path / "latin1.txt"
    labels.write_bytes("réel\nsynthétique\nécran\n".encode("latin-1"))
    with pytest.raises(ClassifierError, match="not UTF-8 text"):
        Classifier(labels_path=labels)


def test_no_interpreter_package_names_both_packages(monkeypatch):
    # A None entry in sys.modules makes that import fail, as on a device with neither installed.
    for module in ("tflite_runtime", "tflite_runtime.interpreter", "ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ClassifierError, match="tflite-runtime.*ai-edge-litert"):
        load_interpreter_class()


def test_shipped_model_is_full_integer_int8_with_matching_labels(classifier):
    assert fully_integer_problems(DEFAULT_MODEL) == []
    assert classifier.labels == EXPECTED_LABELS
    assert Path(DEFAULT_LABELS).read_text(encoding="utf-8").split() == EXPECTED_LABELS
    assert (classifier.patch_count, classifier.patch_size) == (METRICS["input"]["patches"], METRICS["input"]["patch_size"])


def test_default_is_one_interpreter_thread(classifier):
    # A second thread waits for a core at every layer on a loaded two-core device.
    assert DEFAULT_THREADS == 1 and classifier.num_threads == 1


def test_float_build_of_the_network_is_not_full_integer():
    problems = fully_integer_problems(FLOAT_MODEL)
    assert any("float32" in problem for problem in problems)


def test_card_states_size_and_sha256_of_the_committed_model():
    data = Path(DEFAULT_MODEL).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert METRICS["model"]["sha256"] == digest
    assert METRICS["model"]["size_bytes"] == len(data)
    assert digest in CARD and f"{len(data)} bytes" in CARD


def test_classify_returns_probabilities_for_every_label(classifier):
    frame = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    result = classifier.classify(frame)
    assert list(result) == EXPECTED_LABELS
    assert all(0.0 <= p <= 1.0 for p in result.values())
    assert sum(result.values()) == pytest.approx(1.0, abs=0.02)


# ---------------------------------------------------------------- held-out metrics


def test_heldout_and_calibration_sets_are_the_ones_the_card_was_measured_on():
    assert hashlib.sha256(HELDOUT.read_bytes()).hexdigest() == METRICS["heldout_sha256"]
    assert hashlib.sha256(CALIBRATION.read_bytes()).hexdigest() == METRICS["calibration_sha256"]


def test_heldout_sources_were_never_trained_on():
    """The card's source table: every held-out source is held out as a whole, and the
    held-out real photographs come from a package no training or calibration photo comes from."""
    _, labels, sources = _load(HELDOUT)
    heldout_real = [s["package"] for s in METRICS["sources"] if s["class"] == "real" and s["role"] == "held out"]
    other_real = [s["package"] for s in METRICS["sources"] if s["class"] == "real" and s["role"] != "held out"]
    assert heldout_real and not set(heldout_real) & set(other_real)
    from synthseal.firmware_tools.model import dataset, package_images
    heldout_files = {"skimage": set(dataset.HELDOUT_PHOTO_FILES), "lomiri": set(dataset.HELDOUT_LOMIRI_PHOTO_FILES)}
    heldout_files.update({package: {name.rsplit("/", 1)[-1] for name in entry["files"]}
                          for package, entry in package_images.PACKAGES.items()
                          if entry["class"] == "real" and entry["role"] == "held out"})
    real_sources = [s.split(":", 1) for s in sources[labels == 0]]
    assert {package for package, _ in real_sources} == set(heldout_files)
    assert all(name in heldout_files[package] for package, name in real_sources)
    other_files = (set(dataset.OPENCV_TRAIN_PHOTO_FILES) | set(dataset.OPENCV_CALIBRATION_PHOTO_FILES)
                   | set(dataset.MATE_TRAIN_PHOTO_FILES) | set(dataset.MATE_CALIBRATION_PHOTO_FILES))
    assert not {name for _, name in real_sources} & other_files
    from synthseal.firmware_tools.model import renders
    assert not set(renders.POVRAY_TRAIN_FOLDERS) & set(renders.POVRAY_HELDOUT_FOLDERS)
    povray = {s.split(":", 1)[1] for s in sources if s.startswith("povray:")}
    assert povray and povray <= set(renders.POVRAY_HELDOUT_FOLDERS)
    # Blender and OpenGL renders are held out as whole engines: no training source names them.
    engines = {s.split(":", 1)[1] for s in sources if s.startswith("engine:")}
    assert engines == set(renders.SCENE_ENGINES)
    assert all(label == 1 for label, source in zip(labels, sources) if source.startswith("engine:"))
    trained = " ".join(s["package"] + s["files"] for s in METRICS["sources"] if s["role"] == "train")
    assert "Blender" not in trained and "moderngl" not in trained and "OpenGL" not in trained
    # Game screenshots are held out by whole package: the held-out games are exactly the
    # package table's synthetic packages, all labelled synthetic.
    games = {s.split(":", 1)[1] for s in sources if s.startswith("game:")}
    assert games and games == {package for package, entry in package_images.PACKAGES.items()
                               if entry["class"] == "synthetic" and entry["role"] == "held out"}
    assert all(label == 1 for label, source in zip(labels, sources) if source.startswith("game:"))


@pytest.fixture
def texture_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "textures"
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(folder / "photo-00.png")
    return folder


def _scene_engine(module, *args):
    return subprocess.run([sys.executable, "-m", f"synthseal.firmware_tools.model.{module}", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module, package", [("blender_scenes", "bpy"), ("gl_scenes", "moderngl")])
def test_scene_engine_without_its_package_is_a_clear_error(tmp_path, texture_folder, module, package):
    import importlib.util

    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    result = _scene_engine(module, "--out", tmp_path / "out", "--textures", texture_folder)
    assert result.returncode == 1 and package in result.stderr and "make model" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module", ["blender_scenes", "gl_scenes"])
@pytest.mark.parametrize("bad, message", [
    (["--count", "0"], "--count must be >= 1"),
    (["--first", "-1"], "--first must be >= 0"),
    (["--textures", "missing"], "not a folder of PNG files"),
])
def test_scene_engine_arguments_are_checked(tmp_path, texture_folder, module, bad, message):
    args = {"--out": tmp_path / "out", "--textures": texture_folder}
    args.update({bad[0]: tmp_path / bad[1] if bad[0] == "--textures" else bad[1]})
    result = _scene_engine(module, *[item for pair in args.items() for item in pair])
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_failing_scene_engine_stops_the_build_with_its_error():
    """A renderer that fails in a worker process must end the build with its message, not
    leave the worker pool waiting for ever (a worker's SystemExit would)."""
    script = (
        "import numpy as np, tempfile\n"
        "from synthseal.firmware_tools.model import renders\n"
        # check_images is a real module that refuses the engines' arguments.
        "renders.SCENE_ENGINES['broken'] = ('check_images', 2, 1)\n"
        "renders.scene_engine_renders('broken', tempfile.mkdtemp(), [np.zeros((8, 8, 3), np.uint8)])\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "RuntimeError: check_images scenes" in result.stderr and "failed" in result.stderr


def test_training_refuses_held_out_engines():
    from synthseal.firmware_tools.model import dataset

    image = np.zeros((300, 400, 3), np.uint8)
    with pytest.raises(ValueError, match="held-out engines in the training renders: gl"):
        dataset.build_training_split("train", 1, [("objects/a.pov", image), ("gl:scene-0", image)], processes=1)


def test_card_int8_metrics_are_reproduced_from_committed_model(int8_metrics):
    recorded = METRICS["heldout"]["int8"]
    assert int8_metrics["confusion_matrix"] == recorded["confusion_matrix"]
    assert int8_metrics["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-9)
    for key in ("roc_auc_real_vs_synthetic", "roc_auc_real_vs_synthetic_policy_score", "roc_auc_real_vs_screen",
                "roc_auc_real_vs_not_real"):
        assert int8_metrics[key] == pytest.approx(recorded[key], abs=1e-6)
    for label in EXPECTED_LABELS:
        assert int8_metrics["roc_auc_one_vs_rest"][label] == pytest.approx(recorded["roc_auc_one_vs_rest"][label], abs=1e-6)
    assert int8_metrics["flagged_at_threshold"] == recorded["flagged_at_threshold"]
    # The card is rendered from the same numbers.
    assert f"{100 * int8_metrics['accuracy']:.1f}%" in CARD
    assert f"{int8_metrics['roc_auc_real_vs_synthetic']:.4f}" in CARD


def test_card_threshold_curve_is_reproduced(int8_probabilities, heldout):
    assert threshold_curve(int8_probabilities, heldout[1], EXPECTED_LABELS) == METRICS["heldout"]["int8_threshold_curve"]


def test_card_by_source_figures_are_reproduced(int8_probabilities, heldout):
    from synthseal.firmware_tools.model.build import per_source_accuracy

    threshold = METRICS["calibration"]["threshold"]
    assert per_source_accuracy(int8_probabilities, heldout[1], heldout[2], threshold) == METRICS["heldout"]["int8_per_source"]


def test_default_threshold_is_calibrated_on_photographs_outside_training_and_heldout(classifier):
    """The threshold the policy ships with is the one that flags at most the target share of
    the calibration photographs (scikit-learn, PyWavelets), recomputed here."""
    patches, _, sources = _load(CALIBRATION)
    assert all(s.startswith("calibration:") for s in sources)
    scores = flag_scores(predict_int8(classifier, patches), EXPECTED_LABELS)
    target = METRICS["calibration"]["target_false_positive_rate"]
    assert (scores >= THRESHOLD).mean() <= target
    assert THRESHOLD == 0.01 or (scores >= round(THRESHOLD - 0.01, 2)).mean() > target  # the lowest such step
    assert DEFAULT_THRESHOLD == THRESHOLD
    assert f"default threshold is **{THRESHOLD}**" in CARD


def test_card_perturbation_figures_are_reproduced(classifier, heldout):
    """The acceptance perturbation (sigma=4 noise, then JPEG q90), recomputed on every item."""
    items, labels, _ = heldout
    recorded = METRICS["heldout"]["int8_perturbations"][ACCEPTANCE_PERTURBATION]
    measured = perturbation_table(lambda batch: predict_int8(classifier, batch), items, labels, EXPECTED_LABELS,
                                  THRESHOLD, names=("none", ACCEPTANCE_PERTURBATION))[ACCEPTANCE_PERTURBATION]
    # JPEG coders differ in the last bit between Pillow builds: a few patches may round apart.
    for case, key in (("renders_perturbed", "roc_auc_real_vs_synthetic"), ("all_perturbed", "roc_auc_real_vs_synthetic"),
                      ("all_perturbed", "roc_auc_real_vs_screen")):
        assert measured[case][key] == pytest.approx(recorded[case][key], abs=0.01)
    assert measured["renders_perturbed"]["renders_flagged"] == pytest.approx(recorded["renders_perturbed"]["renders_flagged"], abs=0.02)


def test_perturbations_are_deterministic_and_change_the_patches(heldout):
    items = heldout[0][:2]
    once, again = perturb(items, ACCEPTANCE_PERTURBATION), perturb(items, ACCEPTANCE_PERTURBATION)
    assert np.array_equal(once, again) and not np.array_equal(once, items)
    assert np.abs(once.astype(int) - items.astype(int)).mean() > 2


def test_card_acceptance_table_says_what_was_measured(int8_metrics):
    """Met or not met, the card states each target with the figure measured here."""
    for what, target, measured, met in card.acceptance(METRICS):
        assert f"| {what} | {target} | {measured} | {'met' if met else '**not met**'} |" in CARD
    assert f"{int8_metrics['roc_auc_real_vs_synthetic']:.4f}" in CARD


def test_card_float_metrics_are_reproduced_from_committed_float_model(float_metrics):
    recorded = METRICS["heldout"]["float32"]
    assert float_metrics["confusion_matrix"] == recorded["confusion_matrix"]
    assert float_metrics["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-9)


def test_int8_ranks_frames_as_the_float_model_does(int8_metrics, float_metrics):
    """Quantization costs little: the ranking (AUC) within 0.02, argmax accuracy within 4 points
    (frames near a class boundary may fall either way)."""
    for key in ("roc_auc_real_vs_synthetic", "roc_auc_real_vs_screen"):
        assert abs(int8_metrics[key] - float_metrics[key]) <= 0.02
    assert abs(int8_metrics["accuracy"] - float_metrics["accuracy"]) <= 0.04


def test_roc_auc_counts_ranks_and_ties():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert roc_auc([0.5, 0.5], [False, True]) == 0.5
    assert roc_auc([0.1, 0.6, 0.4, 0.9], [False, False, True, True]) == 0.75


# ---------------------------------------------------------------- preprocessing


def test_patches_are_native_pixels_from_across_the_frame():
    """No resizing: each patch is the frame's own pixels at an aligned origin, one per grid cell."""
    frame = np.random.default_rng(2).integers(0, 256, (3040, 4056, 3), dtype=np.uint8)
    origins = patch_origins(3040, 4056, 12, 64)
    assert patch_grid(12, 3040, 4056) == (3, 4) and patch_grid(12, 4056, 3040) == (4, 3)
    patches = extract_patches(frame, 12, 64)
    assert patches.shape == (12, 64, 64, 3)
    for patch, (top, left) in zip(patches, origins):
        assert top % PATCH_ALIGN == 0 and left % PATCH_ALIGN == 0
        assert np.array_equal(patch, frame[top:top + 64, left:left + 64])
    tops, lefts = sorted({t for t, _ in origins}), sorted({left for _, left in origins})
    assert len(tops) == 3 and len(lefts) == 4
    assert tops[0] < 3040 / 3 < tops[1] < 2 * 3040 / 3 < tops[2] and lefts[0] < 4056 / 4 and lefts[-1] > 3 * 4056 / 4


def test_small_frames_are_mirrored_out_to_the_patch_size():
    frame = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    patches = extract_patches(frame, 12, 64)
    assert patches.shape == (12, 64, 64, 3)
    assert np.array_equal(patches[0][:40, :50], frame)


def test_frame_verdict_is_the_mean_of_the_patch_verdicts(classifier):
    frame = np.random.default_rng(4).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    patches = preprocess(frame, classifier.patch_count, classifier.patch_size)
    per_patch = classifier.patch_probabilities(patches)
    assert per_patch.shape == (classifier.patch_count, len(EXPECTED_LABELS))
    assert np.allclose(aggregate(per_patch), per_patch.mean(axis=0))
    result = classifier.classify(frame)
    assert list(result.values()) == pytest.approx(list(per_patch.astype(np.float64).mean(axis=0)), abs=1e-6)
    assert aggregate([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).tolist() == [0.5, 0.5, 0.0]


def test_bgr_frames_are_read_as_bgr(classifier, heldout):
    """picamera2 RGB888 buffers are BGR in memory: the same scene gives the same verdict."""
    frame = np.random.default_rng(5).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    frame[::2, ::2, 0] = 255  # something that is not colour-symmetric
    expected = classifier.classify(frame)
    assert classifier.classify(np.ascontiguousarray(frame[..., ::-1]), channel_order="BGR") == expected


def test_channel_order_changes_what_the_model_sees():
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[..., 0] = 255
    assert np.array_equal(preprocess(frame, 12, 64, "BGR")[0, 0, 0], [0, 0, 255])
    assert np.array_equal(preprocess(frame, 12, 64, "RGB")[0, 0, 0], [255, 0, 0])


def test_input_is_quantized_with_the_models_own_parameters(classifier):
    scale, zero_point = classifier.input_quantization
    image = np.array([[[0, 128, 255]]], np.uint8)
    expected = np.clip(np.round(image / 255.0 / scale) + zero_point, -128, 127)
    assert np.array_equal(classifier.quantize_input(image), expected)


# ---------------------------------------------------------------- bad input


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ClassifierError, match="not found"):
        Classifier(tmp_path / "absent.tflite")


def test_truncated_model_is_a_clear_error(tmp_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(Path(DEFAULT_MODEL).read_bytes()[:4000])
    with pytest.raises(ClassifierError, match="truncated or corrupt"):
        Classifier(truncated)


def test_garbage_model_is_a_clear_error(tmp_path):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ClassifierError, match="not a TFLite model"):
        Classifier(garbage)


def test_float_model_is_refused(tmp_path):
    with pytest.raises(ClassifierError, match=r"float32\[12, 64, 64, 3\], not int8"):
        Classifier(FLOAT_MODEL)


def test_labels_count_mismatch_is_a_clear_error(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("real\nsynthetic\n", encoding="utf-8")
    with pytest.raises(ClassifierError, match="has 2 classes but model .* outputs 3"):
        Classifier(labels_path=labels)


def test_missing_or_empty_labels_file_is_a_clear_error(tmp_path):
    with pytest.raises(ClassifierError, match="cannot read labels file"):
        Classifier(labels_path=tmp_path / "absent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ClassifierError, match="empty"):
        Classifier(labels_path=empty)


@pytest.mark.parametrize(
    "frame, message",
    [
        (np.zeros((480, 640), np.uint8), r"shape \(480, 640\)"),
        (np.zeros((480, 640, 4), np.uint8), r"shape \(480, 640, 4\)"),
        (np.zeros((0, 640, 3), np.uint8), r"shape \(0, 640, 3\)"),
        (np.zeros((480, 640, 3), np.float32), "dtype float32"),
        ([[[0, 0, 0]]], "is a list"),
    ],
)
def test_wrong_frame_is_a_clear_error(classifier, frame, message):
    with pytest.raises(ClassifierError, match=message):
        classifier.classify(frame)


def test_model_patches_of_the_wrong_shape_are_a_clear_error(classifier):
    with pytest.raises(ClassifierError, match=r"shape \(12, 64, 64, 3\)"):
        classifier.classify_patches(np.zeros((64, 64, 3), np.uint8))


def test_unknown_channel_order_is_a_clear_error(classifier):
    with pytest.raises(ClassifierError, match="channel_order 'YUV'"):
        classifier.classify(np.zeros((10, 10, 3), np.uint8), channel_order="YUV")


# ---------------------------------------------------------------- tools


def test_bench_reports_int8_and_float_latency_and_size():
    from synthseal.firmware_tools.model.bench_classifier import bench_classifier

    result = bench_classifier(repeats=3, loaded=False)
    assert set(result["int8_ms_per_frame"]) == {"1", "2"} == set(result["float32_ms_per_frame"])
    assert all(ms > 0 for ms in result["int8_ms_per_frame"].values())
    assert result["model_size_bytes"] == Path(DEFAULT_MODEL).stat().st_size
    assert result["int8_classify_full_frame_ms"]["frame_shape"] == [3040, 4056, 3]
    assert set(result["int8_classify_full_frame_ms"]["ms"]) == {"1", "2"}
    assert result["patches_per_frame"] == 12


def test_vendor_converter_documents_itself():
    completed = subprocess.run(
        [sys.executable, "-m", "synthseal.firmware_tools.convert_model", "--help"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    for option in ("--representative", "--labels", "--eval", "--out"):
        assert option in completed.stdout
    assert "full-integer" in completed.stdout


def test_make_bench_writes_seal_classifier_agent_transport_and_log_figures(tmp_path):
    """Every section of `make bench`, at a small size (the full run is `make bench`)."""
    out = tmp_path / "bench.json"
    completed = subprocess.run([sys.executable, "-m", "synthseal.firmware_tools.bench", "--runs", "2",
                                "--agent-frames", "3", "--transport-bytes", "20000",
                                "--transport-runs", "1000000:1", "--log-records", "200",
                                "--log-verify-records", "300", "--proof-leaves", "4096", "--out", str(out)],
                               cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    seal = report["seal"]
    assert seal["frame"] == "4056x3040"
    for key in ("seal_ms_median", "sha256_of_sealed_file_ms_median", "c2pa_python_default_sign_ms_median",
                "classify_ms_median_2_threads"):
        assert seal[key] > 0
    assert seal["seal_vs_sha256_floor"] == pytest.approx(seal["seal_ms_median"] / seal["sha256_of_sealed_file_ms_median"], rel=0.01)
    classifier = report["classifier"]
    assert set(classifier["int8_ms_per_frame"]) == {"1", "2"} == set(classifier["int8_vs_float32"])
    assert classifier["model_size_bytes"] == Path(DEFAULT_MODEL).stat().st_size
    agent = report["agent"]
    for path in ("camera_lab_fake_sensor", "intake_raw_rgb_3_clients"):
        assert agent[path]["seals_per_second"] > 0 and agent[path]["latency_ms_p99"] >= agent[path]["latency_ms_p50"]
    assert agent["stages_single_frame"]["slowest_stage_ms"] <= agent["stages_single_frame"]["single_frame_total_ms"]
    links = report["transport"]["links"]
    assert {(link["baud"], link["bit_error_rate"]) for link in links} == {(1000000, 0.0), (1000000, 1e-5)}
    for link in links:
        assert 0 < link["synthseal_efficiency_median"] <= 1 and 0 <= link["zmodem_efficiency_median"] <= 1
    enrolment = report["enrolment"]
    assert enrolment["baud"] == 115200 and enrolment["seconds_median"] >= enrolment["line_floor_seconds_median"] > 0
    log = report["log"]
    appends = log["appends"]
    assert appends["records"] == 200 and appends["group_size"] > 1
    for key in ("auditlog_appends_per_s_fsync_each", "auditlog_appends_per_s_group_commit",
                "sqlite_wal_full_inserts_per_s_commit_each", "sqlite_wal_full_inserts_per_s_group_commit"):
        assert appends[key] > 0
    assert log["verification"]["records"] == 301 and log["verification"]["verify_records_per_s"] > 0
    proof = log["inclusion_proof"]
    assert proof["leaves"] == 4096 and proof["audit_path_hashes_max"] == 12 and proof["audit_path_bytes_max"] == 384


@pytest.mark.parametrize("case, message", [
    ("missing-model", "not found"),
    ("missing-labels", "cannot read labels file"),
    ("empty-representative", "no images found"),
    ("unknown-class", "['cartoon'] are not in the labels"),
])
def test_vendor_converter_checks_its_inputs_before_converting(tmp_path, case, message):
    """Checked before TensorFlow is imported: these run in the device venv, which has none."""
    (tmp_path / "rep").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "labelled" / "cartoon").mkdir(parents=True)
    from PIL import Image
    Image.new("RGB", (80, 60)).save(tmp_path / "rep" / "frame.png")
    model = tmp_path / "model.keras"
    model.write_bytes(b"placeholder")
    args = {"model": model, "--representative": tmp_path / "rep", "--labels": DEFAULT_LABELS,
            "--eval": tmp_path / "labelled", "--out": tmp_path / "out.tflite"}
    args.update({"missing-model": {"model": tmp_path / "absent.keras"},
                 "missing-labels": {"--labels": tmp_path / "absent.txt"},
                 "empty-representative": {"--representative": tmp_path / "empty"},
                 "unknown-class": {}}[case])
    argv = [str(args.pop("model"))] + [str(item) for pair in args.items() for item in pair]
    completed = subprocess.run([sys.executable, "-m", "synthseal.firmware_tools.convert_model", *argv],
                               cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 1
    assert message in completed.stderr and "Traceback" not in completed.stderr
    assert not (tmp_path / "out.tflite").exists()


def test_vendor_converter_refuses_labels_without_the_policys_classes(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n", encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "synthseal.firmware_tools.convert_model", str(DEFAULT_MODEL), "--representative", str(tmp_path),
         "--labels", str(labels), "--out", str(tmp_path / "out.tflite")],
        cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 1 and "lacks the classes ['synthetic', 'screen']" in completed.stderr
