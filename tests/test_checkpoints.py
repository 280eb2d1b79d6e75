"""Signed checkpoints: the device signs what its log holds with its identity key; the
host stores nothing it cannot tie to a signed head that extends the last one it saw,
and names rollbacks, deletions, rewrites and forks."""

import json
import os
import shutil
import sqlite3

import pytest

from synthseal.device import checkpoint
from synthseal.device.core import logrecord, merkle
from synthseal.device.state import DeviceState
from synthseal.host import logdb
from tests.test_auditlog import rewrite_record


def _append(state, n, tag="a"):
    log = state.log()
    for _ in range(n):
        seq = log.next_seq
        log.append(1700000000000 + seq, bytes([seq % 256]) * 32, logrecord.EVENT_SEAL, "%s-%s-%08d" % (
            state.serial(), tag, seq), {"rule": "rig", "tag": tag})


def _identity_key(state):
    from synthseal.device import credentials
    return credentials.load_pem_chain(state.identity_chain_pem())[0].public_key()


def _heads(db):
    return sqlite3.connect(db).execute("SELECT counter, size, root, host_time_ms FROM checkpoints "
                                       "ORDER BY counter").fetchall()


def test_a_pull_stores_the_signed_head_with_both_clocks(device, service_for, tmp_path):
    _append(device, 5)
    db = tmp_path / "audit.sqlite"
    summary = logdb.pull(service_for(device).client(), db)
    assert summary["checkpoint"]["size"] == 6 and summary["warnings"] == []
    (counter, size, root, host_time), = _heads(db)
    assert size == 6 and root == device.log().root(6).hex() and host_time > 1700000000000
    signed = json.loads(sqlite3.connect(db).execute("SELECT signed FROM checkpoints").fetchone()[0])
    assert checkpoint.verify_checkpoint(signed, _identity_key(device))["size"] == 6
    # the device keeps every head it signed
    assert device.checkpoints().last() == signed
    forged = dict(signed, checkpoint=dict(signed["checkpoint"], size=7))
    with pytest.raises(checkpoint.CheckpointError, match="not signed"):
        checkpoint.verify_checkpoint(forged, _identity_key(device))


def test_each_pull_checks_consistency_with_the_last_head(device, service_for, tmp_path):
    db = tmp_path / "audit.sqlite"
    service = service_for(device)
    client = service.client()
    for grow in (3, 0, 17, 1):
        _append(device, grow)
        logdb.pull(client, db)
    heads = _heads(db)
    assert [h[1] for h in heads] == [4, 4, 21, 22] and [h[0] for h in heads] == [1, 2, 3, 4]


def _backup(state, tmp_path, name="backup"):
    backup = tmp_path / name
    shutil.copytree(state.directory, backup, symlinks=True)
    return backup


def _restored(state, backup):
    restored = DeviceState(backup).own()
    restored.test_vendor = state.test_vendor
    return restored


def test_a_rolled_back_device_log_is_named_and_nothing_is_stored(device, service_for, tmp_path):
    _append(device, 2)
    backup = _backup(device, tmp_path)  # the whole state at 3 records, signed heads included
    _append(device, 3)
    db = tmp_path / "audit.sqlite"
    logdb.pull(service_for(device).client(), db)
    rolled_back = _restored(device, backup)
    with pytest.raises(logdb.ChainError, match=r"rolled back or replaced; records 4\.\.6 are missing"):
        logdb.pull(service_for(rolled_back).client(), db)
    assert [h[1] for h in _heads(db)] == [6]


def test_a_log_cut_under_its_signed_head_is_refused_by_the_device_itself(device, service_for, tmp_path):
    _append(device, 5)
    db = tmp_path / "audit.sqlite"
    logdb.pull(service_for(device).client(), db)  # the device signed a head of 6 records
    data = device.log_path.read_bytes()
    cut = DeviceState(device.directory)
    device.release()
    log = cut.own().log()
    with open(cut.log_path, "r+b") as f:  # someone cuts the log file back to 3 records
        f.truncate(sum(8 + len(r) for r in log.read(1, 3)))
    cut._log = None
    cut.test_vendor = device.test_vendor
    with pytest.raises(logdb.ChainError, match=r"holds 3 records but the device signed a head of 6.*records 4\.\.6"):
        logdb.pull(service_for(cut).client(), tmp_path / "fresh.sqlite")  # even a host that never saw it
    assert len(data) > cut.log_path.stat().st_size


def test_a_deleted_log_is_a_rollback_not_a_fresh_start(device, service_for, tmp_path):
    _append(device, 4)
    db = tmp_path / "audit.sqlite"
    logdb.pull(service_for(device).client(), db)
    device.log_path.unlink()
    device._log = None
    with pytest.raises(logdb.ChainError, match="holds 0 records but the device signed a head of 5"):
        logdb.pull(service_for(device).client(), db)
    assert not device.log_path.exists()  # reported, never silently recreated


def test_a_log_rebuilt_without_a_record_and_no_key_is_a_fork_naming_it(device, service_for, tmp_path):
    _append(device, 5)
    db = tmp_path / "audit.sqlite"
    logdb.pull(service_for(device).client(), db)  # heads of 6 records, stored
    # A forger rewrites the device's storage: record 3 dropped, the chain rebuilt (no key
    # needed), its signed heads removed too, and three more records so it looks grown.
    records = device.log().read(1, 100)
    del records[2]
    device.release()
    device.log_path.unlink()
    device.checkpoints_path.unlink()
    forged = DeviceState(device.directory).own()
    forged.test_vendor = device.test_vendor
    log = forged.log()
    for raw in records:
        rec = logrecord.decode_record(raw)
        log.append(rec["time_ms"], rec["content_sha256"], rec["event"], rec["produce_id"], rec["decision"])
    _append(forged, 3, "f")
    with pytest.raises(logdb.ChainError, match="fork.*does not extend the 6 records.*record 3 differs"):
        logdb.pull(service_for(forged).client(), db)
    assert [h[1] for h in _heads(db)] == [6]


def test_two_histories_of_one_size_are_a_fork_naming_the_record(device, service_for, tmp_path):
    _append(device, 2)
    backup = _backup(device, tmp_path)
    _append(device, 3)
    db = tmp_path / "audit.sqlite"
    logdb.pull(service_for(device).client(), db)
    other = _restored(device, backup)  # the same device, storage restored, then a different future
    _append(other, 3, "other")
    with pytest.raises(logdb.ChainError, match="fork: it signed two different logs of 6 records.*record 4 differs"):
        logdb.pull(service_for(other).client(), db)


def test_a_head_not_signed_by_the_device_identity_is_refused(device, service_for, tmp_path):
    _append(device, 3)
    client = service_for(device).client()
    real = client.checkpoint

    def tampered(old_size, host_time_ms):
        answer = real(old_size, host_time_ms)
        answer["checkpoint"]["root"] = merkle.EMPTY_ROOT.hex()
        return answer

    client.checkpoint = tampered
    db = tmp_path / "audit.sqlite"
    with pytest.raises(logdb.ChainError, match="not signed by this device's identity key; nothing stored"):
        logdb.pull(client, db)
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0


def test_records_that_do_not_hash_to_the_signed_root_are_not_anchored(device, service_for, tmp_path):
    from synthseal.device.core.auditlog import AuditLog
    _append(device, 3)
    other = AuditLog(str(tmp_path / "other.log"))  # a whole, well-chained log the device never signed
    for seq in range(1, 5):
        other.append(seq, bytes(32), logrecord.EVENT_SEAL, "X-%d" % seq, {"rule": "rig"})
    client = service_for(device).client()
    client.stream_log = lambda start, end: iter([other.read(start, end - start)])
    db = tmp_path / "audit.sqlite"
    with pytest.raises(logdb.ChainError, match=r"records 1\.\.4 do not hash to the root the device signed"):
        logdb.pull(client, db)
    assert _heads(db) == []  # no head recorded: the next pull starts over from what is proved


def test_the_checkpoint_file_stays_bounded_however_often_a_collector_asks(device, tmp_path, monkeypatch):
    from synthseal.device.checkpoint import CheckpointStore
    monkeypatch.setattr(CheckpointStore, "MAX_BYTES", 8192)
    monkeypatch.setattr(CheckpointStore, "KEEP", 8)
    log = device.log()
    signed = [checkpoint.sign_checkpoint(device, log, host_time_ms=n) for n in range(60)]
    path = device.checkpoints().path
    kept = device.checkpoints().all()
    assert os.path.getsize(path) <= 8192 + 1024
    assert kept == signed[-len(kept):] and len(kept) <= 8 + 8192 // 300
    assert device.checkpoints().last() == signed[-1]
    # A torn last line (a power cut mid-append) hides nothing before it.
    with open(path, "ab") as f:
        f.write(b'{"checkpoint": {"vers')
    assert device.checkpoints().last() == signed[-1]
    # Nor does junk longer than the tail window, or a line that is JSON but no checkpoint.
    with open(path, "ab") as f:
        f.write(b"x" * 40000 + b"\n7\n")
    assert device.checkpoints().last() == signed[-1]
    assert checkpoint.sign_checkpoint(device, log)["checkpoint"]["counter"] == signed[-1]["checkpoint"]["counter"] + 1
