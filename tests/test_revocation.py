"""What `verify` says of a sealed file once its certificate is on the vendor's CRL:
files sealed before the revocation stay good, files sealed after it fail. Real sealed
files, a real CA and CRL, the real C2PA reader."""

import datetime
import json
import shutil
import subprocess
import sys

import pytest
from cryptography import x509

from synthseal.device.camera import FakeCamera
from synthseal.device.credentials import load_pem_chain
from synthseal.device.seal import Sealer
from synthseal.host import ca, logdb
from synthseal.host.verify import verify_file

from conftest import CA_PASSPHRASE, make_device
from synthseal.host.lab import make_vendor

UTC = datetime.timezone.utc


@pytest.fixture(scope="module")
def revocable(tmp_path_factory):
    """A CA of its own, a device provisioned by it, and one sealed file."""
    base = tmp_path_factory.mktemp("revocation")
    vendor = make_vendor(base / "ca", "Revocation Vendor", CA_PASSPHRASE)
    state = make_device(base / "device", vendor)
    camera = FakeCamera(320, 240, seed=3)
    before = datetime.datetime.now(UTC)
    result = Sealer(state, lab=True).seal(camera.capture_array(), "rig", base / "out", origin=camera.origin)
    after = datetime.datetime.now(UTC)
    leaf = load_pem_chain(state.chain_pem())[0]
    return {"base": base, "root": vendor.root_pem, "state": state, "file": result["path"], "leaf": leaf,
            "sealed_between": (before, after)}


def crl_bundle(revocable, name, revoked_at=None, reason="cessationOfOperation"):
    """The CRL bundle `ca crl --out` writes, from a copy of the CA with the device's
    content certificate revoked at `revoked_at` (or nothing revoked)."""
    directory = revocable["base"] / ("ca-" + name)
    shutil.copytree(revocable["base"] / "ca", directory)
    authority = ca.load_ca(directory, CA_PASSPHRASE)
    if revoked_at is not None:
        authority.revoke(revocable["leaf"], revoked_at, reason)
    return authority.crl_pem() + ca.pem(authority.issuing)


def check(report, name="revocation"):
    (found,) = [c for c in report["checks"] if c["check"] == name]
    return found


def skipped(report):
    return [c["check"] for c in report["checks"] if c["status"] == "skip"]


def test_without_a_crl_the_check_is_skipped(revocable):
    report = verify_file(revocable["file"], revocable["root"])
    assert check(report)["status"] == "skip" and report["result"] == "incomplete"
    assert skipped(report) == ["log", "revocation"]
    before, after = revocable["sealed_between"]
    assert before <= datetime.datetime.fromisoformat(report["sealed_at"]) <= after + datetime.timedelta(seconds=1)


def test_a_certificate_not_on_the_crl_passes(revocable):
    report = verify_file(revocable["file"], revocable["root"], crl=crl_bundle(revocable, "clean"))
    assert check(report)["status"] == "pass" and "not revoked" in check(report)["detail"]
    assert report["result"] == "incomplete" and skipped(report) == ["log"]  # no --db given


def test_a_file_sealed_before_the_revocation_stays_good(revocable):
    revoked_at = revocable["sealed_between"][1] + datetime.timedelta(hours=1)
    report = verify_file(revocable["file"], revocable["root"], crl=crl_bundle(revocable, "later", revoked_at))
    assert report["result"] == "incomplete" and skipped(report) == ["log"], report["checks"]
    assert report["c2pa_state"] == "Trusted"
    assert check(report)["status"] == "pass"
    assert "before its certificate was revoked on %s" % revoked_at.replace(microsecond=0).isoformat() in check(report)["detail"]  # CRL times are whole seconds
    assert "c2pa.created" in check(report)["detail"]  # where the sealing time came from


def test_a_file_sealed_after_the_revocation_fails(revocable):
    revoked_at = revocable["sealed_between"][0] - datetime.timedelta(hours=1)
    report = verify_file(revocable["file"], revocable["root"], crl=crl_bundle(revocable, "earlier", revoked_at))
    assert report["result"] == "failed" and check(report)["status"] == "fail"
    assert "sealed after its certificate was revoked on %s" % revoked_at.replace(microsecond=0).isoformat() in check(report)["detail"]  # CRL times are whole seconds


def test_a_compromised_key_makes_an_earlier_device_time_a_warning(revocable):
    revoked_at = revocable["sealed_between"][1] + datetime.timedelta(hours=1)
    report = verify_file(revocable["file"], revocable["root"],
                         crl=crl_bundle(revocable, "compromised", revoked_at, "keyCompromise"))
    assert check(report)["status"] == "warn" and "compromised" in check(report)["detail"]


def test_the_audit_record_time_is_preferred_when_the_log_is_given(revocable, service_for, tmp_path):
    db = tmp_path / "audit.sqlite"
    logdb.pull(service_for(revocable["state"]).client(), db)
    revoked_at = revocable["sealed_between"][1] + datetime.timedelta(minutes=5)
    report = verify_file(revocable["file"], revocable["root"], db, crl=crl_bundle(revocable, "with-log", revoked_at))
    assert check(report)["status"] == "pass" and "audit record 2" in check(report)["detail"], report["checks"]
    assert report["result"] == "verified" and report["ok"]  # every check made


def test_a_crl_that_cannot_be_authenticated_is_refused(revocable, tmp_path):
    bare = crl_bundle(revocable, "bare").split("-----BEGIN CERTIFICATE-----")[0]
    report = verify_file(revocable["file"], revocable["root"], crl=bare)
    assert check(report)["status"] == "fail" and "cannot be checked" in check(report)["detail"]
    # A CRL from another CA, with that CA's issuing certificate: not under our anchor.
    ca.create_vendor_ca(tmp_path / "other", "Revocation Vendor", "x")
    other = ca.load_ca(tmp_path / "other", "x")
    report = verify_file(revocable["file"], revocable["root"], crl=other.crl_pem() + ca.pem(other.issuing))
    assert check(report)["status"] == "fail" and "cannot be checked" in check(report)["detail"]
    report = verify_file(revocable["file"], revocable["root"], crl="not a crl")
    assert check(report)["status"] == "fail" and "not a PEM X.509 CRL" in check(report)["detail"]


def test_verify_command_takes_the_crl(revocable, tmp_path):
    (tmp_path / "root.pem").write_text(revocable["root"])
    revoked_at = revocable["sealed_between"][0] - datetime.timedelta(days=1)
    (tmp_path / "crl.pem").write_text(crl_bundle(revocable, "cli", revoked_at))
    assert x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())  # the bundle reads as a CRL
    result = subprocess.run([sys.executable, "-m", "synthseal.host.cli", "verify", "--trust-anchor",
                             tmp_path / "root.pem", "--crl", tmp_path / "crl.pem", "--json", revocable["file"]],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "sealed after its certificate was revoked" in check(json.loads(result.stdout)["reports"][0])["detail"]


def test_a_crl_that_is_no_longer_current_cannot_vouch_for_the_certificate(revocable, monkeypatch):
    # A replayed old list (nothing revoked yet when it was made) must not hide a later
    # revocation: once past its next update the check is skipped, not passed.
    stale = datetime.datetime(2024, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(ca, "_now", lambda: stale)
    bundle = crl_bundle(revocable, "stale")
    monkeypatch.undo()
    report = verify_file(revocable["file"], revocable["root"], crl=bundle)
    assert check(report)["status"] == "skip" and "no longer current" in check(report)["detail"]
    assert report["result"] == "incomplete"
