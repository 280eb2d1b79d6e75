"""The host's offline log tools: `log verify` re-checks a pulled log against the
device's signed tree heads without trusting the database; `log prove` gives a third
party the inclusion proof of a sealed file's record; `log export` writes it out for
auditors."""

import datetime
import hashlib
import json
import shutil
import sqlite3

import pytest

from synthseal.device.core import logrecord
from synthseal.device.service import DeviceAnswers
from synthseal.host import logdb
from synthseal.host.client import DeviceClient
from synthseal.host.simlink import LoopbackTransport
from tests.conftest import make_device
from tests.test_cli import run


def _client(state):
    client = DeviceClient(LoopbackTransport(DeviceAnswers(state).answer), give_up_after=5)
    client.authenticate(state.test_vendor.operator, state.test_vendor.root_pem)
    return client


def _content(seq):
    return b"the file sealed as record %d" % seq


def _append(state, n, tag="a"):
    log = state.log()
    for _ in range(n):
        seq = log.next_seq
        log.append(1700000000000 + seq, hashlib.sha256(_content(seq)).digest(), logrecord.EVENT_SEAL,
                   "%s-%s-%08d" % (state.serial(), tag, seq), {"rule": "rig", "tag": tag})


@pytest.fixture(scope="module")
def pulled(tmp_path_factory, vendor_ca):
    """A device with 12 records pulled in three steps (three signed heads stored)."""
    base = tmp_path_factory.mktemp("pulled")
    state = make_device(base / "device", vendor_ca)
    db = base / "audit.sqlite"
    client = _client(state)
    for grow in (3, 4, 4):
        _append(state, grow)
        logdb.pull(client, db)
    return {"state": state, "db": db, "base": base}


@pytest.fixture
def db(pulled, tmp_path):
    copy = tmp_path / "audit.sqlite"
    shutil.copy(pulled["db"], copy)
    return copy


def _sql(db, statement, *args):
    con = sqlite3.connect(db)
    con.execute(statement, args)
    con.commit()
    con.close()


def test_an_untouched_pulled_log_verifies_against_the_vendor_root(db, vendor_ca):
    assert logdb.verify_log(db) == []
    assert logdb.verify_log(db, anchors=vendor_ca.root_pem) == []
    heads = sqlite3.connect(db).execute("SELECT size FROM checkpoints ORDER BY size").fetchall()
    assert [h[0] for h in heads] == [4, 8, 12]


def test_a_forged_newest_record_with_its_head_anchor_rewritten_breaks_the_signed_root(db):
    # The forger edits the newest record and fixes everything the database holds about
    # it: the stored hash, the decoded columns and the head anchor of the last pull.
    con = sqlite3.connect(db)
    seq, raw = con.execute("SELECT seq, raw FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    forged = bytes(raw).replace(b'"tag": "a"', b'"tag": "b"')
    decision = json.dumps(logrecord.decode_record(forged)["decision"], sort_keys=True)
    h = logrecord.record_hash(forged).hex()
    con.execute("UPDATE records SET raw=?, record_hash=?, decision=? WHERE seq=?", (forged, h, decision, seq))
    con.execute("UPDATE devices SET head_hash=?", (h,))
    con.commit()
    problems = logdb.verify_log(db)
    assert problems == ["device TEST-0001, checkpoint 3: the stored records 1..12 do not hash to the root the device "
                        "signed: a record among them was edited, removed or inserted here"]


def test_a_deleted_newest_record_and_head_is_named_by_the_signed_size(db):
    _sql(db, "DELETE FROM records WHERE seq=12")
    _sql(db, "UPDATE devices SET head_seq=11, head_hash=(SELECT record_hash FROM records WHERE seq=11)")
    problems = logdb.verify_log(db)
    assert any("signed 12 records but only records up to 11 are stored here: records 12..12 are missing" in p for p in problems)


@pytest.mark.parametrize("column, value", [("content_sha256", "ab" * 32), ("time_ms", 0), ("event", 2)])
def test_an_edited_column_is_named(db, column, value):
    _sql(db, "UPDATE records SET %s=? WHERE seq=5" % column, value)
    assert logdb.verify_log(db) == ["device TEST-0001, record 5: its columns differ from the signed-off record bytes"]


def test_an_edited_event_or_time_column_neither_hides_a_seal_nor_moves_its_time(db):
    # Found by an attack review: verify's record lookup and sealing time must come from
    # the record's bytes, whatever the columns say.
    digest = hashlib.sha256(_content(5)).hexdigest()
    before = logdb.find_record(sqlite3.connect(db), digest)
    _sql(db, "UPDATE records SET time_ms=0, event=2 WHERE seq=5")
    after = logdb.find_record(sqlite3.connect(db), digest)
    assert after == before and after["seq"] == 5 and after["time_ms"] == 1700000000000 + 5


@pytest.mark.parametrize("column, value", [("root", "00" * 32), ("size", 5), ("host_time_ms", 1)])
def test_an_edited_checkpoint_column_is_named(db, column, value):
    _sql(db, "UPDATE checkpoints SET %s=? WHERE counter=(SELECT MAX(counter) FROM checkpoints)" % column, value)
    problems = logdb.verify_log(db)
    assert any("its columns differ from the checkpoint the device signed" in p for p in problems), problems


def test_an_edited_signed_checkpoint_fails_its_signature(db):
    con = sqlite3.connect(db)
    signed = json.loads(con.execute("SELECT signed FROM checkpoints WHERE size=12").fetchone()[0])
    signed["checkpoint"]["time_ms"] += 1
    con.execute("UPDATE checkpoints SET signed=?, time_ms=time_ms+1 WHERE size=12", (json.dumps(signed),))
    con.commit()
    problems = logdb.verify_log(db)
    assert problems[0] == ("device TEST-0001, checkpoint 3 (size 12): checkpoint 3 (size 12) is not signed by this "
                           "device's identity key")
    assert problems[1].startswith("device TEST-0001, records 9..12: not covered by any valid signed tree head")


def test_removed_signed_heads_leave_records_unanchored(db):
    _sql(db, "DELETE FROM checkpoints WHERE size=12")
    assert logdb.verify_log(db) == ["device TEST-0001, records 9..12: not covered by any valid signed tree head "
                                    "stored here (an interrupted pull, or a head removed); pull again to anchor them"]
    _sql(db, "DELETE FROM checkpoints")
    assert logdb.verify_log(db) == ["device TEST-0001, records 1..12: no signed tree head is stored for them, so "
                                    "nothing ties them to the device's signature; pull again to anchor them"]


def _self_made_identity(serial):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forger"),
                      x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


def test_a_log_re_signed_with_a_forgers_key_is_found_with_the_vendor_root(db, vendor_ca):
    """Whoever rewrites the whole database -- records, heads, identity certificate --
    still cannot make a certificate that chains to the vendor root."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from synthseal.device import checkpoint
    from synthseal.device.core import merkle
    key, chain = _self_made_identity("TEST-0001")
    con = sqlite3.connect(db)
    raw = bytes(con.execute("SELECT raw FROM records WHERE seq=12").fetchone()[0])
    forged = raw.replace(b'"tag": "a"', b'"tag": "b"')
    h = logrecord.record_hash(forged).hex()
    con.execute("UPDATE records SET raw=?, record_hash=?, decision=? WHERE seq=12",
                (forged, h, json.dumps(logrecord.decode_record(forged)["decision"], sort_keys=True)))
    con.execute("UPDATE devices SET head_hash=?", (h,))
    raws = [bytes(r[0]) for r in con.execute("SELECT raw FROM records ORDER BY seq")]
    for (signed_text,) in con.execute("SELECT signed FROM checkpoints").fetchall():
        signed = json.loads(signed_text)
        body = signed["checkpoint"]
        tree = merkle.CompactRange()
        for raw in raws[:body["size"]]:
            tree.append(raw)
        body["root"] = tree.root().hex()
        signed["signature"] = key.sign(checkpoint.signing_bytes(body), ec.ECDSA(hashes.SHA256())).hex()
        con.execute("UPDATE checkpoints SET signed=?, identity_chain=?, root=? WHERE signed=?",
                    (json.dumps(signed), chain, body["root"], signed_text))
    con.commit()
    assert logdb.verify_log(db) == []  # consistent in itself: the database alone cannot tell
    problems = logdb.verify_log(db, anchors=vendor_ca.root_pem)
    assert len(problems) == 4 and all("identity certificate does not hold" in p and "refused" in p
                                      for p in problems[:3]), problems
    assert "records 1..12: not covered by any valid signed tree head" in problems[3]


def test_log_verify_on_the_command_line(db, vendor_ca, tmp_path):
    anchor = tmp_path / "root.pem"
    anchor.write_text(vendor_ca.root_pem)
    ok = run("host", "log", "verify", "--db", db, "--trust-anchor", anchor)
    assert ok.returncode == 0 and "every stored signed tree head re-checks" in ok.stdout and "note" not in ok.stdout
    assert run("host", "log-check", "--db", db).returncode == 0  # the older name, the same check
    missing = run("host", "log", "verify", "--db", db, "--serial", "NOPE")
    assert missing.returncode == 1 and "device NOPE: no such device" in missing.stdout
    _sql(db, "UPDATE checkpoints SET root=? WHERE size=8", "11" * 32)
    for command in (["log", "verify"], ["log-check"]):
        bad = run("host", *command, "--db", db)
        assert bad.returncode == 1 and "FAIL device TEST-0001, checkpoint 2 (size 8): its columns differ" in bad.stdout


def _doc_checker():
    """The third party's lines from docs/FORMATS.md, exactly as printed there."""
    from tests.test_cli import ROOT
    text = (ROOT / "docs" / "FORMATS.md").read_text()
    section = text[text.index("## Inclusion proofs"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    code = code[:code.index("```")]
    namespace = {}
    exec(compile(code, "FORMATS.md", "exec"), namespace)
    return namespace["check_synthseal_proof"]


@pytest.fixture
def proved(db, tmp_path):
    from synthseal.host import logproof
    sealed_file = tmp_path / "photo.jpg"
    sealed_file.write_bytes(_content(6))
    return logproof.prove_file(db, sealed_file), sealed_file


def test_a_proof_names_the_file_s_record_in_the_newest_signed_head(proved, vendor_ca):
    from synthseal.host import logproof
    proof, sealed_file = proved
    assert (proof["seq"], proof["index"], proof["checkpoint"]["checkpoint"]["size"]) == (6, 5, 12)
    assert len(proof["audit_path"]) == 4  # ceil(log2 12)
    rec = logproof.check_proof(proof, vendor_ca.root_pem, logproof.file_sha256(sealed_file))
    assert rec["seq"] == 6
    # the lines a third party copies from the documentation agree
    assert _doc_checker()(proof, vendor_ca.root_pem.encode()) == hashlib.sha256(_content(6)).hexdigest()


def _tampered(proof, how):
    import base64
    proof = json.loads(json.dumps(proof))
    if how == "record":
        raw = bytearray(base64.b64decode(proof["record"]))
        raw[-3] ^= 1
        proof["record"] = base64.b64encode(bytes(raw)).decode()
    elif how == "index":
        proof["index"] += 1
    elif how == "path":
        proof["audit_path"][1] = "00" * 32
    elif how == "short-path":
        proof["audit_path"].pop()
    elif how == "root":
        proof["checkpoint"]["checkpoint"]["root"] = "00" * 32
    elif how == "size":
        proof["checkpoint"]["checkpoint"]["size"] = 13
    elif how == "signature":
        proof["checkpoint"]["signature"] = proof["checkpoint"]["signature"][:-2] + "00"
    elif how == "chain":
        proof["identity_chain"] = _self_made_identity("TEST-0001")[1]
    return proof


@pytest.mark.parametrize("how", ["record", "index", "path", "short-path", "root", "size", "signature", "chain"])
def test_a_tampered_proof_fails_both_checkers(proved, vendor_ca, how):
    from synthseal.host import logproof
    bad = _tampered(proved[0], how)
    with pytest.raises(logproof.ProofError):
        logproof.check_proof(bad, vendor_ca.root_pem)
    with pytest.raises(Exception):
        _doc_checker()(bad, vendor_ca.root_pem.encode())


def test_a_proof_for_another_file_is_refused(proved, vendor_ca, tmp_path):
    from synthseal.host import logproof
    other = tmp_path / "other.jpg"
    other.write_bytes(_content(7))
    with pytest.raises(logproof.ProofError, match="not the seal record of a file"):
        logproof.check_proof(proved[0], vendor_ca.root_pem, logproof.file_sha256(other))


def test_no_proof_from_a_database_that_does_not_hold(db, tmp_path):
    from synthseal.host import logproof
    _sql(db, "UPDATE records SET raw=CAST(replace(CAST(raw AS TEXT), '\"a\"', '\"b\"') AS BLOB) WHERE seq=3")
    sealed_file = tmp_path / "photo.jpg"
    sealed_file.write_bytes(_content(2))
    with pytest.raises(logproof.ProofError, match="do not hash to the root of signed head 3.*log verify"):
        logproof.prove_file(db, sealed_file)
    sealed_file.write_bytes(b"never sealed")
    with pytest.raises(logproof.ProofError, match="no seal record"):
        logproof.prove_file(db, sealed_file)


def test_log_prove_and_check_proof_on_the_command_line(db, vendor_ca, tmp_path):
    anchor = tmp_path / "root.pem"
    anchor.write_text(vendor_ca.root_pem)
    sealed_file = tmp_path / "photo.jpg"
    sealed_file.write_bytes(_content(9))
    out = tmp_path / "proof.json"
    made = run("host", "log", "prove", sealed_file, "--db", db, "--out", out)
    assert made.returncode == 0 and "record 9 of device TEST-0001" in made.stdout, made.stderr
    checked = run("host", "log", "check-proof", out, "--trust-anchor", anchor, "--file", sealed_file)
    assert checked.returncode == 0 and checked.stdout.startswith("OK ") and "seal record of" in checked.stdout
    out.write_text(json.dumps(_tampered(json.loads(out.read_text()), "path")))
    bad = run("host", "log", "check-proof", out, "--trust-anchor", anchor)
    assert bad.returncode == 1 and "FAIL" in bad.stdout and "audit path does not lead" in bad.stdout
    sealed_file.write_bytes(b"changed")
    missing = run("host", "log", "prove", sealed_file, "--db", db)
    assert missing.returncode == 2 and "no seal record" in missing.stderr


def _check_export_rows(head, records, vendor_ca):
    """What an auditor does with an export: the head's signature, the chain, the root."""
    import base64
    from synthseal.device import checkpoint
    from synthseal.device.core import merkle
    key = logdb.checkpoint_signer(head["identity_chain"], "TEST-0001", vendor_ca.root_pem)
    body = checkpoint.verify_checkpoint(head["signed_checkpoint"], key)
    raws = [base64.b64decode(r["raw_base64"]) for r in records]
    assert logrecord.verify_chain(raws) is None
    tree = merkle.CompactRange()
    for raw in raws:
        tree.append(raw)
    assert (body["size"], body["root"]) == (len(raws), tree.root().hex()) == (head["seq"], head["record_hash"])


def test_export_jsonl_has_every_record_decoded_and_the_signed_head(db, vendor_ca, tmp_path):
    from synthseal.host import logexport
    out = tmp_path / "audit.jsonl"
    assert logexport.export(db, "jsonl", out, anchors=vendor_ca.root_pem) == (12, 1)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    head, records = lines[0], lines[1:]
    assert head["kind"] == "tree_head" and [r["seq"] for r in records] == list(range(1, 13))
    assert records[5]["event"] == "seal" and records[5]["decision"] == {"rule": "rig", "tag": "a"}
    assert records[5]["content_sha256"] == hashlib.sha256(_content(6)).hexdigest()
    assert records[5]["time_utc"] == "2023-11-14T22:13:20.006000Z"
    _check_export_rows(head, records, vendor_ca)


def test_export_csv_carries_the_same(db, vendor_ca, tmp_path):
    import csv
    out = tmp_path / "audit.csv"
    result = run("host", "log", "export", "--db", db, "--format", "csv", "--out", out)
    assert result.returncode == 0 and "12 records and 1 signed tree heads" in result.stdout, result.stderr
    with open(out, newline="") as f:
        table = list(csv.DictReader(f))
    head, records = table[0], table[1:]
    head["signed_checkpoint"] = json.loads(head["signed_checkpoint"])
    head["seq"] = int(head["seq"])
    assert [int(r["seq"]) for r in records] == list(range(1, 13))
    assert records[0]["event"] == "enrol" and json.loads(records[1]["decision"]) == {"rule": "rig", "tag": "a"}
    _check_export_rows(head, records, vendor_ca)


def test_a_log_that_does_not_verify_is_not_exported(db, tmp_path):
    _sql(db, "UPDATE records SET content_sha256=? WHERE seq=5", "ab" * 32)
    out = tmp_path / "audit.jsonl"
    result = run("host", "log", "export", "--db", db, "--format", "jsonl", "--out", out)
    assert result.returncode == 2 and "does not verify" in result.stderr and "record 5" in result.stderr
    assert not out.exists()
