"""The audit log record: one binary layout, hashed and chained.

Layout (little-endian), version 1:

    offset size  field
    0      1     version            = 1
    1      4     seq                u32, 1 for the first record, +1 per record
    5      8     time_ms            u64, device clock, milliseconds since the Unix epoch
    13     32    prev_hash          SHA-256 of the previous record's bytes (32 zero bytes
                                    before the first record)
    45     32    content_sha256     SHA-256 of the final file as emitted (zeros if none)
    77     1     event              EVENT_* below
    78     1     n = len(produce_id)
    79     n     produce_id         ASCII, the GB 45438 ProduceID (or content number)
    79+n   2     m = len(decision)
    81+n   m     decision           UTF-8 JSON object: the policy decision and its inputs

record_hash = SHA-256(record bytes). The log head is the hash of the last record, so
editing, dropping or reordering any record breaks every link after it.
"""

import hashlib
import json
import struct

RECORD_VERSION = 1
HASH_LEN = 32
GENESIS_HASH = b"\x00" * HASH_LEN
_HEAD = "<BIQ32s32sB"
_HEAD_LEN = struct.calcsize(_HEAD)

EVENT_SEAL = 1    # a file was labelled, signed and emitted
EVENT_REPAIR = 2  # the agent repaired its output folder at start (details in the JSON field)
EVENT_ENROL = 3   # keys made, certificates and configuration installed (operator, fingerprints)
EVENT_CONFIG = 4  # a new signed configuration took effect
EVENT_ROTATE = 5  # new keys and certificates replaced the old ones
EVENT_DECOMMISSION = 6  # the device erases its keys
EVENT_PRUNE = 7   # records acknowledged by a collector and past the retention period were pruned
EVENT_NAMES = {EVENT_SEAL: "seal", EVENT_REPAIR: "repair", EVENT_ENROL: "enrol", EVENT_CONFIG: "configure",
               EVENT_ROTATE: "rotate", EVENT_DECOMMISSION: "decommission", EVENT_PRUNE: "prune"}
# Every record must fit one transport frame with room to spare (protocol.log_batch_fits),
# checked when the record is built, never discovered when it is pulled. A record is
# never split across frames, so its size bounds the frame a noisy line must carry
# whole: at a bit error rate of 1e-4 a 2 KB frame arrives intact about one time in
# eight, an 8 KB one one time in 350. A seal record is well under 1 KB.
MAX_RECORD_LEN = 2048
MIN_RECORD_LEN = _HEAD_LEN + 3  # empty produce_id and decision


class RecordError(ValueError):
    """Record bytes that do not parse."""


def encode_record(seq, time_ms, prev_hash, content_sha256, event, produce_id, decision):
    """Return the bytes of one record. `decision` is a dict, stored as JSON text."""
    if len(prev_hash) != HASH_LEN or len(content_sha256) != HASH_LEN:
        raise RecordError("hashes must be 32 bytes")
    pid = produce_id.encode()
    if len(pid) > 255:
        raise RecordError("produce_id longer than 255 bytes")
    text = json.dumps(decision).encode()
    record = (
        struct.pack(_HEAD, RECORD_VERSION, seq, time_ms, prev_hash, content_sha256, event)
        + bytes([len(pid)]) + pid + struct.pack("<H", min(len(text), 0xFFFF)) + text
    )
    if len(record) > MAX_RECORD_LEN:
        raise RecordError("record of %d bytes exceeds the %d-byte limit" % (len(record), MAX_RECORD_LEN))
    return record


def decode_record(data):
    """Parse record bytes into a dict; raise RecordError on any inconsistency."""
    if len(data) < _HEAD_LEN + 3:
        raise RecordError("record too short")
    version, seq, time_ms, prev_hash, content, event = struct.unpack(_HEAD, data[:_HEAD_LEN])
    if version != RECORD_VERSION:
        raise RecordError("unknown record version %d" % version)
    n = data[_HEAD_LEN]
    at = _HEAD_LEN + 1
    pid = data[at:at + n]
    at += n
    if len(data) < at + 2:
        raise RecordError("record truncated in produce_id")
    (m,) = struct.unpack("<H", data[at:at + 2])
    at += 2
    if len(data) != at + m:
        raise RecordError("record length does not match its decision field")
    try:
        decision = json.loads(data[at:].decode())
        produce_id = pid.decode()
    except (ValueError, UnicodeError):
        raise RecordError("record text fields are not valid UTF-8 JSON")
    return {
        "seq": seq,
        "time_ms": time_ms,
        "prev_hash": prev_hash,
        "content_sha256": content,
        "event": event,
        "produce_id": produce_id,
        "decision": decision,
    }


def record_link(data):
    """(seq, prev_hash) of record bytes whose layout holds (version, field lengths),
    without parsing the JSON: what the log checks for every record when it opens."""
    if len(data) < MIN_RECORD_LEN:
        raise RecordError("record too short")
    version, seq, _, prev_hash, _, _ = struct.unpack(_HEAD, data[:_HEAD_LEN])
    n = data[_HEAD_LEN]
    if version != RECORD_VERSION or len(data) < _HEAD_LEN + 3 + n:
        raise RecordError("not a version %d record" % RECORD_VERSION)
    (m,) = struct.unpack("<H", data[_HEAD_LEN + 1 + n:_HEAD_LEN + 3 + n])
    if len(data) != _HEAD_LEN + 3 + n + m:
        raise RecordError("record length does not match its fields")
    return seq, prev_hash


def record_hash(data):
    return hashlib.sha256(data).digest()


def verify_chain(records, prev_hash=GENESIS_HASH, prev_seq=None):
    """Check a run of record bytes against the hash of the record before them.

    Returns None when every record parses, links to its predecessor and numbers follow
    on; otherwise (index, seq, reason) naming the first record that cannot be trusted.
    A broken link between records s-1 and s is charged to record s-1 (index may then
    be -1: the record before this run): an altered record changes its own hash, which
    the next record's link no longer matches.
    """
    for index, data in enumerate(records):
        try:
            rec = decode_record(data)
        except RecordError as err:
            return (index, None if prev_seq is None else prev_seq + 1, "record does not parse: %s" % err)
        if prev_seq is not None and rec["seq"] != prev_seq + 1:
            return (index, rec["seq"], "sequence jumps from %d to %d" % (prev_seq, rec["seq"]))
        if rec["prev_hash"] != prev_hash:
            return (index - 1, rec["seq"] - 1, "record %d does not match the hash that record %d holds for it: "
                    "record %d was altered (or the link in record %d)" % (rec["seq"] - 1, rec["seq"], rec["seq"] - 1, rec["seq"]))
        prev_hash = record_hash(data)
        prev_seq = rec["seq"]
    return None
