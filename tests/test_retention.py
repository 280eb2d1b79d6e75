"""Retention: a record may be pruned only when a collector acknowledged it after a
verified pull AND it is older than the signed configuration's retention period (never
under 180 days). A controllable clock stands in for the device's."""

import pytest

from synthseal.device import credentials, retention
from synthseal.device.core import logrecord
from synthseal.device.service import DeviceAnswers
from synthseal.device.state import DeviceState
from synthseal.host import logdb
from synthseal.host.client import DeviceClient, HostError
from synthseal.host.lab import make_operator
from synthseal.host.simlink import LoopbackTransport

DAY = retention.DAY_MS
T0 = 1700000000000  # the time of the first records


def _client(state, operator=None):
    client = DeviceClient(LoopbackTransport(DeviceAnswers(state).answer), give_up_after=5)
    client.authenticate(operator or state.test_vendor.operator, state.test_vendor.root_pem)
    return client


def _append(state, n, time_ms):
    log = state.log()
    for _ in range(n):
        log.append(time_ms, bytes(32), logrecord.EVENT_SEAL, "P-%08d" % log.next_seq, {"rule": "rig"})


def _enrolled_at(state):
    return logrecord.decode_record(state.log().read(1, 1)[0])["time_ms"]


def _prunable(state, now_ms):
    return retention.prunable_now(state, state.log(), now_ms)


def test_the_decision_needs_both_the_acknowledgement_and_the_age():
    records = [(seq, T0 + seq * DAY) for seq in range(1, 11)]  # one a day
    period = retention.retention_ms({"retention_days": 183})
    late = T0 + 400 * DAY
    assert retention.prunable_count(records, 0, period, late) == 0        # old, but never acknowledged
    assert retention.prunable_count(records, 6, period, late) == 6        # acknowledged ones only
    assert retention.prunable_count(records, 10, period, T0 + 100 * DAY) == 0  # acknowledged, too young
    # exactly the records older than the period: day 1..4 at day 187
    assert retention.prunable_count(records, 10, period, T0 + 187 * DAY + 1) == 4
    # a prefix only: a young record stops the count even if later ones are old
    assert retention.prunable_count([(1, T0), (2, late), (3, T0)], 3, period, late) == 1


@pytest.mark.parametrize("days, kept", [(183, 183), (365, 365), (30, 180), (None, 183), ("x", 183)])
def test_the_period_never_falls_under_six_months(days, kept):
    config = {} if days is None else {"retention_days": days}
    assert retention.retention_ms(config) == kept * DAY
    assert credentials.MIN_RETENTION_DAYS == 180


def test_a_verified_pull_acknowledges_what_it_stored_and_only_that(device, tmp_path):
    _append(device, 9, T0)
    client = _client(device)
    summary = logdb.pull(client, tmp_path / "audit.sqlite")
    assert summary["acknowledged"] == 10 and device.acks().acked_size() == 10
    _append(device, 5, T0 + DAY)  # sealed after the pull: not acknowledged
    late = _enrolled_at(device) + 400 * DAY
    assert _prunable(device, late) == 10
    # the acknowledgement is durable: a restarted device still knows it
    again = DeviceState(device.directory)
    assert again.acks().acked_size() == 10


def test_unacknowledged_records_are_never_prunable_however_old(device):
    _append(device, 20, T0)
    for now in (_enrolled_at(device) + 200 * DAY, _enrolled_at(device) + 10 * 365 * DAY):
        assert _prunable(device, now) == 0


def test_acknowledged_records_become_prunable_only_after_the_configured_period(vendor_ca, tmp_path):
    from tests.conftest import make_device
    state = make_device(tmp_path / "device", vendor_ca, retention_days=365)
    enrolled_at = _enrolled_at(state)
    _append(state, 4, enrolled_at)
    logdb.pull(_client(state), tmp_path / "audit.sqlite")
    assert _prunable(state, enrolled_at + 200 * DAY) == 0  # past 183 days, not past the signed 365
    assert _prunable(state, enrolled_at + 366 * DAY) == 5


def test_an_ack_for_a_tree_the_device_does_not_hold_is_refused(device):
    _append(device, 3, T0)
    client = _client(device)
    size, root = device.log().tree_head()
    with pytest.raises(HostError, match="root is not this log's"):
        client.ack(size, "00" * 32)
    with pytest.raises(HostError, match="ACK for 5 records, but the log holds 4"):
        client.ack(5, root.hex())
    assert device.acks().acked_size() == 0
    assert client.ack(2, device.log().root(2).hex()) == 2
    assert client.ack(1, device.log().root(1).hex()) == 2  # an acknowledgement never goes back
    assert device.acks().acked_size() == 2


def test_only_a_collector_may_acknowledge(device):
    _append(device, 2, T0)
    provisioner = make_operator(device.test_vendor.ca, "installer", [credentials.ROLE_PROVISIONER])
    client = _client(device, provisioner)
    with pytest.raises(HostError, match="collector"):
        client.ack(3, device.log().root(3).hex())
    assert device.acks().acked_size() == 0


def test_acknowledged_old_records_are_pruned_and_the_tree_proofs_and_pulls_stay_whole(device, tmp_path):
    import time
    from synthseal.device.core.auditlog import AuditLog
    log = device.log()
    _append(device, 10, int(time.time() * 1000))
    db = tmp_path / "audit.sqlite"
    assert logdb.pull(_client(device), db)["pulled"] == 11  # verified and acknowledged: 11 records
    _append(device, 5, int(time.time() * 1000))            # never pulled, never acknowledged
    root_11, head = log.root(11), log.tree_head()
    proof = log.inclusion_proof(3, 16)
    later = int(time.time() * 1000) + 400 * DAY             # the device's clock, past the period
    assert retention.prune_now(device, log, later) == 11
    assert log.first_seq == 12 and log.read(12, 100)[0] == device.log().read(12, 1)[0]
    with pytest.raises(Exception, match="no longer on the device"):
        log.read(11, 1)
    # The tree is whole: the same roots and proofs as before, also for pruned records.
    assert log.root(11) == root_11 and log.root(16) == head[1] and log.inclusion_proof(3, 16) == proof
    reopened = AuditLog(str(device.log_path), writable=False)
    assert reopened.first_seq == 12 and reopened.root(16) == head[1] and reopened.tree_head() == log.tree_head()
    # The prune is itself a record; unacknowledged records were kept, however old.
    last = logrecord.decode_record(log.read(log.next_seq - 1, 1)[0])
    assert last["event"] == logrecord.EVENT_PRUNE and (last["decision"]["first_seq"], last["decision"]["last_seq"]) == (1, 11)
    assert retention.prune_now(device, log, later) == 0
    # The collector that acknowledged goes on pulling: consistency from its last head holds.
    summary = logdb.pull(_client(device), db)
    assert summary["pulled"] == 6 and summary["stored"] == 17
    assert logdb.verify_log(db) == []


def test_a_prune_cut_short_by_a_power_loss_leaves_the_whole_log(device, tmp_path, monkeypatch):
    import time
    from synthseal.device.core import auditlog
    log = device.log()
    _append(device, 6, int(time.time() * 1000))
    logdb.pull(_client(device), tmp_path / "audit.sqlite")
    before = device.log_path.read_bytes()
    head = log.tree_head()
    renames = []
    real = auditlog._rename

    def power_cut(source, target):
        renames.append(target)
        if target == str(device.log_path):
            raise OSError("power cut")
        real(source, target)

    monkeypatch.setattr(auditlog, "_rename", power_cut)
    with pytest.raises(OSError):
        log.prune(5)
    monkeypatch.setattr(auditlog, "_rename", real)
    assert device.log_path.read_bytes() == before  # the leaves were written aside, the log untouched
    reopened = auditlog.AuditLog(str(device.log_path), writable=False)
    assert reopened.first_seq == 1 and reopened.tree_head() == head
    fresh = auditlog.AuditLog(str(device.log_path))
    assert fresh.prune(5) == 5 and fresh.first_seq == 6 and fresh.tree_head() == head


def test_records_with_a_wrong_clock_are_kept_a_whole_period_after_their_acknowledgement(device, tmp_path):
    """Found by an attack review: enrolled on day 0; on day 170 a reboot with no real-time
    clock stamps records 1970; a collector acknowledges them that day. On day 184 the
    enrolment record is past the period and the 1970 records look it: without dating
    the acknowledgement, records 14 days old would go."""
    import time
    day0 = int(time.time() * 1000)
    _append(device, 3, 0)
    answers = DeviceAnswers(device, clock=lambda: (day0 + 170 * DAY) / 1000.0)
    client = DeviceClient(LoopbackTransport(answers.answer), give_up_after=5)
    client.authenticate(device.test_vendor.operator, device.test_vendor.root_pem)
    logdb.pull(client, tmp_path / "audit.sqlite")  # acknowledged on day 170
    assert device.acks().acked_size() == 4
    assert _prunable(device, day0 + 184 * DAY) == 0
    assert _prunable(device, day0 + (170 + 184) * DAY) == 4  # a whole period after the acknowledgement


def _pruned_device(device, tmp_path):
    """A device whose records 1..11 were pulled by one host, then pruned, and 5 more since."""
    import time
    log = device.log()
    _append(device, 10, int(time.time() * 1000))
    assert logdb.pull(_client(device), tmp_path / "first-host.sqlite")["pulled"] == 11
    _append(device, 5, int(time.time() * 1000))
    assert retention.prune_now(device, log, int(time.time() * 1000) + 400 * DAY) == 11
    return log


def test_a_host_that_first_pulls_after_a_prune_still_checks_every_signed_root(device, tmp_path):
    from synthseal.host import logproof
    log = _pruned_device(device, tmp_path)
    db = tmp_path / "auditor.sqlite"
    summary = logdb.pull(_client(device), db)
    # No "anchored by its hash chain alone": the device served the compact range of the
    # pruned records and the root computed through it matched the signed one.
    assert summary["warnings"] == [] and summary["stored"] == 6 and summary["head_seq"] == log.next_seq - 1
    assert logdb.verify_log(db, anchors=device.test_vendor.root_pem) == []
    # An inclusion proof for a record after the prefix holds for a third party.
    with logdb.open_readonly(db) as conn:
        proof = logproof.prove_record(conn, device.serial(), 14)
        with pytest.raises(logproof.ProofError, match="not stored here"):
            logproof.prove_record(conn, device.serial(), 3)
    assert logproof.check_proof(proof, anchors=device.test_vendor.root_pem)["seq"] == 14
    # The next pull extends the tree from the stored prefix.
    _append(device, 3, T0 + 999 * DAY)
    assert logdb.pull(_client(device), db)["warnings"] == []
    assert logdb.verify_log(db) == []


def test_an_edited_database_after_a_pruned_prefix_is_found_against_the_signed_root(device, tmp_path):
    import shutil
    import sqlite3
    _pruned_device(device, tmp_path)
    db = tmp_path / "auditor.sqlite"
    logdb.pull(_client(device), db)

    def edited(name, *statements):
        copy = tmp_path / name
        shutil.copy(db, copy)
        conn = sqlite3.connect(copy)
        with conn:
            for sql in statements:
                conn.execute(*sql) if isinstance(sql, tuple) else conn.execute(sql)
        conn.close()
        return logdb.verify_log(copy)

    # The newest record and the stored head anchor deleted: the chain alone cannot tell.
    problems = edited("deleted.sqlite", "DELETE FROM records WHERE seq=(SELECT MAX(seq) FROM records)",
                      "UPDATE devices SET head_seq=NULL, head_hash=NULL")
    assert any("missing" in p for p in problems), problems
    # The stored compact range changed: every root recomputed through it differs.
    with logdb.open_readonly(db) as conn:
        prefix = logdb.pruned_prefix(conn, device.serial())
    problems = edited("prefix.sqlite", ("UPDATE pruned_prefixes SET hashes=?", (bytes(32) + b"".join(prefix.hashes[1:]),)))
    assert any("do not hash to the root" in p for p in problems), problems
    # The compact range deleted: said, not passed over.
    problems = edited("noprefix.sqlite", "DELETE FROM pruned_prefixes")
    assert any("no compact range" in p for p in problems), problems
    # Values no pull writes are reported the same way, never a traceback or a hang.
    for n, sql in enumerate(["UPDATE pruned_prefixes SET hashes='abc'", "UPDATE pruned_prefixes SET size=-1",
                             "UPDATE pruned_prefixes SET size='x'"]):
        problems = edited("odd%d.sqlite" % n, sql)
        assert any("no compact range" in p for p in problems), (sql, problems)


def test_a_compact_range_the_device_did_not_sign_is_refused(device, tmp_path, monkeypatch):
    from synthseal.device.core import merkle
    log = _pruned_device(device, tmp_path)
    real = log.pruned_prefix()
    monkeypatch.setattr(type(log), "pruned_prefix",
                        lambda self: merkle.CompactRange(real.size, [bytes(32)] + real.hashes[1:]))
    db = tmp_path / "auditor.sqlite"
    with pytest.raises(logdb.ChainError, match="compact range"):
        logdb.pull(_client(device), db)
    with logdb.open_readonly(db) as conn:
        assert logdb.pruned_prefix(conn, device.serial()) is None  # not kept


def _delete_and_cover(db, below):
    """A database edit: delete the stored records before seq `below` and put in their
    place the compact range of records 1..below-1, which anyone can compute from them."""
    import sqlite3
    from synthseal.device.core import merkle
    conn = sqlite3.connect(db)
    serial = conn.execute("SELECT serial FROM devices").fetchone()[0]
    stored = logdb.pruned_prefix(conn, serial)
    tree = merkle.CompactRange(stored.size, stored.hashes) if stored else merkle.CompactRange()
    for (raw,) in conn.execute("SELECT raw FROM records WHERE seq<? ORDER BY seq", (below,)):
        tree.append(bytes(raw))
    assert tree.size == below - 1
    with conn:
        conn.execute("DELETE FROM records WHERE seq<?", (below,))
        conn.execute("INSERT OR REPLACE INTO pruned_prefixes VALUES(?,?,?)",
                     (serial, tree.size, b"".join(tree.hashes)))
    conn.close()


def test_records_deleted_here_cannot_hide_behind_a_compact_range(device, tmp_path):
    import time
    # A host that pulled from record 1: deleting its first records and storing their
    # compact range is found, since the device held them when it signed the first head.
    _append(device, 10, int(time.time() * 1000))
    db = tmp_path / "host.sqlite"
    logdb.pull(_client(device), db)
    _append(device, 5, int(time.time() * 1000))
    logdb.pull(_client(device), db)
    _delete_and_cover(db, 12)
    problems = logdb.verify_log(db)
    assert any("records 1..11 are not stored here, but the device still held records from 1" in p
               for p in problems), problems
    # A host that first pulled after a prune: deleting records it did pull and stretching
    # the compact range over them is found the same way.
    log = device.log()
    retention.prune_now(device, log, int(time.time() * 1000) + 400 * DAY)
    held_from = log.first_seq
    _append(device, 5, int(time.time() * 1000))
    auditor = tmp_path / "auditor.sqlite"
    assert logdb.pull(_client(device), auditor)["warnings"] == []
    _delete_and_cover(auditor, held_from + 3)
    problems = logdb.verify_log(auditor)
    assert any("records %d..%d are not stored here, but the device still held records from %d"
               % (held_from, held_from + 2, held_from) in p for p in problems), problems


@pytest.mark.parametrize("forged", [False, True])
def test_a_first_pull_cut_short_asks_for_the_compact_range_again(device, tmp_path, monkeypatch, forged):
    from synthseal.device.core import merkle
    log = _pruned_device(device, tmp_path)
    real = log.pruned_prefix()
    if forged:  # the device lies once, then the pull is cut: nothing of the lie may stick
        monkeypatch.setattr(type(log), "pruned_prefix",
                            lambda self: merkle.CompactRange(real.size, [bytes(32)] + real.hashes[1:]))
    client = _client(device)
    stream = client.stream_log

    def cut_after_the_first_batch(start, end):
        for records in stream(start, end):
            yield records[:1]
            raise KeyboardInterrupt("the cable was pulled")
    client.stream_log = cut_after_the_first_batch
    db = tmp_path / "auditor.sqlite"
    with pytest.raises(KeyboardInterrupt):
        logdb.pull(client, db, batch=1)
    with logdb.open_readonly(db) as conn:
        assert logdb.pruned_prefix(conn, device.serial()) is None  # kept only once a root matched
    monkeypatch.undo()
    summary = logdb.pull(_client(device), db)
    assert summary["warnings"] == [] and summary["head_seq"] == log.next_seq - 1
    assert logdb.verify_log(db) == []
