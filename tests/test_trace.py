"""Tracing files whose labels were stripped (issue 11, part B): every seal record carries
the decoded pixels' SHA-256, a PDQ hash and the identifier of an invisible watermark;
`trace` finds the record again after exiftool -all= (real exiftool), JPEG quality 75,
a resize to half and a 10 % crop, and says "not traced" past the documented limits."""

import base64
import hashlib
import io
import json
import os
import shutil
import sqlite3
import struct
import subprocess
from pathlib import Path

import c2pa
import numpy as np
import pytest
from PIL import Image, ImageFilter

from synthseal.device import fingerprint, watermark
from synthseal.device.camera import FakeCamera
from synthseal.device.core import jpeg, logrecord
from synthseal.device.explicit_label import draw_explicit_label
from synthseal.device.seal import C2PA_ASSERTION_LABEL, C2PA_SOFT_BINDING_LABEL, Sealer
from synthseal.device.service import DeviceAnswers
from synthseal.host import logdb
from synthseal.host.client import DeviceClient
from synthseal.host.simlink import LoopbackTransport
from synthseal.host.trace import trace_file
from tests.conftest import SERIAL, make_device
from tests.test_cli import run

WIDTH, HEIGHT = 2028, 1520  # half a Pi HQ frame: big enough for the edits, quick to seal


def textured(seed, width=WIDTH, height=HEIGHT):
    """A busy scene (noise at three scales): PDQ rates it high quality, unlike the fake
    camera's smooth test scenes, so the PDQ path can be exercised."""
    rng = np.random.RandomState(seed)
    total = np.zeros((height, width, 3))
    for step in (4, 16, 64):
        small = (rng.rand(height // step + 1, width // step + 1, 3) * 255).astype(np.uint8)
        total += np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), float)
    return (total / 3).astype(np.uint8)


@pytest.fixture(scope="module")
def traced(tmp_path_factory, vendor_ca):
    """Four sealed files (two rig renders, one busy render, one capture) pulled into a database."""
    base = tmp_path_factory.mktemp("trace")
    state = make_device(base / "device", vendor_ca)
    sealer = Sealer(state, lab=True)
    camera = FakeCamera(WIDTH, HEIGHT, seed=11)
    results = [sealer.seal(camera.capture_array(), "rig", base / "out") for _ in range(2)]
    results.append(sealer.seal(textured(5), "rig", base / "out"))
    results.append(sealer.seal(camera.capture_array(), "capture", base / "out", origin=camera.origin))
    client = DeviceClient(LoopbackTransport(DeviceAnswers(state).answer), give_up_after=5)
    client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    db = base / "audit.sqlite"
    logdb.pull(client, db)
    return {"state": state, "results": results, "db": db, "base": base}


def _decoded(path):
    with Image.open(path) as image:
        return image.convert("RGB")


def _jpeg(image, path, quality):
    image.save(path, "JPEG", quality=quality)
    return path


def test_each_seal_record_carries_the_pixels_digest_pdq_and_watermark(traced):
    db = sqlite3.connect(str(traced["db"]))
    for result in traced["results"]:
        raw, = db.execute("SELECT raw FROM records WHERE device_serial=? AND seq=?", (SERIAL, result["seq"])).fetchone()
        rec = logrecord.decode_record(bytes(raw))
        trace = rec["decision"]["trace"]
        decoded = _decoded(result["path"])
        assert trace["px"] == hashlib.sha256(decoded.tobytes()).hexdigest()
        assert trace["pdq"] == fingerprint.pdq(decoded)[0]
        assert watermark.detect(decoded)["identifier"] == trace["wm"]
        assert trace["wh"] == "%dx%d" % (WIDTH, HEIGHT)
        assert len(raw) < logrecord.MAX_RECORD_LEN // 2
    assert len({r["decision"]["trace"]["wm"] for r in traced["results"]}) == len(traced["results"])


def test_the_manifest_declares_the_watermark_as_a_soft_binding_and_stays_trusted(traced, vendor_ca):
    context = c2pa.Context(settings=c2pa.Settings.from_dict({
        "trust": {"trust_anchors": vendor_ca.root_pem}, "verify": {"verify_trust": True}}))
    result = traced["results"][0]
    with open(result["path"], "rb") as f:
        reader = c2pa.Reader("image/jpeg", f, context=context)
        assert reader.get_validation_state() == "Trusted"
        store = json.loads(reader.json())
    manifest = store["manifests"][store["active_manifest"]]
    sealed, = [a["data"] for a in manifest["assertions"] if a["label"] == C2PA_ASSERTION_LABEL]
    assert sealed["decision"]["trace"] == result["decision"]["trace"]  # as in the record: verify compares them
    binding, = [a["data"] for a in manifest["assertions"] if a["label"] == C2PA_SOFT_BINDING_LABEL]
    assert binding["alg"] == watermark.ALGORITHM
    assert base64.b64decode(binding["blocks"][0]["value"]).hex() == result["decision"]["trace"]["wm"]


def test_exiftool_stripped_file_is_traced_by_its_decoded_pixels(traced, tmp_path):
    result = traced["results"][0]
    stripped = tmp_path / "stripped.jpg"
    shutil.copy(result["path"], stripped)
    subprocess.run(["exiftool", "-q", "-all=", "-overwrite_original", str(stripped)], check=True)
    tags = json.loads(subprocess.run(["exiftool", "-j", "-XMP-TC260:Aigc", "-JUMBF:all", str(stripped)],
                                     capture_output=True, text=True, check=True).stdout)[0]
    assert "Aigc" not in tags and len(tags) == 1  # only SourceFile: the labels are gone
    assert hashlib.sha256(stripped.read_bytes()).hexdigest() != result["sha256"]  # the log's file hash no longer finds it

    found = trace_file(stripped, traced["db"], traced["state"].test_vendor.root_pem)
    assert found["traced"] and found["method"] == "pixels"
    assert (found["serial"], found["seq"], found["produce_id"], found["label"]) == (SERIAL, result["seq"], result["produce_id"], "1")
    assert found["labels"] == {"aigc": False, "c2pa": False} and found["log_problems"] == []
    assert found["summary"] == "sealed by device %s as Label 1 (AI-generated) on %s; labels removed" % (SERIAL, found["sealed_at"])


def test_a_stripped_real_capture_is_named_as_one(traced, tmp_path):
    result = traced["results"][3]
    assert result["decision"]["label"] is None
    path = _jpeg(_decoded(result["path"]), tmp_path / "capture.jpg", 75)
    found = trace_file(path, traced["db"])
    assert found["traced"] and found["method"] == "watermark" and found["seq"] == result["seq"]
    assert found["summary"].startswith("sealed by device %s as a real capture (no AIGC label) on " % SERIAL)
    assert found["summary"].endswith("C2PA manifest removed")


def test_the_untouched_file_is_traced_with_its_labels_present(traced):
    found = trace_file(traced["results"][1]["path"], traced["db"])
    assert found["traced"] and found["method"] == "pixels" and found["distance"] == 0
    assert found["labels"] == {"aigc": True, "c2pa": True}
    assert found["summary"].endswith("labels present (check them with `verify`)")


@pytest.mark.parametrize("edit", ["jpeg-q75", "half-size", "crop-10-percent"])
def test_an_edited_copy_is_traced_by_its_watermark(traced, tmp_path, edit):
    result = traced["results"][1]
    image = _decoded(result["path"])
    if edit == "jpeg-q75":
        image = Image.open(_jpeg(image, tmp_path / "q75.jpg", 75))
    elif edit == "half-size":
        image = image.resize((WIDTH // 2, HEIGHT // 2), Image.LANCZOS)
    else:  # 5 % off each side: 10 % of the width and of the height gone
        image = image.crop((WIDTH // 20, HEIGHT // 20 + 3, WIDTH - WIDTH // 20, HEIGHT - HEIGHT // 20))
    path = _jpeg(image, tmp_path / (edit + ".jpg"), 90)
    found = trace_file(path, traced["db"])
    assert found["traced"] and found["method"] == "watermark", found["detail"]
    assert (found["seq"], found["produce_id"]) == (result["seq"], result["produce_id"])
    assert found["summary"].startswith("sealed by device %s as Label 1" % SERIAL) and "; labels removed" in found["summary"]
    # PDQ is not made for crops: the summary says the picture no longer matches the sealed one.
    assert ("by its watermark only" in found["summary"]) == (found["distance"] > fingerprint.PDQ_MATCH_DISTANCE)
    assert ("by its watermark only" in found["summary"]) == (edit == "crop-10-percent")


def test_a_copy_past_the_documented_limits_is_reported_as_not_traced(traced, tmp_path):
    # Smaller than one watermark tile, and a scene PDQ rates too flat to match.
    path = _jpeg(_decoded(traced["results"][1]["path"]).crop((600, 500, 600 + watermark.TILE - 56, 700)),
                 tmp_path / "tiny.jpg", 90)
    found = trace_file(path, traced["db"])
    assert not found["traced"] and found["method"] is None and found["serial"] is None
    assert "no watermark decoded" in found["detail"] and "no record has these decoded pixels" in found["detail"]
    assert found["summary"].startswith("not traced")


def test_a_blurred_busy_scene_is_traced_by_pdq(traced, tmp_path):
    result = traced["results"][2]
    # A blur wipes the watermark's chips out; the picture, and so its PDQ hash, stays.
    blurred = _decoded(result["path"]).resize((WIDTH // 4, HEIGHT // 4), Image.LANCZOS).filter(ImageFilter.GaussianBlur(3))
    path = _jpeg(blurred, tmp_path / "blurred.jpg", 75)
    assert watermark.detect(Image.open(path), sizes=[(WIDTH, HEIGHT)])["identifier"] is None
    found = trace_file(path, traced["db"])
    assert found["traced"] and found["method"] == "pdq" and found["seq"] == result["seq"], found["detail"]
    assert found["distance"] <= fingerprint.PDQ_MATCH_DISTANCE


def test_unrelated_busy_images_are_far_from_every_record_by_pdq(traced, tmp_path):
    for seed in range(6, 14):
        path = _jpeg(Image.fromarray(textured(seed, 1014, 760)), tmp_path / ("other-%d.jpg" % seed), 85)
        found = trace_file(path, traced["db"])
        assert not found["traced"], found["detail"]
        assert found["distance"] > fingerprint.PDQ_MATCH_DISTANCE + 20
        assert "above the threshold" in found["detail"]


def test_an_unmarked_frame_yields_no_watermark():
    frame = Image.fromarray(FakeCamera(1014, 760, seed=3).capture_array())
    result = watermark.detect(frame, sizes=[(WIDTH, HEIGHT)])
    assert result["identifier"] is None and result["sync_score"] < watermark.MIN_SYNC_SCORE


def test_the_watermark_is_invisible_and_leaves_the_visible_label_as_drawn():
    frame = FakeCamera(1014, 760, seed=4).capture_array()
    marked = watermark.embed(frame, "0123456789ab")
    assert np.array_equal(frame, FakeCamera(1014, 760, seed=4).capture_array())  # the caller's frame untouched
    mse = np.mean((marked.astype(float) - frame) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) >= 40
    plain, watermarked = Image.fromarray(frame), Image.fromarray(marked)
    box, _ = draw_explicit_label(plain, "AI生成", "bottom-left")
    draw_explicit_label(watermarked, "AI生成", "bottom-left")
    a = np.asarray(plain.crop(box), int)
    b = np.asarray(watermarked.crop(box), int)
    ink = a.min(axis=2) == 255
    assert ink.sum() > 100 and np.array_equal(a[ink], b[ink])  # the text's pixels are the same
    assert np.abs(a - b).max() <= watermark.AMPLITUDE


def test_bad_input_gets_a_reason_not_an_exception(traced, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert "cannot read" in trace_file(text, traced["db"])["detail"]
    assert "cannot read" in trace_file(tmp_path / "missing.jpg", traced["db"])["detail"]
    found = trace_file(traced["results"][0]["path"], tmp_path / "no.sqlite")
    assert not found["traced"] and "audit database" in found["detail"]


def test_a_database_pulled_before_the_index_is_backfilled_when_opened(traced, tmp_path):
    old = tmp_path / "old.sqlite"
    shutil.copy(traced["db"], old)
    with sqlite3.connect(str(old)) as db:
        db.execute("DROP TABLE trace_index")
    result = traced["results"][0]
    image = _decoded(result["path"])
    stripped = _jpeg(image, tmp_path / "q75.jpg", 75)
    assert trace_file(stripped, old)["seq"] == result["seq"]  # read-only: found by scanning the records
    logdb.open_db(old).close()
    with sqlite3.connect(str(old)) as db:
        assert db.execute("SELECT COUNT(*) FROM trace_index").fetchone()[0] == len(traced["results"])
    assert trace_file(stripped, old)["seq"] == result["seq"]


def test_an_edited_index_row_does_not_misattribute(traced, tmp_path):
    copy = tmp_path / "edited.sqlite"
    shutil.copy(traced["db"], copy)
    first, second = traced["results"][0], traced["results"][1]
    with sqlite3.connect(str(copy)) as db:  # point the first file's pixel digest at the second record
        db.execute("UPDATE trace_index SET pixel_sha256=? WHERE seq=?", (first["decision"]["trace"]["px"], second["seq"]))
    found = trace_file(first["path"], copy)
    assert found["seq"] == first["seq"] or not found["traced"]
    assert found["seq"] != second["seq"]


def test_trace_on_the_command_line(traced, tmp_path, vendor_ca):
    anchor = tmp_path / "root.pem"
    anchor.write_text(vendor_ca.root_pem)
    half = _jpeg(_decoded(traced["results"][0]["path"]).resize((WIDTH // 2, HEIGHT // 2)), tmp_path / "half.jpg", 75)
    done = run("host", "trace", half, "--db", traced["db"], "--trust-anchor", anchor)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sealed by device %s as Label 1 (AI-generated)" % SERIAL in done.stdout and "found by watermark" in done.stdout
    tiny = _jpeg(_decoded(traced["results"][0]["path"]).crop((0, 0, 120, 90)), tmp_path / "tiny.jpg", 75)
    done = run("host", "trace", half, tiny, "--db", traced["db"], "--json")
    assert done.returncode == 1
    assert [r["traced"] for r in json.loads(done.stdout)] == [True, False]
    done = run("host", "trace", half, "--db", tmp_path / "none.sqlite")
    assert done.returncode == 2 and "audit database" in done.stderr


def _edited(result, edit, tmp_path):
    """A copy of a sealed file as a platform or a person might pass it on."""
    if edit == "stripped":
        path = tmp_path / "stripped.jpg"
        shutil.copy(result["path"], path)
        subprocess.run(["exiftool", "-q", "-all=", "-overwrite_original", str(path)], check=True)
        return path
    image = _decoded(result["path"])
    if edit == "half-size":
        image = image.resize((WIDTH // 2, HEIGHT // 2), Image.LANCZOS)
    elif edit == "crop-10-percent":
        image = image.crop((WIDTH // 20, HEIGHT // 20, WIDTH - WIDTH // 20, HEIGHT - HEIGHT // 20))
    elif edit == "past-the-limits":
        image = image.crop((600, 500, 600 + watermark.TILE - 56, 700))
    return _jpeg(image, tmp_path / (edit + ".jpg"), 75)


@pytest.mark.parametrize("edit, method", [("stripped", "pixels"), ("jpeg-q75", "watermark"),
                                          ("half-size", "watermark"), ("crop-10-percent", "watermark")])
def test_verify_traces_a_stripped_or_edited_file_to_its_record(traced, tmp_path, edit, method):
    from jsonschema import Draft202012Validator
    from synthseal.host.verify import Verifier
    from synthseal.host.verify_report import SCHEMA_PATH, document, row
    result = traced["results"][0]
    path = _edited(result, edit, tmp_path)
    with Verifier(traced["state"].test_vendor.root_pem, traced["db"]) as verifier:
        report = verifier.verify(path)
    assert report["result"] == "failed"  # the labels are gone, whoever sealed it
    trace = next(c for c in report["checks"] if c["check"] == "trace")
    t = report["traced_to"]
    # A crop is far from the sealed picture by PDQ, as a copied watermark would be: a warning.
    assert (trace["status"], t["same_picture"]) == (("warn", False) if edit == "crop-10-percent" else ("pass", True)), trace
    assert (t["method"], t["serial"], t["seq"], t["produce_id"], t["label"]) == (
        method, SERIAL, result["seq"], result["produce_id"], "1")
    assert t["summary"].startswith("sealed by device %s as Label 1 (AI-generated) on " % SERIAL)
    assert "labels removed" in t["summary"]
    Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(document([report]))
    assert row(report)["traced_to"].startswith("sealed by device %s" % SERIAL)


def test_verify_says_when_a_file_cannot_be_traced_and_what_tracing_needs(traced, tmp_path):
    from synthseal.host.verify import Verifier
    path = _edited(traced["results"][0], "past-the-limits", tmp_path)
    with Verifier(traced["state"].test_vendor.root_pem, traced["db"]) as verifier:
        report = verifier.verify(path)
    trace = next(c for c in report["checks"] if c["check"] == "trace")
    assert trace["status"] == "fail" and "not traced" in trace["detail"] and report["traced_to"] is None
    with Verifier(traced["state"].test_vendor.root_pem) as verifier:
        report = verifier.verify(_edited(traced["results"][0], "stripped", tmp_path))
    trace = next(c for c in report["checks"] if c["check"] == "trace")
    assert trace["status"] == "skip" and "--db" in trace["detail"]


def test_verify_does_not_trace_through_a_log_that_fails_against_the_vendor_root(traced, tmp_path):
    from synthseal.host.verify import Verifier
    db = tmp_path / "edited.sqlite"
    shutil.copy(traced["db"], db)
    conn = sqlite3.connect(db)
    with conn:  # the newest signed head removed: the records after the last one left are unanchored
        conn.execute("DELETE FROM checkpoints")
    conn.close()
    with Verifier(traced["state"].test_vendor.root_pem, db) as verifier:
        report = verifier.verify(_edited(traced["results"][0], "stripped", tmp_path))
    trace = next(c for c in report["checks"] if c["check"] == "trace")
    assert trace["status"] == "fail" and "does not verify" in trace["detail"] and report["traced_to"] is None


def test_verify_on_the_command_line_names_the_record_of_a_stripped_file(traced, tmp_path, vendor_ca):
    anchor = tmp_path / "root.pem"
    anchor.write_text(vendor_ca.root_pem)
    path = _edited(traced["results"][0], "stripped", tmp_path)
    done = run("host", "verify", "--trust-anchor", anchor, "--db", traced["db"], path)
    assert done.returncode == 1
    assert "TRACED" in done.stdout and "sealed by device %s as Label 1" % SERIAL in done.stdout


def test_a_watermark_copied_onto_another_picture_is_a_warning_not_a_pass(traced, tmp_path):
    # The scheme is public: anyone can read a sealed file's identifier and stamp it on
    # other pixels. The trace names the record but says the picture is not the sealed one.
    from synthseal.host.verify import Verifier
    result = traced["results"][3]  # a real capture
    forged = watermark.embed(textured(99), result["decision"]["trace"]["wm"])
    path = _jpeg(Image.fromarray(forged), tmp_path / "forged.jpg", 90)
    with Verifier(traced["state"].test_vendor.root_pem, traced["db"]) as verifier:
        report = verifier.verify(path)
    trace = next(c for c in report["checks"] if c["check"] == "trace")
    assert trace["status"] == "warn" and "by its watermark only" in trace["detail"]
    assert report["traced_to"]["same_picture"] is False and report["traced_to"]["seq"] == result["seq"]
    assert report["result"] == "failed"


def _claims_size(path, width, height):
    """A small JPEG whose frame header claims width x height: what a decompression
    bomb looks like before it is decoded."""
    small = io.BytesIO()
    Image.new("RGB", (16, 16)).save(small, "JPEG")
    data = bytearray(small.getvalue())
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    path.write_bytes(bytes(data))
    return path


def test_a_pipe_and_a_picture_larger_than_any_sealed_one_are_refused_before_reading(traced, tmp_path):
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    done = run("host", "trace", "--db", traced["db"], fifo)  # a hang runs into run()'s timeout
    assert done.returncode == 1 and "not a regular file" in done.stdout, done.stdout + done.stderr
    found = trace_file(_claims_size(tmp_path / "huge.jpg", 10000, 10000), traced["db"])
    assert not found["traced"] and found["detail"] == "10000×10000 pixels: larger than any image synthseal seals"
    assert jpeg.MAX_PIXELS > 4056 * 3040  # the largest frame synthseal seals is still read


def test_trace_shows_names_and_details_escaped(traced, tmp_path):
    name = tmp_path / "a\x1b[31mred\x07\nline.jpg"
    _jpeg(_decoded(traced["results"][0]["path"]), name, 75)
    done = run("host", "trace", "--db", traced["db"], name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith(str(tmp_path) + "/a\\x1b[31mred\\x07\\nline.jpg: sealed by device")


# Drops a NOT NULL from the schema; ";;" ends the script: the next one runs on a new connection.
_NOT_NULL = "PRAGMA writable_schema=ON; UPDATE sqlite_master SET sql=replace(sql, '%s', '%s') WHERE name='%s'; " \
            "PRAGMA writable_schema=OFF;;"


@pytest.mark.parametrize("edit, reason", [
    ("UPDATE trace_index SET width='abc'", "recorded frame size 'abc' x %d left out" % HEIGHT),
    (_NOT_NULL % ("width         INTEGER NOT NULL", "width INTEGER", "trace_index")
     + "UPDATE trace_index SET width=NULL", "recorded frame size None x %d left out" % HEIGHT),
    ("UPDATE trace_index SET width=-2028, height=-1520", "recorded frame size -2028 x -1520 left out"),
    ("UPDATE trace_index SET width=8192, height=6144", "recorded frame size 8192 x 6144 left out"),
    (_NOT_NULL % ("raw            BLOB NOT NULL", "raw BLOB", "records")
     + "UPDATE records SET raw=NULL", "skipped: its bytes are NULL, not a BLOB"),
    ("UPDATE records SET raw='hello'", "skipped: its bytes are str, not a BLOB"),
])
def test_odd_database_values_are_skipped_with_a_reason(traced, tmp_path, edit, reason):
    db = tmp_path / "edited.sqlite"
    shutil.copy(traced["db"], db)
    for script in edit.split(";;"):  # a schema edit takes effect on the next connection
        conn = sqlite3.connect(db)
        conn.executescript(script)
        conn.close()
    copy = _jpeg(_decoded(traced["results"][0]["path"]), tmp_path / "q75.jpg", 75)  # the watermark path
    found = trace_file(copy, db)
    assert "unexpected error" not in found["detail"] and reason in found["detail"], found["detail"]
    done = run("host", "trace", "--db", db, copy)
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr and reason in done.stdout


def test_the_watermark_detector_tries_no_size_a_sealed_frame_cannot_have(monkeypatch):
    tried = []
    monkeypatch.setattr(watermark, "detect_luma", lambda plane: tried.append(plane.size)
                        or {"identifier": None, "sync_score": 0.0, "margin": 0.0})
    watermark.detect(Image.new("RGB", (160, 120)), sizes=[(8192, 6144), ("abc", 960), (-4, -3), (None, 480), (640, 480)])
    assert tried == [(160, 120), (640, 480), (320, 240)]  # as it is, the recorded size, twice its size


def _without_c2pa(data):
    """The file with its APP11 (JUMBF: the C2PA manifest) segments cut out, all else kept."""
    kept = [data[:2]] + [data[start:end] for marker, start, end in jpeg.segments(data) if marker != 0xEB]
    return b"".join(kept)


@pytest.mark.parametrize("label", ["1", "3"])
def test_with_the_manifest_stripped_the_label_is_checked_against_the_record_and_the_devices_key(
        traced, tmp_path, label):
    """Manifest cut out, metadata label kept (or its Label turned from 1 to 3, "suspected"):
    the record the pixels trace to names the device, whose key in the pulled log checks
    ReservedCode1, and a changed label is named as changed."""
    from synthseal.host.verify import Verifier
    result = traced["results"][0]
    data = _without_c2pa(Path(result["path"]).read_bytes())
    assert data.count(b'"Label":"1"') == 1
    path = tmp_path / "no-manifest.jpg"
    path.write_bytes(data.replace(b'"Label":"1"', b'"Label":"%s"' % label.encode()))
    with Verifier(traced["state"].test_vendor.root_pem, traced["db"]) as verifier:
        report = verifier.verify(path)
    found = {c["check"]: c for c in report["checks"]}
    assert report["result"] == "failed" and found["c2pa"]["status"] == "fail"
    assert [c["check"] for c in report["checks"]].index("reserved_code1") < [c["check"] for c in report["checks"]].index("log")
    if label == "1":
        assert found["reserved_code1"]["status"] == "pass" and "the pulled log's chain" in found["reserved_code1"]["detail"]
        assert found["trace"]["status"] == "pass" and "C2PA manifest removed" in found["trace"]["detail"]
    else:
        assert found["reserved_code1"]["status"] == "fail"
        assert found["trace"]["status"] == "fail"
        assert "sealed as Label 1" in found["trace"]["detail"] and "says Label 3" in found["trace"]["detail"]
        assert "changed after sealing" in found["trace"]["detail"]
