"""Retention: which audit records the device may prune, and the collector's
acknowledgement that makes them prunable.

A record may go only when BOTH hold (DESIGN: "Nothing is lost"):
  - a collector acknowledged it: after a pull that verified the chain, the signed head
    and its consistency proof, the host sends ACK {"size", "root"} for the head it
    verified; the device checks that its own log has that root at that size and keeps
    the largest acknowledged size durably (`<state>/log/ack.json`, written atomically;
    it never goes back);
  - it is older than the signed configuration's retention_days (never fewer than
    credentials.MIN_RETENTION_DAYS = 180, whatever the file says), by the device clock.
Only a prefix goes: pruning stops at the first record that fails either test, so the
log stays one unbroken run and an unacknowledged record is never dropped.

`prunable_count` is the decision; `prune_now` cuts the log (AuditLog.prune keeps the
pruned records' leaf hashes, so the Merkle tree, its roots and its proofs stay whole)
and logs what it did. The agent prunes at start and after every acknowledgement.
"""

import json

from . import credentials
from .durable import atomic_write

DAY_MS = 86400 * 1000


class RetentionError(Exception):
    pass


def retention_ms(config):
    """The retention period from a configuration, in milliseconds, never below the floor."""
    days = config.get("retention_days", credentials.DEFAULT_RETENTION_DAYS) if config else None
    if not isinstance(days, int) or isinstance(days, bool):
        days = credentials.DEFAULT_RETENTION_DAYS
    return max(days, credentials.MIN_RETENTION_DAYS) * DAY_MS


def prunable_count(records, acked_size, retention, now_ms):
    """How many records at the start of `records` ((seq, time_ms) pairs in seq order)
    may be pruned at device time `now_ms`: acknowledged (seq <= acked_size) and older
    than `retention` ms; the count stops at the first record that is not both."""
    count = 0
    for seq, time_ms in records:
        if seq > acked_size or now_ms - time_ms <= retention:
            break
        count += 1
    return count


class AckStore:
    """The largest log size a collector acknowledged, kept durably."""

    def __init__(self, path):
        self.path = str(path)

    def load(self):
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {"size": 0, "root": None}
        except ValueError:
            return {"size": 0, "root": None}  # an unreadable ack acknowledges nothing: prune nothing
        if not isinstance(data.get("size"), int) or data["size"] < 0:
            return {"size": 0, "root": None}
        return data

    def acked_size(self):
        return self.load()["size"]

    def acked_size_by(self, time_ms):
        """The largest size already acknowledged at device time `time_ms`. Pruning asks
        for the size acknowledged a whole retention period ago, so a record whose own
        time is wrong (a clock that read 1970 after a reboot) is still kept that long
        after a collector took it."""
        history = self.load().get("history") or []
        sizes = [size for size, at in history if isinstance(size, int) and isinstance(at, int) and at <= time_ms]
        return max(sizes or [0])

    def record(self, size, root_hex, time_ms, operator=None):
        """Keep the acknowledgement if it is larger than the last (with the device time
        it was first made); return the size kept."""
        current = self.load()
        if size <= current["size"]:
            return current["size"]
        history = (current.get("history") or [])[-999:] + [[size, time_ms]]
        atomic_write(self.path, json.dumps({"size": size, "root": root_hex, "time_ms": time_ms,
                                            "operator": operator, "history": history}, sort_keys=True).encode())
        return size


def answer_ack(store, log, request, now_ms, operator=None):
    """The ACK request (collector): {"size": N, "root": hex} names a head the host
    verified; the device's log must hold that root at that size."""
    if not isinstance(request, dict):
        raise RetentionError("ACK body must be a JSON object")
    size, root = request.get("size"), request.get("root")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or not isinstance(root, str):
        raise RetentionError("ACK needs an integer size and the hex root of the head the host verified")
    have = log.next_seq - 1
    if size > have:
        raise RetentionError("ACK for %d records, but the log holds %d: nothing acknowledged" % (size, have))
    if log.root(size).hex() != root:
        raise RetentionError("ACK for a tree of %d records whose root is not this log's: nothing acknowledged" % size)
    return {"acked_size": store.record(size, root, now_ms, operator)}


def prunable_now(state, log, now_ms):
    """The records the device may prune now (a count from the log's first record). The
    scan stops at the first record that may not go, so it reads little: records are in
    time order, and only acknowledged ones are looked at."""
    from .core import logrecord
    config = state.config() if state.is_provisioned() else None
    retention = retention_ms(config)
    # Both ages must pass: the record's own time, and the time since a collector
    # acknowledged it (by the device clock at that moment), so one wrong clock reading
    # cannot shorten the period.
    acked = state.acks().acked_size_by(now_ms - retention)
    count, seq = 0, log.first_seq
    while seq <= acked:
        batch = log.read(seq, min(256, acked - seq + 1))
        if not batch:
            break
        records = [(r["seq"], r["time_ms"]) for r in map(logrecord.decode_record, batch)]
        n = prunable_count(records, acked, retention, now_ms)
        count += n
        if n < len(records):
            break
        seq += n
    return count


def prune_now(state, log, now_ms):
    """Prune what may go, and say so in the log itself: the record names the range and
    the acknowledgement and period that allowed it. Returns the number pruned."""
    from .core import logrecord
    count = prunable_now(state, log, now_ms)
    if count == 0:
        return 0
    first = log.first_seq
    log.prune(count)
    config = state.config() if state.is_provisioned() else None
    log.append(now_ms, b"\x00" * 32, logrecord.EVENT_PRUNE, "", {
        "action": "prune", "first_seq": first, "last_seq": first + count - 1,
        "acked_size": state.acks().acked_size(), "retention_days": retention_ms(config) // DAY_MS})
    return count
