"""The host's inventory of provisioned devices: real SQLite, real certificates from a
real vendor CA; each refusal leaves the file as it was."""

import datetime
import json
import sqlite3
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from synthseal.device import credentials as cr
from synthseal.host import ca
from synthseal.host.inventory import Inventory, InventoryError

UTC = datetime.timezone.utc
NONCE = "aa55"


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    directory = tmp_path_factory.mktemp("inventory") / "ca"
    ca.create_vendor_ca(directory, "Inventory Vendor", "pass")
    return ca.load_ca(directory, "pass")


def issue(authority, serial):
    """(identity chain, content chain) for a device, each for its own fresh key."""
    return tuple(authority.issue_device(cr.make_csr(ec.generate_private_key(ec.SECP256R1()), serial, "V", purpose,
                                                    NONCE), serial, purpose, NONCE)
                 for purpose in (cr.PURPOSE_IDENTITY, cr.PURPOSE_CONTENT))


def leaf_fp(chain):
    return cr.fingerprint(cr.load_pem_chain(chain)[0])


def dump(path):
    db = sqlite3.connect(str(path))
    try:
        return list(db.iterdump())
    finally:
        db.close()


def enrol(inventory, authority, serial, operator="ann"):
    identity, content = issue(authority, serial)
    inventory.begin_enrolment(serial, identity, content, 1, operator)
    inventory.complete_enrolment(serial)
    return identity, content


def test_an_enrolment_is_pending_then_recorded_with_its_certificates(authority, tmp_path):
    identity, content = issue(authority, "CAM-1")
    with Inventory(tmp_path / "inv.sqlite") as inventory:
        inventory.begin_enrolment("CAM-1", identity, content, 1, "ann")
        pending = inventory.pending("CAM-1")
        assert pending["identity_fingerprint"] == leaf_fp(identity)
        assert pending["content_fingerprint"] == leaf_fp(content)
        assert pending["identity_chain"] == identity and pending["operator"] == "ann" and pending["started_at"]
        assert inventory.device("CAM-1") is None
        inventory.complete_enrolment("CAM-1")
        device = inventory.device("CAM-1")
        assert inventory.pending("CAM-1") is None
    with Inventory(tmp_path / "inv.sqlite") as inventory:  # durable across opens
        assert inventory.device("CAM-1") == device
        assert device["state"] == "enrolled" and device["config_version"] == 1
        assert device["identity_fingerprint"] == leaf_fp(identity) and device["content_chain"] == content
        assert device["provisioned_by"] == "ann" and device["provisioned_at"]
        certificates = {c["purpose"]: c for c in inventory.certificates("CAM-1")}
        assert set(certificates) == {"identity", "content"}
        assert certificates["content"]["fingerprint"] == leaf_fp(content)
        assert certificates["content"]["revoked_at"] is None and certificates["content"]["not_after"]
        assert [d["serial"] for d in inventory.devices()] == ["CAM-1"]
        assert [e["action"] for e in inventory.events("CAM-1")] == ["enrol-begin", "enrol"]


def test_a_second_enrolment_with_another_identity_is_refused_until_decommissioned(authority, tmp_path):
    path = tmp_path / "inv.sqlite"
    with Inventory(path) as inventory:
        enrol(inventory, authority, "CAM-2")
        other_identity, other_content = issue(authority, "CAM-2")
        before = dump(path)
        with pytest.raises(InventoryError, match="already enrolled with another identity"):
            inventory.begin_enrolment("CAM-2", other_identity, other_content, 1, "mallory")
        assert dump(path) == before
        revoked = inventory.decommission("CAM-2", datetime.datetime(2030, 1, 2, tzinfo=UTC), "ann")
        assert len(revoked) == 2
        inventory.begin_enrolment("CAM-2", other_identity, other_content, 1, "bob")
        inventory.complete_enrolment("CAM-2")
        assert inventory.device("CAM-2")["identity_fingerprint"] == leaf_fp(other_identity)
        assert inventory.device("CAM-2")["provisioned_by"] == "bob"


def test_certificates_for_another_serial_or_one_key_are_refused(authority, tmp_path):
    path = tmp_path / "inv.sqlite"
    with Inventory(path) as inventory:
        enrolled = enrol(inventory, authority, "CAM-3")
        before = dump(path)
        identity, content = issue(authority, "CAM-4")
        with pytest.raises(InventoryError, match="names device 'CAM-4', not 'CAM-5'"):
            inventory.begin_enrolment("CAM-5", identity, content, 1, "ann")
        with pytest.raises(InventoryError, match="two different keys"):
            inventory.begin_enrolment("CAM-4", identity, identity, 1, "ann")
        with pytest.raises(InventoryError, match="identity chain"):
            inventory.begin_enrolment("CAM-4", "not pem", content, 1, "ann")
        with pytest.raises(InventoryError, match="not enrolled: nothing to rotate"):
            inventory.begin_enrolment("CAM-4", identity, content, 1, "ann", purpose="rotate")
        with pytest.raises(InventoryError, match="no enrolment of CAM-4 is pending"):
            inventory.complete_enrolment("CAM-4")
        assert dump(path) == before
        assert inventory.device("CAM-3")["identity_fingerprint"] == leaf_fp(enrolled[0])


def test_a_rotation_replaces_the_certificates_in_force_and_keeps_the_history(authority, tmp_path):
    with Inventory(tmp_path / "inv.sqlite") as inventory:
        old_identity, old_content = enrol(inventory, authority, "CAM-6")
        identity, content = issue(authority, "CAM-6")
        inventory.begin_enrolment("CAM-6", identity, content, 1, "bob", purpose="rotate")
        inventory.complete_enrolment("CAM-6")
        device = inventory.device("CAM-6")
        assert device["content_fingerprint"] == leaf_fp(content) and device["provisioned_by"] == "ann"
        assert {c["fingerprint"] for c in inventory.certificates("CAM-6")} == {
            leaf_fp(c) for c in (old_identity, old_content, identity, content)}
        rotation = inventory.events("CAM-6")[-1]
        assert rotation["action"] == "rotate" and rotation["operator"] == "bob"
        assert rotation["detail"]["previous"]["content"] == leaf_fp(old_content)


def test_configuration_versions_only_go_up(authority, tmp_path):
    path = tmp_path / "inv.sqlite"
    with Inventory(path) as inventory:
        enrol(inventory, authority, "CAM-7")
        inventory.record_config("CAM-7", 2, "ann")
        before = dump(path)
        for version in (2, 1):
            with pytest.raises(InventoryError, match="not above"):
                inventory.record_config("CAM-7", version, "ann")
        with pytest.raises(InventoryError, match="not in the inventory"):
            inventory.record_config("CAM-0", 5, "ann")
        assert dump(path) == before
        assert inventory.device("CAM-7")["config_version"] == 2
        assert inventory.events("CAM-7")[-1]["detail"] == {"from": 1, "to": 2}


def test_decommissioning_revokes_every_certificate_of_the_device(authority, tmp_path):
    with Inventory(tmp_path / "inv.sqlite") as inventory:
        identity, content = enrol(inventory, authority, "CAM-8")
        when = datetime.datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
        revoked = inventory.decommission("CAM-8", when, "ann")
        assert sorted(revoked) == sorted([leaf_fp(identity), leaf_fp(content)])
        assert inventory.device("CAM-8")["state"] == "decommissioned"
        assert inventory.revocation(leaf_fp(content)) == (when, "cessationOfOperation")
        assert inventory.revocation("00" * 32) is None
        with pytest.raises(InventoryError, match="is decommissioned"):
            inventory.decommission("CAM-8", when, "ann")
        with pytest.raises(InventoryError, match="is decommissioned"):
            inventory.record_config("CAM-8", 9, "ann")
        assert [e["action"] for e in inventory.events("CAM-8")] == ["enrol-begin", "enrol", "decommission"]


def test_the_history_is_append_only(authority, tmp_path):
    path = tmp_path / "inv.sqlite"
    with Inventory(path) as inventory:
        enrol(inventory, authority, "CAM-9")
    db = sqlite3.connect(str(path))
    for statement in ("UPDATE events SET operator = 'nobody'", "DELETE FROM events"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(statement)
    db.close()


def test_a_file_that_is_not_an_inventory_is_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(str(other))
    db.execute("CREATE TABLE records (x)")
    db.commit()
    db.close()
    with pytest.raises(InventoryError, match="not a synthseal inventory"):
        Inventory(other)
    (tmp_path / "text.sqlite").write_text("hello, this is not SQLite at all" * 10)
    with pytest.raises(InventoryError, match="not a synthseal inventory"):
        Inventory(tmp_path / "text.sqlite")
    with pytest.raises(InventoryError, match="no inventory at"):
        Inventory(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


def test_devices_command_lists_the_inventory(authority, tmp_path):
    path = tmp_path / "inv.sqlite"
    with Inventory(path) as inventory:
        identity, content = enrol(inventory, authority, "CAM-10", operator="ann\x1b[2J")
    run = lambda *a: subprocess.run([sys.executable, "-m", "synthseal.host.cli", "devices", "--inventory", path]  # noqa: E731
                                    + list(a), capture_output=True, text=True, timeout=60)
    table = run()
    assert table.returncode == 0, table.stderr
    row = table.stdout.splitlines()[1].split()
    assert row[:5] == ["CAM-10", "enrolled", leaf_fp(identity)[:16], leaf_fp(content)[:16], "v1"]
    assert "\x1b" not in table.stdout and "ann\\x1b[2J" in table.stdout
    listed = json.loads(run("--json").stdout)
    assert listed[0]["serial"] == "CAM-10" and listed[0]["content_fingerprint"] == leaf_fp(content)
    missing = subprocess.run([sys.executable, "-m", "synthseal.host.cli", "devices", "--inventory",
                              tmp_path / "none.sqlite"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no inventory at" in missing.stderr
