"""What `verify` takes as evidence: a signer that is the device the seal names, and
audit records only from a pulled log that verifies against the vendor root and belongs
to that device. Each case is an attack an auditor must not be fooled by."""

import shutil
import sqlite3

import pytest

from synthseal.device.camera import FakeCamera
from synthseal.device.core import logrecord
from synthseal.device.seal import Sealer
from synthseal.device.service import DeviceAnswers
from synthseal.host import logdb
from synthseal.host.client import DeviceClient
from synthseal.host.lab import make_vendor
from synthseal.host.simlink import LoopbackTransport
from synthseal.host.verify import Verifier

from conftest import CA_PASSPHRASE, make_device


def _pull(state, vendor, db):
    client = DeviceClient(LoopbackTransport(DeviceAnswers(state).answer), give_up_after=5)
    client.authenticate(vendor.operator, vendor.root_pem)
    logdb.pull(client, db)


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    """Devices ATTK-0001 and VICT-0002 of one vendor, both pulled. ATTK-0001's sealer
    also seals one capture naming VICT-0002 (firmware or key taken over)."""
    base = tmp_path_factory.mktemp("evidence")
    vendor = make_vendor(base / "ca", "Evidence Vendor", CA_PASSPHRASE)
    attacker = make_device(base / "a", vendor, serial="ATTK-0001")
    victim = make_device(base / "b", vendor, serial="VICT-0002")
    camera = FakeCamera(640, 480, seed=4)
    honest = Sealer(victim, lab=True).seal(camera.capture_array(), "capture", base / "out", origin=camera.origin)
    spoofing = Sealer(attacker, lab=True)
    spoofing.config["serial"] = "VICT-0002"
    spoofed = spoofing.seal(camera.capture_array(), "capture", base / "spoofed", origin=camera.origin)
    db = base / "audit.sqlite"
    _pull(attacker, vendor, db)
    _pull(victim, vendor, db)
    assert logdb.verify_log(db, None, vendor.root_pem) == []
    return {"base": base, "vendor": vendor, "db": db, "honest": honest, "spoofed": spoofed}


def _verify(two_devices, path, db=None):
    with Verifier(two_devices["vendor"].root_pem, db or two_devices["db"]) as verifier:
        return verifier.verify(path)


def _check(report, name):
    return next(c for c in report["checks"] if c["check"] == name)


def test_the_honest_file_has_its_record(two_devices):
    report = _verify(two_devices, two_devices["honest"]["path"])
    assert _check(report, "log")["status"] == "pass" and _check(report, "c2pa")["status"] == "pass"


def test_one_device_sealing_in_another_devices_name_fails(two_devices):
    report = _verify(two_devices, two_devices["spoofed"]["path"])
    assert report["device_serial"] == "VICT-0002" and report["result"] == "failed"
    c2pa = _check(report, "c2pa")
    assert c2pa["status"] == "fail" and "ATTK-0001" in c2pa["detail"] and "another's name" in c2pa["detail"]
    log = _check(report, "log")
    assert log["status"] == "fail" and "seal names device VICT-0002" in log["detail"]


def _edited_db(two_devices, name, sql, *params):
    db = two_devices["base"] / name
    shutil.copy(two_devices["db"], db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, params)
    conn.close()
    return db


def test_a_record_edited_in_the_database_is_not_evidence(two_devices):
    # Backdating the seal record (bytes and column, so the row is self-consistent) would
    # move the file before a revocation: the device's log no longer verifies, so the
    # record is not used.
    seq = two_devices["honest"]["seq"]
    raw = logdb.open_readonly(two_devices["db"]).execute(
        "SELECT raw FROM records WHERE device_serial='VICT-0002' AND seq=?", (seq,)).fetchone()[0]
    rec = logrecord.decode_record(bytes(raw))
    earlier = rec["time_ms"] - 365 * 86400 * 1000
    forged = logrecord.encode_record(rec["seq"], earlier, rec["prev_hash"], rec["content_sha256"], rec["event"],
                                     rec["produce_id"], rec["decision"])
    db = _edited_db(two_devices, "backdated.sqlite", "UPDATE records SET raw=?, time_ms=?, record_hash=? "
                    "WHERE device_serial='VICT-0002' AND seq=?", forged, earlier,
                    logrecord.record_hash(forged).hex(), seq)
    report = _verify(two_devices, two_devices["honest"]["path"], db)
    log = _check(report, "log")
    assert log["status"] == "fail" and "does not verify against the vendor root" in log["detail"]
    assert report["log_seq"] is None and report["result"] == "failed"


def test_another_devices_record_for_the_same_bytes_is_not_evidence(two_devices):
    db = _edited_db(two_devices, "renamed.sqlite", "UPDATE records SET device_serial='ATTK-0001', seq=seq+1000 "
                    "WHERE device_serial='VICT-0002' AND seq=?", two_devices["honest"]["seq"])
    report = _verify(two_devices, two_devices["honest"]["path"], db)
    log = _check(report, "log")
    assert log["status"] == "fail" and "seal names device VICT-0002" in log["detail"]
