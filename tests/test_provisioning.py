"""Provisioning over the serial link: a factory device enrolled, configured, rotated and
decommissioned by the host tool; authenticated roles; hostile hosts and devices; a
cable pulled at every message of an enrolment. Real keys, certificates, c2pa, SQLite,
pseudo-terminals and openssl."""

import json
import shutil
import sqlite3
import subprocess

import c2pa
import pytest
from cryptography.hazmat.primitives import serialization

from synthseal.device import credentials
from synthseal.device.camera import FakeCamera
from synthseal.device.core import logrecord
from synthseal.device.core import protocol as p
from synthseal.device.seal import Sealer
from synthseal.device.service import DeviceAnswers
from synthseal.device.state import DeviceState
from synthseal.host import ca, logdb
from synthseal.host.client import DeviceClient, HostError
from synthseal.host.inventory import Inventory
from synthseal.host.lab import make_operator, make_vendor
from synthseal.host.provision import configure, decommission, provision, rotate
from synthseal.host.simlink import LoopbackTransport
from synthseal.host.verify import c2pa_reader_context, verify_file

from conftest import CA_PASSPHRASE, PRODUCER

SETTINGS = {"producer": PRODUCER}


def factory_device(directory, serial="FRESH-0001"):
    state = DeviceState(directory)
    state.init(serial)
    return state.own()


def loopback(state, give_up_after=2.0):
    answers = DeviceAnswers(state)
    return DeviceClient(LoopbackTransport(answers.answer), give_up_after=give_up_after)


def key_files(state):
    return sorted(state.directory.rglob("*-key.pem"))


def secrets_of(state):
    """Every private key's bytes as they could leak: PEM, DER and the raw scalar."""
    found = []
    for path in key_files(state):
        pem = path.read_bytes()
        key = serialization.load_pem_private_key(pem, None)
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        found += [pem, der, key.private_numbers().private_value.to_bytes(32, "big")]
    return found


# -- the whole job over a pseudo-terminal ------------------------------------------------

def test_a_factory_device_is_enrolled_over_the_link_and_its_files_are_trusted(vendor_ca, service_for, tmp_path):
    state = factory_device(tmp_path / "device")
    transcript = []

    def record(direction, data):
        transcript.append(data)
        return data

    service = service_for(state, fault=record, baudrate=115200)
    client = service.client(authenticate=False)
    with Inventory(tmp_path / "inventory.sqlite") as inventory:
        summary = provision(client, vendor_ca.ca, inventory, vendor_ca.operator, SETTINGS)
        row = inventory.device("FRESH-0001")
    assert summary["state"] == "enrolled" and summary["config_version"] == 1 and not summary["resumed"]
    assert state.enrolment_state() == "enrolled"
    # A capture, sealed with the keys made on the device, is Trusted given only the root.
    result = Sealer(state, lab=True).seal(FakeCamera(320, 240).capture_array(), "rig", tmp_path / "out")
    with open(result["path"], "rb") as f:
        reader = c2pa.Reader("image/jpeg", f, context=c2pa_reader_context(vendor_ca.root_pem))
        assert reader.get_validation_state() == "Trusted"
    leaf = credentials.load_pem_chain(state.chain_pem())[0]
    assert credentials.fingerprint(leaf) == row["content_fingerprint"] == summary["content_fingerprint"]
    assert credentials.cert_serial(leaf) == "FRESH-0001"
    # The enrolment is the first record of the device's log, naming operator and certificates.
    first = logrecord.decode_record(state.log().read(1, 1)[0])
    assert first["event"] == logrecord.EVENT_ENROL and first["decision"]["first_anchor"] is True
    assert first["decision"]["operator"] == vendor_ca.operator.fingerprint
    assert first["decision"]["content_cert"] == row["content_fingerprint"]
    # No private key crossed the cable, in any form.
    wire = b"".join(transcript)
    assert wire and not any(secret in wire for secret in secrets_of(state))


def test_openssl_accepts_the_chains_the_device_was_given(vendor_ca, tmp_path):
    state = factory_device(tmp_path / "device")
    with Inventory(tmp_path / "inventory.sqlite") as inventory:
        provision(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator, SETTINGS)
    root = tmp_path / "root.pem"
    root.write_text(vendor_ca.root_pem)
    for name in ("content-chain.pem", "identity-chain.pem"):
        certs = credentials.load_pem_chain((state.enrolment_dir / name).read_bytes())
        leaf, issuing = tmp_path / ("leaf-" + name), tmp_path / ("issuing-" + name)
        leaf.write_text(credentials.chain_pem(certs[:1]))
        issuing.write_text(credentials.chain_pem(certs[1:]))
        result = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(root), "-untrusted", str(issuing),
                                 str(leaf)], capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result.stdout + result.stderr


def test_no_private_key_crosses_the_link_in_enrolment_rotation_or_pulls(vendor_ca, tmp_path):
    state = factory_device(tmp_path / "device")
    links, secrets = [], []

    def client():
        c = loopback(state)
        links.append(c.transport)  # the cable itself, under any session wrapping
        return c

    with Inventory(tmp_path / "inventory.sqlite") as inventory:
        provision(client(), vendor_ca.ca, inventory, vendor_ca.operator, SETTINGS)
        secrets += secrets_of(state)
        rotate(client(), vendor_ca.ca, inventory, vendor_ca.operator)
        secrets += secrets_of(state)
    puller = client()
    puller.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    logdb.pull(puller, tmp_path / "audit.sqlite")
    wire = b"".join(b"".join(t.sent) + b"".join(t.received) for t in links)
    assert len(secrets) == 12 and len(wire) > 5000
    assert not any(secret in wire for secret in secrets)


# -- who may ask for what ------------------------------------------------------------------

@pytest.mark.parametrize("msg_type", [p.TYPE_STATUS, p.TYPE_LOG_STREAM, p.TYPE_ENROL_BEGIN, p.TYPE_ENROL_COMMIT,
                                      p.TYPE_CONFIGURE, p.TYPE_DECOMMISSION, p.TYPE_UPLOAD_BEGIN])
def test_every_privileged_request_without_a_session_is_refused(device, msg_type):
    client = loopback(device)
    assert client.info()["serial"] == device.serial()  # HELLO needs no credentials
    before = device.log().next_seq
    with pytest.raises(HostError, match="needs an authenticated session"):
        client.request(msg_type, b"{}")
    assert device.log().next_seq == before and device.enrolment_state() == "enrolled"


def test_a_collector_cannot_provision_and_a_provisioner_cannot_pull(device, vendor_ca, tmp_path):
    collector = make_operator(vendor_ca.ca, "log collector", [credentials.ROLE_COLLECTOR])
    client = loopback(device)
    client.authenticate(collector, vendor_ca.root_pem)
    for msg_type, body in ((p.TYPE_ENROL_BEGIN, {"mode": "rotate"}), (p.TYPE_DECOMMISSION, {"reason": "x"})):
        with pytest.raises(HostError, match="needs the provisioner role"):
            client.call_json(msg_type, body)
    assert logdb.pull(client, tmp_path / "a.sqlite")["pulled"] >= 1  # what it may do
    provisioner = make_operator(vendor_ca.ca, "installer", [credentials.ROLE_PROVISIONER])
    client = loopback(device)
    client.authenticate(provisioner, vendor_ca.root_pem)
    with pytest.raises(HostError, match="needs the collector role"):
        list(client.stream_log(1, 2))
    assert device.enrolment_state() == "enrolled"


def test_an_operator_of_another_vendor_or_an_expired_or_revoked_one_is_refused(device, vendor_ca, tmp_path):
    stranger = make_vendor(tmp_path / "other-ca", "Other Vendor", CA_PASSPHRASE)
    with pytest.raises(HostError, match="does not chain|trust anchor"):
        loopback(device).authenticate(stranger.operator, vendor_ca.root_pem)
    expired = make_operator(vendor_ca.ca, "last year", credentials.ROLES, days=1)
    later = DeviceAnswers(device)
    later.guard._clock = lambda: __import__("time").time() + 3 * 86400  # the device's clock, two days on
    with pytest.raises(HostError, match="expired|not valid"):
        DeviceClient(LoopbackTransport(later.answer), give_up_after=2).authenticate(expired, vendor_ca.root_pem)
    # A revoked operator: the vendor's CRL reaches the device once, in any session;
    # from then on that operator is refused even by a host that brings no CRL.
    fired = make_operator(vendor_ca.ca, "former technician", credentials.ROLES)
    directory = tmp_path / "ca-copy"
    shutil.copytree(vendor_ca.directory, directory)
    from synthseal.host import ca
    authority = ca.load_ca(directory, CA_PASSPHRASE)
    authority.revoke(fired.leaf, __import__("datetime").datetime.now(__import__("datetime").timezone.utc),
                     "superseded")
    loopback(device).authenticate(vendor_ca.operator, vendor_ca.root_pem, crl_pem=authority.crl_pem())
    with pytest.raises(HostError, match="revoked"):
        loopback(device).authenticate(fired, vendor_ca.root_pem)


def test_a_replayed_handshake_or_request_is_refused(device, vendor_ca):
    answers = DeviceAnswers(device)
    transport = LoopbackTransport(answers.answer)
    client = DeviceClient(transport, give_up_after=2.0)
    client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    client.status()
    recorded = list(transport.sent)
    auth_prove = next(m for m in recorded if m[0] == p.TYPE_AUTH_PROVE)
    secure = [m for m in recorded if m[0] == p.TYPE_SECURE]
    # The recorded STATUS request, sent again on the wire: its counter was used.
    (answer,) = answers.answer(secure[-1])
    assert answer[0] == p.TYPE_ERROR and p.decode_error(p.decode_message(answer)[2])[0] == p.ERR_AUTH
    # A new session (fresh device nonce): the old proof does not fit it.
    attacker = DeviceClient(LoopbackTransport(answers.answer), give_up_after=1.0)
    auth_begin = next(m for m in recorded if m[0] == p.TYPE_AUTH_BEGIN)
    attacker.request(p.TYPE_AUTH_BEGIN, p.decode_message(auth_begin)[2])
    with pytest.raises(HostError, match="does not verify"):
        attacker.request(p.TYPE_AUTH_PROVE, p.decode_message(auth_prove)[2])
    # And the old session's requests do not work in the new one.
    (answer,) = answers.answer(secure[0])
    assert answer[0] == p.TYPE_ERROR


def _signed_without_checks(config, operator):
    """A configuration document signed by a genuine provisioner whose tool skipped the
    content checks (sign_config would refuse it): the device must check for itself."""
    import base64
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    signature = operator.key.sign(credentials.canonical_json(config), ec.ECDSA(hashes.SHA256()))
    return json.dumps({"format": credentials.CONFIG_FORMAT, "config": config, "signer_chain": operator.chain_pem,
                       "signature": base64.b64encode(signature).decode()}).encode()


# -- configuration --------------------------------------------------------------------

def test_a_configuration_is_applied_only_when_signed_and_newer(device, vendor_ca, tmp_path):
    client = loopback(device)
    client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    current = client.status()["config"]
    before = (device.enrolment_dir / "config.json").read_bytes()
    newer = dict(current, version=current["version"] + 1, label_position="top-right")
    document = credentials.sign_config(newer, vendor_ca.operator.key, vendor_ca.operator.chain_pem)
    tampered = json.loads(document)
    tampered["config"]["producer"] = "someone-else"
    for bad, reason in ((json.dumps(tampered).encode(), "signature"),
                        (credentials.sign_config(dict(current), vendor_ca.operator.key,
                                                 vendor_ca.operator.chain_pem), "older or replayed"),
                        (_signed_without_checks(dict(newer, label_text="."), vendor_ca.operator), "label text")):
        with pytest.raises(HostError, match=reason):
            client.call_json(p.TYPE_CONFIGURE, bad)
        assert (device.enrolment_dir / "config.json").read_bytes() == before
    applied = client.call_json(p.TYPE_CONFIGURE, document)
    assert applied["applied"] and applied["config_version"] == current["version"] + 1
    assert device.config()["label_position"] == "top-right"
    # The same document again is a retry, not a new change; an older one never comes back.
    assert client.call_json(p.TYPE_CONFIGURE, document)["applied"] is False
    events = [logrecord.decode_record(r)["event"] for r in device.log().read(1, 100)]
    assert events.count(logrecord.EVENT_CONFIG) == 1


def test_configure_keeps_the_rest_and_records_the_version(device, vendor_ca, tmp_path):
    from synthseal.host.inventory import InventoryError
    from synthseal.host.lab import provision_local
    with Inventory(tmp_path / "inventory.sqlite") as inventory:
        with pytest.raises(InventoryError):
            inventory.record_config(device.serial(), 1, "x")  # not in this inventory
    state = factory_device(tmp_path / "fresh")
    inventory_path = tmp_path / "inventory2.sqlite"
    provision_local(state, vendor_ca, SETTINGS, inventory_path=inventory_path)
    with Inventory(inventory_path) as inventory:
        result = configure(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator,
                           {"filing_number": "Beijing-Filing-2026-0001"})
        assert result["config_version"] == 2 and inventory.device("FRESH-0001")["config_version"] == 2
    config = state.config()
    assert config["filing_number"] == "Beijing-Filing-2026-0001" and config["producer"] == PRODUCER


# -- hostile devices ----------------------------------------------------------------------

def test_a_device_of_another_vendor_or_with_a_borrowed_serial_is_refused_and_changes_nothing(
        vendor_ca, device, tmp_path):
    db = tmp_path / "audit.sqlite"
    client = loopback(device)
    client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    logdb.pull(client, db)
    before = db.read_bytes()
    # A fake device: its own CA, the real device's serial.
    stranger = make_vendor(tmp_path / "fake-ca", "Fake Vendor", CA_PASSPHRASE)
    fake = factory_device(tmp_path / "fake", serial=device.serial())
    from synthseal.host.lab import provision_local
    provision_local(fake, stranger, SETTINGS)
    fake.anchors = lambda: credentials.load_pem_chain(vendor_ca.root_pem)  # it lets any operator in
    with pytest.raises(HostError, match="does not prove an identity from this vendor"):
        loopback(fake).authenticate(vendor_ca.operator, vendor_ca.root_pem)
    # A genuine device of this vendor that claims another's serial.
    other = factory_device(tmp_path / "other", serial="OTHER-0002")
    provision_local(other, vendor_ca, SETTINGS)
    (other.directory / "factory.json").write_text(json.dumps({"serial": device.serial()}))
    with pytest.raises(HostError, match="identity certificate is for 'OTHER-0002'"):
        loopback(other).authenticate(vendor_ca.operator, vendor_ca.root_pem)
    assert db.read_bytes() == before
    rows = sqlite3.connect(db).execute("SELECT serial, certificate_chain FROM devices").fetchall()
    assert rows == [(device.serial(), device.chain_pem())]


def test_an_enrolled_device_refuses_a_second_enrolment_until_decommissioned(vendor_ca, tmp_path):
    state = factory_device(tmp_path / "device")
    inventory = Inventory(tmp_path / "inventory.sqlite")
    first = provision(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator, SETTINGS)
    again = provision(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator, SETTINGS)
    assert again["resumed"] and again["identity_fingerprint"] == first["identity_fingerprint"]  # nothing changed
    # Another inventory (another technician's laptop) cannot take the device over.
    with Inventory(tmp_path / "elsewhere.sqlite") as elsewhere:
        with pytest.raises(HostError, match="identity this inventory does not know"):
            provision(loopback(state), vendor_ca.ca, elsewhere, vendor_ca.operator, SETTINGS)
    client = loopback(state)
    client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    with pytest.raises(HostError, match="already enrolled"):
        client.call_json(p.TYPE_ENROL_BEGIN, {"mode": "enrol"})
    # A sealed file, then decommissioning: keys erased, logged, certificates revoked.
    sealed = Sealer(state, lab=True).seal(FakeCamera(320, 240).capture_array(), "rig", tmp_path / "out")
    result = decommission(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator, "returned to vendor")
    assert result["state"] == "decommissioned" and len(result["revoked"]) == 2
    assert state.enrolment_state() == "decommissioned" and key_files(state) == []
    last = logrecord.decode_record(state.log().read(state.log().next_seq - 1, 1)[0])
    assert last["event"] == logrecord.EVENT_DECOMMISSION and last["decision"]["reason"] == "returned to vendor"
    assert inventory.device(state.serial())["state"] == "decommissioned"
    crl = vendor_ca.ca.crl_pem() + credentials.chain_pem([vendor_ca.ca.issuing])
    report = verify_file(sealed["path"], vendor_ca.root_pem, crl=crl)
    (check,) = [c for c in report["checks"] if c["check"] == "revocation"]
    assert check["status"] == "pass" and "before" in check["detail"]  # sealed while in service
    # Enrolled again by the same vendor: new keys, a configuration newer than any before.
    second = provision(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator, SETTINGS)
    assert second["identity_fingerprint"] != first["identity_fingerprint"] and second["config_version"] == 2
    inventory.close()


def test_rotation_gives_new_keys_and_files_sealed_before_still_verify(vendor_ca, tmp_path):
    state = factory_device(tmp_path / "device")
    inventory = Inventory(tmp_path / "inventory.sqlite")
    provision(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator, SETTINGS)
    camera = FakeCamera(320, 240)
    old = Sealer(state, lab=True).seal(camera.capture_array(), "rig", tmp_path / "out")
    db = tmp_path / "audit.sqlite"
    client = loopback(state)
    client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    logdb.pull(client, db)
    old_key = key_files(state)[0].read_bytes()
    rotated = rotate(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator)
    assert all(path.read_bytes() != old_key for path in key_files(state)) and len(key_files(state)) == 2
    new = Sealer(state, lab=True).seal(camera.capture_array(), "rig", tmp_path / "out")
    client = loopback(state)
    client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    assert logdb.pull(client, db)["new_certificate"] is True  # said, not done silently
    assert len(logdb.device_chains(sqlite3.connect(db), state.serial())) == 2
    crl = vendor_ca.ca.crl_pem() + ca.pem(vendor_ca.ca.issuing)
    for result in (old, new):
        report = verify_file(result["path"], vendor_ca.root_pem, db, crl=crl)
        assert report["ok"], report["checks"]
    assert rotated["content_fingerprint"] == inventory.device(state.serial())["content_fingerprint"]
    inventory.close()


# -- a cable pulled at every message boundary ------------------------------------------------

ENROLMENT_REQUESTS = 6  # HELLO, AUTH_BEGIN, AUTH_PROVE, ENROL_BEGIN, ENROL_COMMIT, STATUS


@pytest.mark.parametrize("answer_lost", [False, True], ids=["request-lost", "answer-lost"])
def test_a_cut_at_every_message_leaves_the_device_fresh_or_enrolled_and_a_retry_completes(
        vendor_ca, tmp_path, answer_lost):
    for cut in range(ENROLMENT_REQUESTS):
        base = tmp_path / ("cut-%d" % cut)
        state = factory_device(base / "device")
        inventory = Inventory(base / "inventory.sqlite")
        client = loopback(state, give_up_after=0.3)
        client.transport.cut_after(cut + (1 if answer_lost else 0), keep_answer=not answer_lost)
        with pytest.raises(HostError):
            provision(client, vendor_ca.ca, inventory, vendor_ca.operator, SETTINGS)
        # The agent restarts (a pulled cable often means a power cycle too).
        state.release()
        state = DeviceState(base / "device").own()
        state.tidy()
        DeviceAnswers(state).provisioning.recover()
        status = state.enrolment_state()
        if status == "factory":
            assert key_files(state) == [] and not (state.directory / "enrolment").exists()
        else:
            assert status == "enrolled" and len(key_files(state)) == 2
            assert state.logged_seq() is not None
        summary = provision(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator, SETTINGS)
        row = inventory.device(state.serial())
        assert state.enrolment_state() == "enrolled" and row["state"] == "enrolled"
        assert row["identity_fingerprint"] == credentials.fingerprint(
            credentials.load_pem_chain(state.identity_chain_pem())[0])
        assert summary["resumed"] == (status == "enrolled"), cut
        events = [logrecord.decode_record(r)["event"] for r in state.log().read(1, 10)]
        assert events == [logrecord.EVENT_ENROL], events  # one enrolment, logged once
        inventory.close()


# -- found by an attack review: each must stay fixed ---------------------------------------

def _restart(state):
    """The agent stops (or the power goes) and starts again on the same state."""
    state.release()
    state = DeviceState(state.directory).own()
    state.tidy()
    DeviceAnswers(state).provisioning.recover()
    return state


@pytest.mark.parametrize("cut_at", ["rename", "link"])
def test_a_configuration_change_cut_short_keeps_the_keys_in_force(device, vendor_ca, monkeypatch, cut_at):
    import synthseal.device.state as state_module
    client = loopback(device)
    client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    current = client.status()["config"]
    document = credentials.sign_config(dict(current, version=current["version"] + 1, label_position="top-left"),
                                       vendor_ca.operator.key, vendor_ca.operator.chain_pem)
    target = {"rename": (state_module.os, "rename"), "link": (state_module, "_point_link")}[cut_at]
    real = getattr(*target)

    def power_cut(*args, **kwargs):
        if cut_at == "link" or ".enrolment-" in str(args[0]):
            raise OSError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(*target, power_cut)
    with pytest.raises(HostError):
        client.call_json(p.TYPE_CONFIGURE, document)
    monkeypatch.setattr(*target, real)
    state = _restart(device)
    assert state.enrolment_state() == "enrolled" and state.config()["label_position"] == "bottom-left"
    state.keystore.sign_der(b"still here")  # the content key in force survived the tidy-up
    state.sign_identity(b"device", b"x" * 32)
    assert len(key_files(state)) == 2


def test_a_forged_or_future_crl_is_refused_and_cannot_unrevoke(device, vendor_ca, tmp_path):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from synthseal.host import ca
    now = datetime.datetime.now(datetime.timezone.utc)
    # The vendor revokes Bob; the device learns it from any host.
    bob = make_operator(vendor_ca.ca, "Bob", credentials.ROLES)
    copy = tmp_path / "ca"
    shutil.copytree(vendor_ca.directory, copy)
    authority = ca.load_ca(copy, CA_PASSPHRASE)
    authority.revoke(bob.leaf, now, "superseded")
    loopback(device).authenticate(vendor_ca.operator, vendor_ca.root_pem, crl_pem=authority.crl_pem())
    # Bob makes a CA named like the issuing CA, signs an empty CRL dated ahead, and
    # carries that certificate in his chain.
    key = ec.generate_private_key(ec.SECP256R1())
    name = vendor_ca.ca.issuing.subject
    fake = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=9))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    forged = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now + datetime.timedelta(days=3))
              .next_update(now + datetime.timedelta(days=90)).add_extension(x509.CRLNumber(10 ** 6), critical=False)
              .sign(key, hashes.SHA256()))
    from synthseal.host.session import Operator
    bob_plus = Operator(bob.chain_pem + credentials.chain_pem([fake]), bob.key)
    crl_pem = forged.public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(HostError, match="revoked|not signed by the vendor"):
        loopback(device).authenticate(bob_plus, vendor_ca.root_pem, crl_pem=crl_pem)
    with pytest.raises(HostError, match="not signed by the vendor|future"):
        loopback(device).authenticate(vendor_ca.operator, vendor_ca.root_pem, crl_pem=crl_pem)
    with pytest.raises(HostError, match="revoked"):
        loopback(device).authenticate(bob, vendor_ca.root_pem)
    assert x509.load_pem_x509_crl((device.trust_dir / "crl.pem").read_bytes()).issuer == name
    assert device.is_revoked(bob.leaf)


def test_a_factory_device_keeps_no_crl_from_whoever_connects(vendor_ca, tmp_path):
    state = factory_device(tmp_path / "device")
    stranger = make_vendor(tmp_path / "other-ca", "Stranger", CA_PASSPHRASE)
    client = loopback(state)
    client.authenticate(stranger.operator, stranger.root_pem, crl_pem=stranger.ca.crl_pem(), allow_unenrolled=True)
    assert not (state.trust_dir / "crl.pem").exists() and state.enrolment_state() == "factory"


def test_a_decommission_cut_before_its_record_is_logged_at_the_next_start(vendor_ca, tmp_path, monkeypatch):
    state = factory_device(tmp_path / "device")
    inventory = Inventory(tmp_path / "inventory.sqlite")
    provision(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator, SETTINGS)
    answers = DeviceAnswers(state)
    monkeypatch.setattr(answers.provisioning, "_log", lambda *a: (_ for _ in ()).throw(OSError("power cut")))
    client = DeviceClient(LoopbackTransport(answers.answer), give_up_after=1)
    client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    with pytest.raises(HostError):
        client.call_json(p.TYPE_DECOMMISSION, {"reason": "cut"})
    assert state.enrolment_state() == "decommissioned" and key_files(state) == []  # keys gone first
    state = _restart(state)
    events = [logrecord.decode_record(r) for r in state.log().read(1, 10)]
    assert [e["event"] for e in events] == [logrecord.EVENT_ENROL, logrecord.EVENT_DECOMMISSION]
    assert events[-1]["decision"]["recovered"] is True and events[-1]["decision"]["reason"] == "cut"
    state = _restart(state)
    assert [e["event"] for e in (logrecord.decode_record(r) for r in state.log().read(1, 10))] == \
        [logrecord.EVENT_ENROL, logrecord.EVENT_DECOMMISSION]  # logged once
    # The host never got the answer: the device cannot prove who it is any more, so the
    # technician finishes the inventory side knowingly.
    with pytest.raises(HostError, match="--finish"):
        decommission(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator, "cut")
    result = decommission(loopback(state), vendor_ca.ca, inventory, vendor_ca.operator, "cut", finish=True)
    assert len(result["revoked"]) == 2 and inventory.device(state.serial())["state"] == "decommissioned"
    inventory.close()


def test_a_lost_enrolment_folder_never_makes_a_factory_device(device, vendor_ca, tmp_path):
    shutil.rmtree(device.enrolment_dir)  # storage damage
    state = _restart(device)
    assert state.enrolment_state() == "decommissioned"
    stranger = make_vendor(tmp_path / "other-ca", "Stranger", CA_PASSPHRASE)
    with pytest.raises(HostError, match="chain|anchor"):
        loopback(state).authenticate(stranger.operator, stranger.root_pem, allow_unenrolled=True)
    assert state.config_version() >= 1


def test_configuration_bombs_and_duplicate_keys_are_refused_at_once(device, vendor_ca):
    import time
    client = loopback(device, give_up_after=30)
    client.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    current = client.status()["config"]
    good = credentials.sign_config(dict(current, version=current["version"] + 1), vendor_ca.operator.key,
                                   vendor_ca.operator.chain_pem).decode()
    doubled = good.replace('"format":', '"config": {}, "format":', 1)
    for body in (b"[" * 60000, doubled.encode()):
        started = time.monotonic()
        with pytest.raises(HostError):
            client.call_json(p.TYPE_CONFIGURE, body)
        assert time.monotonic() - started < 5  # an answer, not a wait until give-up
    assert device.config()["version"] == current["version"]


def test_keys_made_in_one_session_are_not_certified_in_another(device, vendor_ca):
    first = loopback(device)
    first.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    begin = first.call_json(p.TYPE_ENROL_BEGIN, {"mode": "rotate"})
    content = vendor_ca.ca.issue_device(begin["csrs"]["content"], device.serial(), credentials.PURPOSE_CONTENT,
                                        begin["challenge"])
    identity = vendor_ca.ca.issue_device(begin["csrs"]["identity"], device.serial(), credentials.PURPOSE_IDENTITY,
                                         begin["challenge"])
    second = loopback(device)
    second.authenticate(vendor_ca.operator, vendor_ca.root_pem)
    with pytest.raises(HostError, match="no keys are waiting"):
        second.call_json(p.TYPE_ENROL_COMMIT, {"mode": "rotate", "content_chain": content, "identity_chain": identity,
                                               "anchor": vendor_ca.root_pem})


def test_what_a_hostile_device_says_is_shown_escaped_and_junk_is_a_clear_error(vendor_ca):
    import json as json_module

    def hostile(payload):
        msg_type, request_id, _ = p.decode_message(payload)
        if msg_type == p.TYPE_AUTH_BEGIN:
            answer = {"version": 1, "device_nonce": "00" * 32, "device_key": "04" + "11" * 64, "serial": "X",
                      "state": "factory", "identity_chain": None, "signature": None}
            return [p.encode_message(msg_type | p.RESPONSE, request_id, json_module.dumps(answer).encode())]
        if msg_type == p.TYPE_AUTH_PROVE:
            return [p.encode_message(msg_type | p.RESPONSE, request_id, b'{"roles": []}')]
        return [p.encode_message(p.TYPE_ERROR, request_id, p.encode_error(p.ERR_REFUSED, "\x1b[2Jgone\x07"))]

    with pytest.raises(HostError, match="garbage") as err:
        DeviceClient(LoopbackTransport(hostile), give_up_after=1).authenticate(
            vendor_ca.operator, vendor_ca.root_pem, allow_unenrolled=True)
    with pytest.raises(HostError) as err:
        DeviceClient(LoopbackTransport(hostile), give_up_after=1).request(p.TYPE_STATUS)
    assert "\x1b" not in str(err.value) and "\\x1b[2Jgone\\x07" in str(err.value)
