"""The audit log: records chain by hash, survive power cuts, and any edit is found
and named."""

import struct
from binascii import crc32

import pytest

from synthseal.device.core import logrecord
from synthseal.device.core.auditlog import AuditLog, AuditLogError


def _append(log, n):
    for i in range(n):
        log.append(1700000000000 + i, bytes([i]) * 32, logrecord.EVENT_SEAL, "SN-%08d" % (log.next_seq),
                   {"rule": "rig", "label": "1"})


def test_records_chain_from_genesis_and_read_back(tmp_path):
    log = AuditLog(str(tmp_path / "audit.log"))
    _append(log, 5)
    records = log.read(1, 100)
    assert [logrecord.decode_record(r)["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert logrecord.verify_chain(records) is None
    assert log.head_hash == logrecord.record_hash(records[-1])
    assert logrecord.decode_record(records[2])["produce_id"] == "SN-00000003"


def test_reopened_log_continues_the_chain(tmp_path):
    path = str(tmp_path / "audit.log")
    _append(AuditLog(path), 3)
    log = AuditLog(path)
    _append(log, 2)
    assert logrecord.verify_chain(log.read(1, 100)) is None
    assert log.next_seq == 6


@pytest.mark.parametrize("cut", [1, 4, 10, 60])
def test_power_cut_mid_append_loses_only_the_torn_record(tmp_path, cut):
    path = tmp_path / "audit.log"
    log = AuditLog(str(path))
    _append(log, 3)
    intact = path.stat().st_size
    _append(log, 1)
    with open(path, "r+b") as f:  # the write of record 4 was interrupted after `cut` bytes
        f.truncate(intact + cut)
    log = AuditLog(str(path))
    assert log.next_seq == 4 and path.stat().st_size == intact
    _append(log, 1)
    assert logrecord.verify_chain(log.read(1, 100)) is None


def test_damage_in_the_middle_is_reported_read_only_not_truncated(tmp_path):
    path = tmp_path / "audit.log"
    _append(AuditLog(str(path)), 4)
    data = bytearray(path.read_bytes())
    data[30] ^= 0xFF  # inside record 1, CRC not fixed
    path.write_bytes(bytes(data))
    log = AuditLog(str(path))
    assert log.damage["seq"] == 1 and "damaged at byte 0 (record 1)" in log.damage["message"]
    with pytest.raises(AuditLogError, match="damaged"):
        _append(log, 1)
    assert path.read_bytes() == bytes(data)


def rewrite_record(path, seq, edit):
    """Edit record `seq` in a log file the way a forger would: change its bytes and
    fix its length and CRC so the file itself looks intact."""
    data = path.read_bytes()
    at, current, out = 0, 1, b""
    while at < len(data):
        (n,) = struct.unpack("<I", data[at:at + 4])
        body = data[at + 4:at + 4 + n]
        if current == seq:
            body = edit(body)
        out += struct.pack("<I", len(body)) + body + struct.pack("<I", crc32(body) & 0xFFFFFFFF)
        at += 8 + n
        current += 1
    path.write_bytes(out)


def test_an_edited_record_breaks_the_chain_and_is_named(tmp_path):
    path = tmp_path / "audit.log"
    _append(AuditLog(str(path)), 5)
    rewrite_record(path, 3, lambda body: body.replace(b'"1"', b'"3"'))
    failure = logrecord.verify_chain(AuditLog(str(path)).read(1, 100))
    assert failure is not None
    index, seq, reason = failure
    assert seq == 3 and "record 3" in reason


def test_a_dropped_record_is_found(tmp_path):
    log = AuditLog(str(tmp_path / "audit.log"))
    _append(log, 4)
    records = log.read(1, 100)
    failure = logrecord.verify_chain(records[:2] + records[3:])
    assert failure is not None and "sequence jumps" in failure[2]


def test_read_stops_where_the_caller_says_the_batch_is_full(tmp_path):
    log = AuditLog(str(tmp_path / "audit.log"))
    _append(log, 10)
    size = len(log.read(1, 1)[0])
    assert len(log.read(1, 100, fits=lambda lengths: sum(lengths) <= size * 3)) == 3
    assert log.read(1, 100, fits=lambda lengths: False) == []


def test_a_record_too_large_for_the_transport_is_refused_when_built():
    with pytest.raises(logrecord.RecordError, match="exceeds"):
        logrecord.encode_record(1, 0, b"\0" * 32, b"\0" * 32, logrecord.EVENT_SEAL, "P",
                                {"classifier_error": "x" * logrecord.MAX_RECORD_LEN})


def test_group_commit_writes_the_same_records_as_single_appends_and_survives_reopening(tmp_path):
    items = [(1700000000000 + i, bytes([i]) * 32, logrecord.EVENT_SEAL, "G-%d" % i, {"i": i}) for i in range(1, 11)]
    single = AuditLog(str(tmp_path / "single.log"))
    for item in items:
        single.append(*item)
    grouped = AuditLog(str(tmp_path / "grouped.log"))
    made = grouped.append_many(items[:4]) + grouped.append_many(items[4:])
    assert [seq for seq, _ in made] == list(range(1, 11))
    assert (tmp_path / "grouped.log").read_bytes() == (tmp_path / "single.log").read_bytes()
    reopened = AuditLog(str(tmp_path / "grouped.log"))
    assert reopened.next_seq == 11 and reopened.tree_head() == single.tree_head() == grouped.tree_head()
