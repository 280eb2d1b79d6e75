"""`synthseal-host verify` tells the whole truth: every check passes, fails or says why
it was skipped; a file is verified only when every check was made; the visible label is
checked against GB 45438 and found in the pixels; any file, database or path becomes a
line in the report; the outputs (table, JSON against its schema, JSONL, CSV, HTML) carry
the same facts, and odd file names cannot break any of them."""

import csv
import io
import json
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from synthseal.device import seal as seal_module
from synthseal.device.seal import Sealer
from synthseal.device.camera import FakeCamera
from synthseal.device.core import aigc, jpeg
from synthseal.host import ca, logdb
from synthseal.host.verify import Verifier, _reserved_code1_keys, read_xmp_label, verify_file
from synthseal.host.verify_report import ROW_FIELDS, SCHEMA_PATH, csv_cell
from tests.test_cli import run

SCHEMA = json.loads(SCHEMA_PATH.read_text())
ROW_VALIDATOR = Draft202012Validator({"$ref": "#/$defs/row", "$defs": SCHEMA["$defs"]})


@pytest.fixture
def anchor(vendor_ca, tmp_path):
    path = tmp_path / "root.pem"
    path.write_text(vendor_ca[1])
    return path


@pytest.fixture
def crl(vendor_ca, tmp_path):
    path = tmp_path / "crl.pem"
    path.write_text(vendor_ca.ca.crl_pem() + ca.pem(vendor_ca.ca.issuing))
    return path


def pulled_log(sealed, service_for, path):
    logdb.pull(service_for(sealed["state"]).client(), path)
    return path


def sealed_paths(sealed):
    return [r["path"] for r in sealed["results"].values()]


def checks(report):
    return {c["check"]: c for c in report["checks"]}


def test_without_the_log_a_good_file_is_incomplete_and_says_what_was_skipped(sealed, anchor):
    result = run("host", "verify", "--trust-anchor", anchor, sealed["results"]["rig"]["path"])
    assert result.returncode == 3, result.stdout + result.stderr
    assert "INCOMPLETE" in result.stdout and "OK" not in result.stdout
    assert "SKIP %s: log: no log database given (--db)" % sealed["results"]["rig"]["path"] in result.stdout
    assert "revocation: no revocation list given (--crl)" in result.stdout
    assert "1 file: 0 verified, 0 failed, 1 incomplete" in result.stdout


def test_the_device_signature_is_checked_from_the_file_alone(sealed, vendor_ca):
    report = verify_file(sealed["results"]["rig"]["path"], vendor_ca[1])
    signature = checks(report)["reserved_code1"]
    assert signature["status"] == "pass" and "the certificate in the manifest" in signature["detail"]
    assert report["result"] == "incomplete" and not report["ok"]


def test_with_the_log_and_the_crl_every_check_is_made_and_the_files_verify(sealed, service_for, anchor, crl, tmp_path):
    db = pulled_log(sealed, service_for, tmp_path / "audit.sqlite")
    result = run("host", "verify", "--trust-anchor", anchor, "--db", db, "--crl", crl, "--json", *sealed_paths(sealed))
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    Draft202012Validator(SCHEMA).validate(document)
    assert document["result"] == "verified" and document["summary"] == {"verified": 3, "failed": 0, "incomplete": 0}
    for report in document["reports"]:
        assert report["ok"] and all(c["status"] in ("pass", "warn") for c in report["checks"]), report["checks"]
    rig = next(r for r in document["reports"] if r["label"] == "1" and r["source_type"] == "trainedAlgorithmicMedia")
    assert rig["label_text"] == "AI生成" and rig["device_serial"] == "TEST-0001"
    assert "in the pixels at the bottom-left corner" in checks(rig)["explicit_label"]["detail"]


def test_a_mixed_batch_matches_the_schema_in_every_format_and_each_file_gets_its_own_line(
        sealed, anchor, tmp_path):
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (64, 64), (90, 120, 30)).save(plain)
    png = tmp_path / "picture.png"
    Image.new("RGB", (32, 32)).save(png)
    folder = tmp_path / "folder"
    folder.mkdir()
    paths = sealed_paths(sealed) + [plain, png, tmp_path / "missing.jpg", folder]
    result = run("host", "verify", "--trust-anchor", anchor, "--format", "json", *paths)
    assert result.returncode == 1 and result.stderr == ""
    document = json.loads(result.stdout)
    Draft202012Validator(SCHEMA).validate(document)
    assert [r["file"] for r in document["reports"]] == [str(p) for p in paths]
    by_file = {r["file"]: r for r in document["reports"]}
    assert "no Content Credentials" in checks(by_file[str(plain)])["c2pa"]["detail"]
    assert checks(by_file[str(plain)])["trace"]["detail"].startswith("no log database given (--db)")
    assert "not a JPEG" in checks(by_file[str(png)])["file"]["detail"]
    assert "No such file" in checks(by_file[str(tmp_path / "missing.jpg")])["file"]["detail"]
    assert "give -r" in checks(by_file[str(folder)])["file"]["detail"]
    assert document["summary"] == {"verified": 0, "failed": 4, "incomplete": 3}

    jsonl = run("host", "verify", "--trust-anchor", anchor, "--format", "jsonl", *paths)
    rows = [json.loads(line) for line in jsonl.stdout.splitlines()]
    for row in rows:
        ROW_VALIDATOR.validate(row)
    as_csv = run("host", "verify", "--trust-anchor", anchor, "--format", "csv", *paths)
    reader = csv.DictReader(io.StringIO(as_csv.stdout))
    assert tuple(reader.fieldnames) == ROW_FIELDS
    assert [r["file"] for r in reader] == [r["file"] for r in rows] == [str(p) for p in paths]
    assert jsonl.returncode == as_csv.returncode == 1


def test_folders_are_walked_with_r_for_their_jpeg_files(sealed, anchor, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(sealed["out"], tree / "a" / "b")
    (tree / "notes.txt").write_text("not an image")
    result = run("host", "verify", "--trust-anchor", anchor, "-r", "--format", "jsonl", tree)
    files = [json.loads(line)["file"] for line in result.stdout.splitlines()]
    assert len(files) == 3 and all(f.endswith(".jpg") and "/a/b/" in f for f in files)
    assert result.returncode == 3 and result.stderr == ""  # no progress line when stderr is not a terminal
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("host", "verify", "--trust-anchor", anchor, "-r", empty)
    assert result.returncode == 2 and result.stderr.startswith("error: no JPEG files under")


ODD_NAMES = ["new\nline.jpg", "odd?x.jpg", "照片 ü.jpg", "\x1b[31mred\x1b]0;title\x07.jpg",
             "<img src=x onerror=alert(1)>.jpg"]


def test_odd_file_names_stay_on_their_row_in_every_format(sealed, anchor, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    paths = []
    for name in ODD_NAMES:
        shutil.copyfile(sealed["results"]["rig"]["path"], folder / name)
        paths.append(folder / name)
    table = run("host", "verify", "--trust-anchor", anchor, *paths)
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout
    lines = table.stdout.splitlines()
    assert len(lines) == 1 + len(paths) + 2 * len(paths) + 1  # header, rows, two skips each, summary
    assert lines[1].startswith("new\\nline.jpg") and "\\x1b[31mred" in table.stdout and "照片 ü.jpg" in table.stdout

    document = json.loads(run("host", "verify", "--trust-anchor", anchor, "--json", *paths).stdout)
    assert [Path(r["file"]).name for r in document["reports"]] == ODD_NAMES
    rows = list(csv.DictReader(io.StringIO(run("host", "verify", "--trust-anchor", anchor, "--format", "csv",
                                               *paths).stdout)))
    assert [Path(r["file"]).name for r in rows] == ODD_NAMES

    report = tmp_path / "report.html"
    result = run("host", "verify", "--trust-anchor", anchor, "--format", "html", "--out", report, *paths)
    assert result.returncode == 3 and result.stdout == ""
    page = report.read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.jpg" in page
    assert page.count('src="data:image/jpeg;base64,') == len(paths)


def test_the_html_report_puts_failures_first_with_their_reasons(sealed, anchor, tmp_path):
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (64, 64), (90, 120, 30)).save(plain)
    report = tmp_path / "audit.html"
    result = run("host", "verify", "--trust-anchor", anchor, "--format", "html", "--out", report,
                 sealed["results"]["rig"]["path"], plain)
    assert result.returncode == 1
    page = report.read_text()
    assert page.index(str(plain)) < page.index(sealed["results"]["rig"]["path"])
    assert "fail c2pa: no Content Credentials" in page and "AI生成" in page and "trainedAlgorithmicMedia" in page


def test_a_label_text_without_the_gb45438_elements_fails_verification(device, vendor_ca, tmp_path):
    """What a device with "." as its label text would have made (the device and the host
    now refuse such a configuration): the rig frame is caught by verify, not passed."""
    sealer = Sealer(device, lab=True)
    sealer.config["label_text"] = "."
    camera = FakeCamera(640, 480, seed=5)
    result = sealer.seal(camera.capture_array(), "rig", tmp_path / "out", origin=camera.origin)
    report = verify_file(result["path"], vendor_ca[1])
    label = checks(report)["explicit_label"]
    assert report["result"] == "failed" and label["status"] == "fail"
    assert "GB 45438" in label["detail"] and '"AI" or "人工智能"' in label["detail"]
    assert report["label_text"] == "."


def test_a_label_the_seal_records_but_the_pixels_lack_fails(device, vendor_ca, tmp_path, monkeypatch):
    monkeypatch.setattr(seal_module, "draw_explicit_label", lambda *args: None)
    camera = FakeCamera(640, 480, seed=5)
    result = Sealer(device, lab=True).seal(camera.capture_array(), "rig", tmp_path / "out", origin=camera.origin)
    label = checks(verify_file(result["path"], vendor_ca[1]))["explicit_label"]
    assert label["status"] == "fail" and "is not in the pixels at the bottom-left corner" in label["detail"]


def test_the_host_refuses_a_bad_label_text_before_asking_anything(tmp_path):
    for command in ("provision", "configure"):
        result = run("host", command, "--ca", tmp_path / "no-ca", "--producer", "x", "--label-text", ".")
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("error: --label-text:") and "生成" in result.stderr


def test_a_foreign_database_with_the_right_table_names_is_one_line(sealed, anchor, tmp_path):
    db = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE devices (name TEXT)")
    con.execute("CREATE TABLE records (what TEXT)")
    con.commit()
    con.close()
    result = run("host", "verify", "--trust-anchor", anchor, "--db", db, sealed["results"]["rig"]["path"])
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "is not a synthseal audit database" in result.stderr


def test_a_database_unreadable_mid_batch_makes_the_log_check_a_skip(sealed, service_for, vendor_ca, tmp_path):
    db = pulled_log(sealed, service_for, tmp_path / "audit.sqlite")
    with Verifier(vendor_ca[1], db) as verifier:
        verifier.db.execute("DROP INDEX IF EXISTS no_such_index")  # read-only: the connection stays usable
        verifier.db.close()  # as if the file went away under the batch
        report = verifier.verify(sealed["results"]["rig"]["path"])
        verifier.db = None
    log = checks(report)["log"]
    assert log["status"] == "skip" and "audit database cannot be read" in log["detail"]
    assert report["result"] == "incomplete"


def test_a_database_path_with_a_question_mark_is_a_path_not_a_uri(sealed, service_for, anchor, tmp_path):
    db = pulled_log(sealed, service_for, tmp_path / "odd?x.sqlite")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run("host", "verify", "--trust-anchor", anchor, "--db", db, "--json", sealed["results"]["rig"]["path"])
    (report,) = json.loads(result.stdout)["reports"]
    assert checks(report)["log"]["status"] == "pass" and report["log_seq"] is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no "odd" database created beside it


def test_a_trust_anchor_that_is_not_pem_is_a_usage_error(sealed, tmp_path):
    anchor = tmp_path / "root.pem"
    anchor.write_text("not a certificate")
    result = run("host", "verify", "--trust-anchor", anchor, sealed["results"]["rig"]["path"])
    assert result.returncode == 2 and result.stderr.startswith("error: the trust anchor holds no PEM certificate")


def test_the_progress_line_is_drawn_on_a_terminal_only_and_erased(sealed, anchor):
    import os
    import pty
    import subprocess
    import sys
    master, slave = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "synthseal.host.cli", "verify", "--trust-anchor", str(anchor),
                                 "--format", "jsonl", *sealed_paths(sealed)], stdout=subprocess.PIPE, stderr=slave,
                                timeout=120)
        os.close(slave)
        slave = None
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal's other end is closed: everything was read
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert result.returncode == 3 and len(result.stdout.splitlines()) == 3  # the report itself is untouched
    assert b"verifying 1/3" in drawn and b"verifying 3/3" in drawn and drawn.endswith(b"\r\x1b[K")


def test_a_pipe_or_a_device_is_a_line_in_the_report_not_a_hang(anchor, tmp_path):
    import os
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result = run("host", "verify", "--trust-anchor", anchor, "--json", fifo, "/dev/zero")
    reports = json.loads(result.stdout)["reports"]
    assert result.returncode == 1 and [checks(r)["file"]["detail"] for r in reports] == ["not a regular file"] * 2


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_quoted_jsonl_keeps_them(sealed, anchor, tmp_path):
    names = ["=HYPERLINK(\"x\").jpg", "+1.jpg", "-2.jpg", "@SUM(A1).jpg", "\tt.jpg", "\rr.jpg", "plain.jpg"]
    for name in names:
        shutil.copyfile(sealed["results"]["rig"]["path"], tmp_path / name)
    out = tmp_path / "report.csv"  # read back with newline="": a carriage return stays in its cell
    as_csv = run("host", "verify", "--trust-anchor", anchor, "--format", "csv", "--out", out, "--", *names, cwd=tmp_path)
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == ["'" + n for n in names[:-1]] + ["plain.jpg"], as_csv.stderr
    assert all(r["result"] == "incomplete" for r in rows)
    jsonl = run("host", "verify", "--trust-anchor", anchor, "--format", "jsonl", "--", *names, cwd=tmp_path)
    assert [json.loads(line)["file"] for line in jsonl.stdout.splitlines()] == names
    assert csv_cell("-") == "'-" and csv_cell(None) == "" and csv_cell(3) == 3 and csv_cell("a=b") == "a=b"


def test_a_picture_larger_than_any_sealed_one_is_refused_from_its_header(anchor, tmp_path):
    small = io.BytesIO()
    Image.new("RGB", (16, 16)).save(small, "JPEG")
    data = bytearray(small.getvalue())
    struct.pack_into(">HH", data, data.find(b"\xff\xc0") + 5, 10000, 10000)  # the frame header: height, width
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(bytes(data))
    result = run("host", "verify", "--trust-anchor", anchor, "--json", huge)
    (report,) = json.loads(result.stdout)["reports"]
    assert result.returncode == 1
    assert checks(report)["file"] == {"check": "file", "status": "fail",
                                      "detail": "10000×10000 pixels: larger than any image synthseal seals"}
    assert [c["status"] for c in report["checks"][1:]] == ["skip"] * (len(report["checks"]) - 1)


def test_a_device_chain_stored_as_a_blob_is_no_chain_with_a_reason(sealed, service_for, vendor_ca, tmp_path):
    db = pulled_log(sealed, service_for, tmp_path / "audit.sqlite")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE devices SET certificate_chain=x'ff00'")
        conn.execute("UPDATE device_chains SET chain=x'ff00'")
    conn.close()
    with Verifier(vendor_ca[1], db) as verifier:  # the manifest's own certificate still verifies ReservedCode1
        report = verifier.verify(sealed["results"]["rig"]["path"])
        assert "verifier" not in checks(report) and checks(report)["reserved_code1"]["status"] == "pass", report
        serial = report["device_serial"]
        keys, notes = _reserved_code1_keys(b"", serial, None, verifier.db)  # the log's chains alone
    assert keys == [] and notes and all("not PEM text (bytes)" in note for note in notes)


def _with_xmp(data, *packets):
    """The file with its XMP APP1 segment(s) replaced by these packets, right after SOI."""
    kept = [data[start:end] for marker, start, end in jpeg.segments(data)
            if not (marker == 0xE1 and data[start + 4:].startswith(jpeg.XMP_SIGNATURE))]
    new = [b"\xff\xe1" + struct.pack(">H", len(jpeg.XMP_SIGNATURE) + len(p) + 2) + jpeg.XMP_SIGNATURE + p
           for p in packets]
    return data[:2] + b"".join(new + kept)


def test_a_second_xmp_packet_or_a_label_without_the_xpacket_wrapper_is_read_as_a_reader_would(sealed, vendor_ca, tmp_path):
    data = Path(sealed["results"]["rig"]["path"]).read_bytes()
    packet = jpeg.find_xmp(data)
    other = packet.replace(b'"Label":"1"', b'"Label":"3"')
    assert other != packet
    twice = tmp_path / "twice.jpg"
    twice.write_bytes(_with_xmp(data, packet, other))  # exiftool -a shows both labels
    aigc_check = checks(verify_file(twice, vendor_ca[1]))["aigc"]
    assert aigc_check["status"] == "fail" and "2 XMP packets" in aigc_check["detail"]
    bare = tmp_path / "bare.jpg"
    bare.write_bytes(_with_xmp(data, packet.split(b"?>", 1)[1].rsplit(b"<?xpacket", 1)[0]))
    report = verify_file(bare, vendor_ca[1])
    assert report["label"] == "1" and "not well-formed" not in checks(report)["aigc"]["detail"]


def test_a_propagator_filled_in_after_sealing_is_named_as_such(sealed, vendor_ca, tmp_path):
    data = Path(sealed["results"]["rig"]["path"]).read_bytes()
    fields = aigc.parse_label(read_xmp_label(jpeg.find_xmp(data)))
    fields.update(ContentPropagator="Platform", PropagateID="P-42")
    path = tmp_path / "propagated.jpg"
    path.write_bytes(_with_xmp(data, aigc.build_xmp(json.dumps(fields, separators=(",", ":")))))
    report = verify_file(path, vendor_ca[1])
    found = checks(report)
    assert report["result"] == "failed" and found["aigc"]["status"] == "fail"
    assert "only in ContentPropagator, PropagateID: a platform filled in" in found["aigc"]["detail"]
    fields.update(Label="3")
    path.write_bytes(_with_xmp(data, aigc.build_xmp(json.dumps(fields, separators=(",", ":")))))
    detail = checks(verify_file(path, vendor_ca[1]))["aigc"]["detail"]
    assert detail.endswith("in Label, ContentPropagator, PropagateID")
