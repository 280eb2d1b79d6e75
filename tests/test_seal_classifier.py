"""The shipped int8 classifier inside the sealer: its verdict drives the policy, its
scores are recorded in the audit log and the C2PA manifest, and every failure to
classify falls back to Label "2" (possibly), never to "real"."""

import json
import subprocess
import sys
from pathlib import Path

import c2pa
import numpy as np
import pytest
from PIL import Image

from synthseal.device import watermark
from synthseal.device.camera import FakeCamera
from synthseal.device.classifier import DEFAULT_MODEL, Classifier
from synthseal.device.core import logrecord, policy
from synthseal.device.seal import C2PA_ASSERTION_LABEL, Sealer
from synthseal.host.verify import c2pa_reader_context, verify_file

from conftest import LAB_CAMERA, make_device, verified_from_the_file_alone

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def classifier():
    return Classifier(num_threads=2)


@pytest.fixture(scope="module")
def device_with_classifier(tmp_path_factory, vendor_ca, classifier):
    base = tmp_path_factory.mktemp("classified")
    state = make_device(base / "device", vendor_ca)
    return state, Sealer(state, classifier, lab=True), base / "out"


def _manifest_seal(path, vendor_ca):
    with open(path, "rb") as f:
        reader = c2pa.Reader("image/jpeg", f, context=c2pa_reader_context(vendor_ca[1]))
        assert reader.get_validation_state() == "Trusted"
        manifest = json.loads(reader.json())
    active = manifest["manifests"][manifest["active_manifest"]]
    return {a["label"]: a["data"] for a in active["assertions"]}


def _log_record(state, seq):
    return logrecord.decode_record(state.log().read(seq, 1)[0])


def _exiftool_label(path):
    out = subprocess.run(["exiftool", "-j", "-XMP-TC260:Aigc", str(path)], capture_output=True, text=True, check=True)
    text = json.loads(out.stdout)[0].get("Aigc")
    return json.loads(text)["Label"] if text else None


def test_scores_are_recorded_in_the_log_and_the_c2pa_assertion(device_with_classifier, vendor_ca):
    state, sealer, out = device_with_classifier
    result = sealer.seal(FakeCamera(1280, 960, seed=3).capture_array(), "capture", out, origin=LAB_CAMERA)
    scores = result["decision"]["scores"]
    assert list(scores) == ["real", "synthetic", "screen"]
    assert result["decision"]["threshold"] == policy.DEFAULT_THRESHOLD
    assert _log_record(state, result["seq"])["decision"] == result["decision"]
    assertions = _manifest_seal(result["path"], vendor_ca)
    assert assertions[C2PA_ASSERTION_LABEL]["decision"]["scores"] == scores
    assert result["timings"]["classify_ms"] > 0


def test_clean_render_declared_as_a_capture_is_labelled_suspected(device_with_classifier, vendor_ca):
    """A noise-free render fed in as a 'real capture' (a capture card, an undeclared generator).
    The shipped model scores it about 0.98 synthetic; the sealer here uses 0.95."""
    state, _, out = device_with_classifier
    sealer = Sealer(state, device_with_classifier[1].classifier, threshold=0.95, lab=True)
    frame = FakeCamera(1280, 960, seed=1, sensor_noise=0).capture_array()
    result = sealer.seal(frame, "capture", out, origin=LAB_CAMERA)
    decision = result["decision"]
    assert decision["scores"]["synthetic"] >= 0.95
    assert decision["rule"] == "capture-synthetic" and decision["label"] == "3"
    assert _exiftool_label(result["path"]) == "3"
    assertions = _manifest_seal(result["path"], vendor_ca)
    created = assertions["c2pa.actions.v2"]["actions"][0]
    assert created["digitalSourceType"] == policy.IPTC_DST + "virtualRecording"
    # Suspected, not declared: no visible "AI生成" plate on what may be a real photograph.
    decoded = np.asarray(Image.open(result["path"]).convert("RGB")).astype(int)
    assert np.abs(decoded - frame.astype(int)).mean() < 4
    report = verify_file(result["path"], vendor_ca[1])
    assert verified_from_the_file_alone(report), report["checks"]
    assert report["label"] == "3"


def test_a_declared_render_keeps_label_1_whatever_the_model_says(device_with_classifier):
    state, sealer, out = device_with_classifier
    noisy = FakeCamera(1280, 960, seed=3).capture_array()  # looks like a camera capture
    result = sealer.seal(noisy, "rig", out)
    assert result["decision"]["rule"] == "rig" and result["decision"]["label"] == "1"
    # Only a declared capture can be relabelled by the model, so nothing else is classified.
    assert "scores" not in result["decision"]


def test_the_threshold_decides_between_capture_and_suspected(device, classifier, tmp_path):
    # A frame between clean render and camera capture, where the model is unsure.
    candidates = (FakeCamera(640, 480, seed=seed, sensor_noise=noise).capture_array()
                  for noise in (1.0, 1.5, 2.0, 0.5) for seed in range(4))
    frame, synthetic = next((f, s) for f in candidates
                            for s in [round(classifier.classify(f)["synthetic"], 4)] if 0.05 < s < 0.99)
    above = Sealer(device, classifier, threshold=min(1.0, synthetic + 0.0001), lab=True).seal(frame, "capture", tmp_path, origin=LAB_CAMERA)
    at = Sealer(device, classifier, threshold=synthetic, lab=True).seal(frame, "capture", tmp_path, origin=LAB_CAMERA)
    assert above["decision"]["rule"] == "capture" and above["decision"]["label"] is None
    assert at["decision"]["rule"] == "capture-synthetic"


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.5, float("nan")])
def test_a_threshold_outside_0_1_is_refused(device, threshold):
    with pytest.raises(ValueError, match="threshold"):
        Sealer(device, threshold=threshold, lab=True)


def test_a_bgr_frame_is_classified_and_sealed_as_its_rgb_twin(device, classifier, tmp_path, monkeypatch):
    """picamera2's RGB888 buffers are B, G, R in memory."""
    # Each seal draws a random watermark identifier; the same one for both makes the
    # twins' pixels comparable.
    monkeypatch.setattr(watermark, "new_identifier", lambda: "0123456789ab")
    rgb = FakeCamera(640, 480, seed=5).capture_array()
    sealer = Sealer(device, classifier, lab=True)
    from_rgb = sealer.seal(rgb, "capture", tmp_path, origin=LAB_CAMERA)
    from_bgr = sealer.seal(np.ascontiguousarray(rgb[..., ::-1]), "capture", tmp_path, channel_order="BGR",
                           origin=LAB_CAMERA)
    assert from_bgr["decision"]["scores"] == from_rgb["decision"]["scores"]
    decoded = [np.asarray(Image.open(r["path"]).convert("RGB")) for r in (from_rgb, from_bgr)]
    assert np.array_equal(decoded[0], decoded[1])


def test_a_classifier_error_fails_closed_to_possibly(device, vendor_ca, tmp_path):
    sealer = Sealer(device, classifier_error="model file x.tflite is truncated", lab=True)
    result = sealer.seal(FakeCamera(640, 480).capture_array(), "capture", tmp_path, origin=LAB_CAMERA)
    assert result["decision"]["rule"] == "capture-unclassified" and result["decision"]["label"] == "2"
    assert result["decision"]["classifier_error"] == "model file x.tflite is truncated"
    assert _exiftool_label(result["path"]) == "2"
    assert verified_from_the_file_alone(verify_file(result["path"], vendor_ca[1]))


SURE_SYNTHETIC = {"real": 0.01, "synthetic": 0.98, "screen": 0.01}


@pytest.mark.parametrize("recorded, message", [
    ({"scores": SURE_SYNTHETIC, "threshold": 0.8}, "does not follow"),
    ({"scores": SURE_SYNTHETIC, "threshold": 1.5}, "not valid policy inputs"),
    ({"scores": SURE_SYNTHETIC, "threshold": True}, "not valid policy inputs"),
    ({"scores": SURE_SYNTHETIC}, "not valid policy inputs"),
    ({"scores": {"Real": 0.02, "Synthetic": 0.98}, "threshold": 0.8}, "not valid policy inputs"),
])
def test_verify_fails_a_rule_that_does_not_follow_from_the_recorded_inputs(
        device, vendor_ca, tmp_path, monkeypatch, recorded, message):
    """A device (or anyone holding its key) that records a confident synthetic verdict but
    labels the frame a plain capture is caught by re-deriving the rule from the record."""
    sealer = Sealer(device, lab=True)
    forged = {**policy.decide("capture"), **recorded}
    with monkeypatch.context() as patched:
        patched.setattr(policy, "decide", lambda *args, **kwargs: forged)
        result = sealer.seal(FakeCamera(640, 480).capture_array(), "capture", tmp_path, origin=LAB_CAMERA)
    report = verify_file(result["path"], vendor_ca[1])
    failed = {c["check"]: c["detail"] for c in report["checks"] if c["status"] == "fail"}
    assert not report["ok"] and message in failed["policy"]


class _BrokenInterpreterClassifier(Classifier):
    """The shipped model whose interpreter fails mid-run (fault injection)."""

    def __init__(self):
        super().__init__()
        self.failing = True  # from here on; loading itself runs the model once

    def classify_patches(self, patches):
        if getattr(self, "failing", False):
            raise RuntimeError("Node number 3 (CONV_2D) failed to invoke")
        return super().classify_patches(patches)


def test_an_interpreter_failure_on_a_frame_fails_closed_and_keeps_the_frame(device, tmp_path):
    sealer = Sealer(device, _BrokenInterpreterClassifier(), lab=True)
    result = sealer.seal(FakeCamera(640, 480).capture_array(), "capture", tmp_path, origin=LAB_CAMERA)
    assert result["decision"]["rule"] == "capture-unclassified" and result["decision"]["label"] == "2"
    assert "RuntimeError: Node number 3" in result["decision"]["classifier_error"]
    assert Path(result["path"]).exists()


def test_a_classifier_without_the_policys_classes_is_refused(device, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("Real\nSynthetic\nScreen\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lack the policy's classes"):
        Sealer(device, Classifier(labels_path=labels), lab=True)


# ---------------------------------------------------------------- the device CLI


@pytest.fixture
def provisioned_state(tmp_path, vendor_ca):
    return make_device(tmp_path / "state", vendor_ca, own=False).directory


def _captures(agent, frames=1):
    with agent.client() as client:
        return [o["result"] for o in client.capture(frames, "capture")["results"]]


def test_agent_with_a_truncated_model_warns_and_labels_possibly(provisioned_state, tmp_path, agent_for):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(Path(DEFAULT_MODEL).read_bytes()[:5000])
    agent = agent_for(provisioned_state, tmp_path / "out", classifier={"model": str(truncated)})
    warning = [line for line in agent.stderr().splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "truncated or corrupt" in warning[0] and "Label 2" in warning[0]
    (result,) = _captures(agent)
    assert result["rule"] == "capture-unclassified" and result["label"] == "2"
    assert result["classifier"] == "unavailable"


def test_agent_with_renamed_classes_warns_and_labels_possibly(provisioned_state, tmp_path, agent_for):
    """Classes named other than the policy's would read as 'never synthetic': refused at start."""
    labels = tmp_path / "labels.txt"
    labels.write_text("Real\nSynthetic\nScreen\n", encoding="utf-8")
    agent = agent_for(provisioned_state, tmp_path / "out",
                      classifier={"model": "shipped", "labels": str(labels)}, camera={"fake_sensor_noise": 0})
    assert "lacks the classes ['synthetic', 'screen']" in agent.stderr()
    (result,) = _captures(agent)
    assert result["rule"] == "capture-unclassified" and result["label"] == "2"


def test_agent_with_the_shipped_model_records_its_hash(provisioned_state, tmp_path, agent_for):
    import hashlib
    agent = agent_for(provisioned_state, tmp_path / "out", classifier={"model": "shipped"})
    (result,) = _captures(agent)
    assert result["classifier"] == {"model_sha256": hashlib.sha256(Path(DEFAULT_MODEL).read_bytes()).hexdigest()}
    assert set(result["scores"]) >= {"real", "synthetic", "screen"}


def test_agent_without_a_model_relies_on_the_declared_source(provisioned_state, tmp_path, agent_for):
    agent = agent_for(provisioned_state, tmp_path / "out", classifier={"model": "none"},
                      camera={"fake_sensor_noise": 0})
    (result,) = _captures(agent)
    assert result["rule"] == "capture" and result["label"] is None and result["scores"] is None
    assert result["classifier"] == "off"
