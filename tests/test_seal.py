"""Sealed files, read back by the real reference tools: c2pa.Reader (Trusted with the
vendor root), exiftool (XMP-TC260:Aigc), and the pixels of the decoded image."""

import io
import json
import subprocess
from pathlib import Path

import c2pa
import numpy as np
import pytest
from PIL import Image

from synthseal.device.camera import FakeCamera
from synthseal.device.core import aigc, policy
from synthseal.device.explicit_label import MIN_HEIGHT_FRACTION, ExplicitLabelError, draw_explicit_label
from synthseal.device.seal import C2PA_ASSERTION_LABEL, SealError, Sealer
from synthseal.host.verify import c2pa_reader_context, verify_file


@pytest.mark.parametrize("source", ["rig", "capture", "composite"])
def test_every_sealed_file_is_trusted_with_the_vendor_root(sealed, vendor_ca, source):
    path = sealed["results"][source]["path"]
    with open(path, "rb") as f:
        reader = c2pa.Reader("image/jpeg", f, context=c2pa_reader_context(vendor_ca[1]))
        assert reader.get_validation_state() == "Trusted"
        manifest = json.loads(reader.json())
    active = manifest["manifests"][manifest["active_manifest"]]
    assertions = {a["label"]: a["data"] for a in active["assertions"]}
    created = assertions["c2pa.actions.v2"]["actions"][0]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == policy.IPTC_DST + policy.POLICY_TABLE[source]["dst"]
    assert assertions[C2PA_ASSERTION_LABEL]["decision"]["rule"] == source
    assert active.get("thumbnail") is None  # thumbnails are off on the device


def test_sealed_file_is_untrusted_without_the_vendor_root(sealed):
    with open(sealed["results"]["rig"]["path"], "rb") as f:
        state = c2pa.Reader("image/jpeg", f).get_validation_state()
    assert state != "Trusted"


def _exiftool_aigc(path):
    out = subprocess.run(["exiftool", "-j", "-XMP-TC260:Aigc", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0].get("Aigc")


@pytest.mark.parametrize("source", ["rig", "composite"])
def test_exiftool_reads_the_seven_field_label(sealed, source):
    text = _exiftool_aigc(sealed["results"][source]["path"])
    label = json.loads(text)
    assert list(label) == list(aigc.FIELDS)
    assert label["Label"] == "1"
    assert label["ProduceID"] == sealed["results"][source]["produce_id"]
    assert label["ContentPropagator"] == label["ContentProducer"] and label["PropagateID"] == label["ProduceID"]
    for name, value in label.items():
        aigc.check_value(name, value)


def test_a_real_capture_carries_no_ai_label(sealed):
    assert _exiftool_aigc(sealed["results"]["capture"]["path"]) is None


def test_produce_ids_are_unique(sealed):
    ids = [r["produce_id"] for r in sealed["results"].values()]
    assert len(set(ids)) == len(ids)


def measure_label(original, labelled):
    """Find the label plate where the image changed, and the height of the white text
    inside it, on decoded pixels."""
    changed = np.abs(labelled.astype(int) - original.astype(int)).max(axis=2) > 40
    rows, cols = np.nonzero(changed)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    text = labelled[y0:y1, x0:x1].min(axis=2) > 200
    text_rows = np.nonzero(text.any(axis=1))[0]
    return (x0, y0, x1, y1), text_rows.max() - text_rows.min() + 1


@pytest.mark.parametrize("source", ["rig", "composite"])
def test_explicit_label_is_tall_enough_and_in_a_corner_on_the_decoded_image(sealed, source):
    result = sealed["results"][source]
    decoded = np.asarray(Image.open(result["path"]).convert("RGB"))
    (x0, y0, x1, y1), height = measure_label(result["frame"], decoded)
    h, w = decoded.shape[:2]
    assert height >= MIN_HEIGHT_FRACTION * min(h, w)
    assert x0 < 0.05 * w and y1 > 0.95 * h  # bottom-left corner


def first_glyph_height(labelled, box):
    """Ink height of the label's first character ("A" of "AI生成") inside the plate `box`
    (from measure_label), on decoded pixels: the first run of columns holding white text."""
    x0, y0, x1, y1 = box
    text = labelled[y0:y1, x0:x1].min(axis=2) > 200
    inked = text.any(axis=0)
    first = np.flatnonzero(inked)[0]
    end = first + np.argmin(inked[first:])  # the first blank column after the glyph
    glyph_rows = np.flatnonzero(text[:, first:end].any(axis=1))
    return glyph_rows.max() - glyph_rows.min() + 1


@pytest.mark.parametrize("size", [(320, 240), (640, 480), (1280, 960), (1080, 1920), (4056, 3040)])
def test_label_height_holds_at_every_frame_size_for_every_character(size):
    """GB 45438's 5 % holds for the whole text and for "AI" too, not only for the taller
    Chinese characters beside it."""
    frame = FakeCamera(*size).capture_array()
    labelled = frame.copy()
    draw_explicit_label(labelled)
    buffer = io.BytesIO()
    Image.fromarray(labelled).save(buffer, "JPEG", quality=85)
    decoded = np.asarray(Image.open(buffer))
    box, height = measure_label(frame, decoded)
    assert height >= MIN_HEIGHT_FRACTION * min(size)
    assert first_glyph_height(decoded, box) >= MIN_HEIGHT_FRACTION * min(size)


def test_a_real_capture_has_no_explicit_label(sealed):
    result = sealed["results"]["capture"]
    would_be = result["frame"].copy()
    (x0, y0, x1, y1), _ = draw_explicit_label(would_be)
    decoded = np.asarray(Image.open(result["path"]).convert("RGB")).astype(int)
    difference = np.abs(decoded - result["frame"].astype(int))[y0:y1, x0:x1]
    assert difference.mean() < 4  # JPEG error only; a label plate would change it by ~100


def test_changing_one_pixel_byte_fails_verification_with_reasons(sealed, vendor_ca, tmp_path):
    path = Path(sealed["results"]["rig"]["path"])
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0x01  # inside the entropy-coded scan
    tampered = tmp_path / "tampered.jpg"
    tampered.write_bytes(bytes(data))
    report = verify_file(tampered, vendor_ca[1])
    assert not report["ok"]
    failed = {c["check"]: c["detail"] for c in report["checks"] if c["status"] == "fail"}
    assert "c2pa" in failed and "mismatch" in failed["c2pa"].lower()


def test_sealing_fails_closed_when_the_log_cannot_be_written(device, tmp_path):
    sealer = Sealer(device, lab=True)
    device.log_path.unlink()
    device.log_path.mkdir()  # appends now fail, whoever runs the test
    out = tmp_path / "out"
    with pytest.raises(SealError, match="not emitted"):
        sealer.seal(FakeCamera(320, 240).capture_array(), "rig", out)
    assert list(out.glob("*.jpg")) == [] and list((out / ".partial").glob("*")) == []


def test_sealing_fails_closed_when_signing_fails(device, tmp_path):
    sealer = Sealer(device, lab=True)
    device.keystore._key = None
    device.keystore.key_path.rename(device.keystore.key_path.with_suffix(".gone"))
    out = tmp_path / "out"
    with pytest.raises(SealError, match="not emitted"):
        sealer.seal(FakeCamera(320, 240).capture_array(), "rig", out)
    assert not out.exists() or list(out.rglob("*.jpg*")) == []
    assert device.log().next_seq == 2  # the enrolment record alone



def test_a_group_commit_emits_every_frame_of_the_group_or_none(device, tmp_path):
    sealer = Sealer(device, lab=True)
    camera = FakeCamera(320, 240)
    out = tmp_path / "out"
    base = device.log().next_seq
    batch = [sealer.sign(sealer.prepare(camera.capture_array(), "rig"), base + n, out) for n in range(3)]
    results = sealer.commit_many(batch)
    assert [r["seq"] for r in results] == [base, base + 1, base + 2] and {r["log_group"] for r in results} == {3}
    assert sorted(p.name for p in out.glob("*.jpg")) == sorted(Path(r["path"]).name for r in results)
    # The log write fails for the next group: none of its files appears, no temporary stays.
    batch = [sealer.sign(sealer.prepare(camera.capture_array(), "rig"), base + 3 + n, out) for n in range(2)]
    device.log_path.rename(device.log_path.with_name("moved"))
    device.log_path.mkdir()
    with pytest.raises(SealError, match="not emitted"):
        sealer.commit_many(batch)
    assert len(list(out.glob("*.jpg"))) == 3 and list((out / ".partial").glob("*")) == []


def test_a_record_landing_between_signing_and_commit_writes_nothing_then_the_frames_are_signed_again(device, tmp_path):
    from synthseal.device.core import logrecord
    from synthseal.device.pipeline import SealPipeline
    from synthseal.device.seal import LogAdvancedError
    sealer = Sealer(device, lab=True)
    camera = FakeCamera(320, 240)
    out = tmp_path / "out"
    log = sealer.log
    # Directly: the group's check and write are one step, so nothing is written.
    base = log.next_seq
    batch = [sealer.sign(sealer.prepare(camera.capture_array(), "rig"), base + n, out) for n in range(2)]
    log.append(0, bytes(32), logrecord.EVENT_PRUNE, "", {"other": "writer"})  # e.g. a prune after an ACK
    with pytest.raises(LogAdvancedError):
        sealer.commit_many(batch)
    assert log.next_seq == base + 1 and list(out.glob("*.jpg")) == [] and list((out / ".partial").glob("*")) == []
    # Through the pipeline: the frame is signed again for the next free seq and emitted.
    real_sign, landed = sealer.sign, []

    def sign_then_another_record_lands(prepared, seq, out_dir):
        signed = real_sign(prepared, seq, out_dir)
        if not landed:
            landed.append(log.append(0, bytes(32), logrecord.EVENT_PRUNE, "", {"other": "writer"})[0])
        return signed
    sealer.sign = sign_then_another_record_lands
    pipeline = SealPipeline(sealer, out, depth=2, prepare_workers=1)
    try:
        result = pipeline.submit(camera.capture_array(), "rig", {}).wait(60)
    finally:
        pipeline.stop()
    assert result["seq"] == landed[0] + 1
    record = logrecord.decode_record(log.read(result["seq"], 1)[0])
    assert record["produce_id"] == result["produce_id"] and record["content_sha256"].hex() == result["sha256"]
    assert [p.name for p in out.glob("*.jpg")] == [Path(result["path"]).name]
    assert list((out / ".partial").glob("*")) == []


@pytest.mark.parametrize("size", [(16, 16), (32, 32), (48, 40)])
def test_a_frame_too_small_for_a_legible_label_is_not_emitted(device, tmp_path, size):
    frame = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    with pytest.raises(ExplicitLabelError, match="too small for a legible label"):
        draw_explicit_label(frame.copy())
    out = tmp_path / "out"
    with pytest.raises(SealError, match="not emitted.*too small for a legible label"):
        Sealer(device, lab=True).seal(frame, "rig", out)
    assert not out.exists() or list(out.rglob("*.jpg*")) == []
