"""Recovery never destroys evidence: a power cut at any byte of the last records leaves
every committed record and keeps the cut bytes aside; any flipped byte is found; damage
in the middle leaves the log readable, never cut; zeros are not records."""

import random
import struct
from binascii import crc32

import pytest

from synthseal.device.core import logrecord
from synthseal.device.core.auditlog import AuditLog, AuditLogError

RECORDS = 300


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    path = tmp_path_factory.mktemp("golden") / "audit.log"
    log = AuditLog(str(path))
    ends = []
    for i in range(RECORDS):
        log.append(1700000000000 + i, bytes([i % 256]) * 32, logrecord.EVENT_SEAL, "SN-%08d" % (i + 1),
                   {"rule": "rig", "label": "1", "n": i})
        ends.append(path.stat().st_size)
    return path.read_bytes(), ends


def _open(path):
    kept = []
    log = AuditLog(str(path), keep_torn_tail=lambda offset, data: kept.append((offset, data)))
    return log, kept


def test_a_power_cut_at_every_byte_of_the_last_records_keeps_every_committed_record(golden, tmp_path):
    data, ends = golden
    path = tmp_path / "audit.log"
    for cut in range(ends[-4], ends[-1] + 1):  # inside the last three records, every offset
        committed = sum(1 for end in ends if end <= cut)
        path.write_bytes(data[:cut])
        log, kept = _open(path)
        assert log.count == committed and log.damage is None
        whole = ends[committed - 1]
        if cut == whole:
            assert kept == [] and log.torn_tail is None
        else:
            assert kept == [(whole, data[whole:cut])]  # the cut bytes, kept aside
            assert log.torn_reason == "torn"
        assert path.read_bytes() == data[:whole]  # the log continues after the last whole record
        seq, _ = log.append(1, bytes(32), logrecord.EVENT_REPAIR, "", {"repair": "torn-log-tail-cut"})
        assert seq == committed + 1 and logrecord.verify_chain(log.read(1, RECORDS + 1)) is None


def test_every_flipped_byte_is_found(golden, tmp_path):
    data, ends = golden
    path = tmp_path / "audit.log"
    rng = random.Random(9162)
    offsets = rng.sample(range(len(data)), 300) + list(range(ends[-2], ends[-1]))
    for offset in offsets:
        flipped = bytearray(data)
        flipped[offset] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(flipped))
        log, kept = _open(path)
        record_at = next(i for i, end in enumerate(ends) if offset < end)  # 0-based record index
        if log.damage is not None:  # in the middle: reported, read-only, nothing cut
            assert log.damage["seq"] <= record_at + 1 and log.count <= record_at
            assert path.read_bytes() == bytes(flipped) and not log.writable
            with pytest.raises(AuditLogError, match="damaged"):
                log.append(1, bytes(32), logrecord.EVENT_SEAL, "", {})
        else:  # the last record: moved aside as damaged, never taken as good
            assert record_at == RECORDS - 1 and log.count == RECORDS - 1
            assert kept == [(ends[-2], bytes(flipped[ends[-2]:]))]
            # a changed length field looks like an interrupted write; anything else is named damage
            assert log.torn_reason == "damaged" or offset < ends[-2] + 4
        assert logrecord.verify_chain(log.read(1, RECORDS)) is None  # what is served is the verified prefix


def test_damage_in_the_middle_serves_the_verified_prefix_read_only(golden, tmp_path):
    data, ends = golden
    path = tmp_path / "audit.log"
    damaged = bytearray(data)
    damaged[ends[99] + 30] ^= 0xFF  # inside record 101
    path.write_bytes(bytes(damaged))
    log, kept = _open(path)
    assert log.count == 100 and kept == [] and not log.writable
    assert log.damage["seq"] == 101 and log.damage["offset"] == ends[99]
    assert "record 101" in log.damage["message"] and "read-only" in log.damage["message"]
    assert len(log.read(1, 1000)) == 100
    assert path.read_bytes() == bytes(damaged)


def test_zero_bytes_appended_are_not_records(golden, tmp_path):
    data, ends = golden
    path = tmp_path / "audit.log"
    path.write_bytes(data + bytes(232))  # a filesystem that extended the file with zeros
    log, kept = _open(path)
    assert log.count == RECORDS and log.damage is None
    assert kept == [(len(data), bytes(232))] and path.read_bytes() == data


def test_a_well_formed_entry_that_does_not_follow_the_chain_is_not_a_record(golden, tmp_path):
    data, ends = golden
    path = tmp_path / "audit.log"
    stray = logrecord.encode_record(7, 1, logrecord.GENESIS_HASH, bytes(32), logrecord.EVENT_SEAL, "X", {})
    path.write_bytes(data + struct.pack("<I", len(stray)) + stray + struct.pack("<I", crc32(stray)))
    log, kept = _open(path)
    assert log.count == RECORDS and kept and log.torn_reason == "damaged"
