"""Signed checkpoints: the device's word, under its identity key, on what its log holds.

A checkpoint is a tree head (docs/FORMATS.md, "Signed checkpoints"):

    {"version": 1, "serial": "...", "size": N, "root": "<hex MTH of records 1..N>",
     "time_ms": <device clock>, "counter": <checkpoint number, +1 each time>,
     "host_time_ms": <the collector's clock when it asked, or null>}

signed with ECDSA P-256 / SHA-256 by the device identity key over

    b"synthseal-checkpoint/1\\x00" + the body as JSON, keys sorted, no spaces

(the label keeps a checkpoint signature from ever passing as a session signature, which
signs b"device" + transcript). The device makes one at boot, periodically while it
seals, and at every pull (then with the host's time beside its own, so an auditor can
correct a wrong device clock).

Where they are kept: `<state>/log/checkpoints.jsonl`, one signed checkpoint per line,
appended and fsynced; past 1 MiB only the newest 64 are kept (CheckpointStore). A separate file rather than log records, so a
checkpoint never changes the tree it signs and a pull that finds nothing new adds no
record; its last line is what the agent checks the log against at start (a log shorter
than its last signed head, or with another root at that size, is a rollback).

One definition for both ends: the host verifies with `verify_checkpoint` from here.
"""

import json
import os
import threading
import time

from .core import merkle
from .durable import atomic_write

CHECKPOINT_VERSION = 2
SIGNING_LABEL = b"synthseal-checkpoint/1\x00"
# Version 2 adds first_seq: the first record the device still held when it signed, so
# a host can tell records pruned before its first pull from records deleted from its
# own database. Version 1 heads (no first_seq) still verify; first_seq then counts as 1.
_FIELDS = {1: ("version", "serial", "size", "root", "time_ms", "counter", "host_time_ms"),
           2: ("version", "serial", "size", "root", "time_ms", "counter", "host_time_ms", "first_seq")}


class CheckpointError(Exception):
    """A checkpoint that does not parse or whose signature does not hold."""


def canonical(body):
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def signing_bytes(body):
    return SIGNING_LABEL + canonical(body)


def parse_signed(signed):
    """Check the shape of {"checkpoint": body, "signature": hex}; return (body, signature bytes)."""
    if not isinstance(signed, dict) or not isinstance(signed.get("checkpoint"), dict):
        raise CheckpointError("a signed checkpoint is an object with 'checkpoint' and 'signature'")
    body = signed["checkpoint"]
    fields = _FIELDS.get(body.get("version")) if type(body.get("version")) is int else None
    if fields is None or sorted(body) != sorted(fields):
        raise CheckpointError("checkpoint fields are not those of version 1 or 2: %s" % sorted(body))
    for name in ("size", "time_ms", "counter") + (("first_seq",) if "first_seq" in body else ()):
        if not isinstance(body[name], int) or isinstance(body[name], bool) or body[name] < 0:
            raise CheckpointError("checkpoint %s must be a non-negative integer" % name)
    if body["host_time_ms"] is not None and not isinstance(body["host_time_ms"], int):
        raise CheckpointError("checkpoint host_time_ms must be an integer or null")
    try:
        root = bytes.fromhex(body["root"])
        signature = bytes.fromhex(signed.get("signature"))
    except (TypeError, ValueError):
        raise CheckpointError("checkpoint root or signature is not hex")
    if len(root) != merkle.HASH_LEN or not isinstance(body["serial"], str):
        raise CheckpointError("checkpoint root must be 32 bytes and serial a string")
    return body, signature


def verify_checkpoint(signed, public_key):
    """Return the checkpoint body if `signed` is signed by `public_key` (the identity
    certificate's key, checked by the caller against the vendor root); else raise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    body, signature = parse_signed(signed)
    try:
        public_key.verify(signature, signing_bytes(body), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        raise CheckpointError("checkpoint %d (size %d) is not signed by this device's identity key"
                              % (body["counter"], body["size"]))
    return body


class CheckpointStore:
    """The device's signed checkpoints, appended one JSON line each, fsynced.

    The device itself needs only the newest (what the log must still hold at start);
    every one it gave is kept by the host that asked. So the file is bounded: past
    MAX_BYTES it is rewritten with the newest KEEP lines (atomically: a power cut
    leaves the old file or the new one), and a collector asking again and again cannot
    fill the device's storage."""

    MAX_BYTES = 1 << 20   # about 2,000 checkpoints
    KEEP = 64
    _TAIL = 16384         # a checkpoint line is under 600 bytes

    def __init__(self, path):
        self.path = str(path)
        self._lock = threading.Lock()

    @staticmethod
    def _parse(lines):
        out = []
        for line in lines:
            try:
                signed = json.loads(line.decode())
            except (ValueError, UnicodeError):
                continue  # a torn line (a power cut mid-append) is skipped, not cut
            if isinstance(signed, dict) and isinstance(signed.get("checkpoint"), dict):
                out.append(signed)
        return out

    def all(self):
        """Every whole, parseable checkpoint line in order."""
        try:
            with open(self.path, "rb") as f:
                return self._parse(f.read().split(b"\n"))
        except FileNotFoundError:
            return []

    def last(self):
        """The newest checkpoint: read from the file's tail, in growing windows until a
        whole checkpoint line is found (junk at the end never hides the ones before it)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                window = self._TAIL
                while True:
                    start = max(0, size - window)
                    f.seek(start)
                    lines = f.read(size - start).split(b"\n")
                    if start > 0:
                        lines = lines[1:]  # the first piece may be the end of a longer line
                    signed = self._parse(lines)
                    if signed or start == 0:
                        return signed[-1] if signed else None
                    window *= 4
        except FileNotFoundError:
            return None

    def append(self, signed):
        data = canonical(signed) + b"\n"
        with open(self.path, "ab") as f:
            if f.tell() > 0:
                with open(self.path, "rb") as r:
                    r.seek(-1, 2)
                    if r.read(1) != b"\n":
                        data = b"\n" + data  # after a torn line: start a fresh one, keep the torn bytes
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the checkpoint is on storage before it is served
            size = f.tell()
        if size > self.MAX_BYTES:
            kept = self.all()[-self.KEEP:]
            atomic_write(self.path, b"".join(canonical(c) + b"\n" for c in kept))


def sign_checkpoint(state, log, host_time_ms=None, clock=time.time):
    """Sign the log's current tree head with the identity key, keep it, return it."""
    store = state.checkpoints()
    with store._lock:
        last = store.last()
        problem = check_log_against_checkpoint(log, last)
        if problem is not None:  # never sign over a rollback: that would launder it
            raise CheckpointError(problem)
        size, root = log.tree_head()
        counter = (last["checkpoint"]["counter"] + 1) if last else 1
        body = {"version": CHECKPOINT_VERSION, "serial": state.serial(), "size": size, "root": root.hex(),
                "first_seq": log.first_seq,
                "time_ms": int(clock() * 1000), "counter": counter, "host_time_ms": host_time_ms}
        signed = {"checkpoint": body, "signature": state.sign_identity(SIGNING_LABEL, canonical(body)).hex()}
        store.append(signed)
    return signed


def check_log_against_checkpoint(log, signed):
    """At start: the log must still hold the tree its last signed checkpoint names.
    Returns None, or a one-line report of the rollback."""
    if signed is None:
        return None
    body = signed["checkpoint"]
    size = body["size"]
    have = log.next_seq - 1
    if have < size:
        return ("the audit log holds %d records but the device signed a head of %d records (checkpoint %d): "
                "records %d..%d are gone; the log was rolled back, replaced or lost"
                % (have, size, body["counter"], have + 1, size))
    if size and log.root(size).hex() != body["root"]:
        return ("the audit log's first %d records differ from those the device signed (checkpoint %d): "
                "the log was rewritten" % (size, body["counter"]))
    return None


def answer_request(state, log, request):
    """The CHECKPOINT request (docs/PROTOCOL.md): a fresh signed head, and the
    consistency proof from the head the host saw last."""
    old_size = request.get("old_size", 0)
    host_time_ms = request.get("host_time_ms")
    if not isinstance(old_size, int) or isinstance(old_size, bool) or old_size < 0:
        raise CheckpointError("old_size must be a non-negative integer")
    if host_time_ms is not None and (not isinstance(host_time_ms, int) or isinstance(host_time_ms, bool)
                                     or not 0 <= host_time_ms < 2 ** 63):
        raise CheckpointError("host_time_ms must be milliseconds since 1970 (0 to 2^63-1) or null")
    damage = getattr(log, "damage", None)
    if damage is not None:
        # A log damaged in the middle is never signed again (that would launder the
        # damage). Its verified prefix is still served: the host gets the damage report
        # and the last head the device did sign, and pulls the prefix by its hash chain.
        return {"damaged": damage["message"], "damaged_seq": damage["seq"], "verified_count": log.count,
                "first_seq": log.first_seq, "last_signed": state.checkpoints().last()}
    signed = sign_checkpoint(state, log, host_time_ms)
    size = signed["checkpoint"]["size"]
    proof = log.consistency_proof(old_size, size) if old_size <= size else []
    answer = dict(signed, old_size=old_size, consistency=[h.hex() for h in proof])
    prefix = log.pruned_prefix()
    if prefix is not None:
        # Records 1..prefix.size are gone from the device: a host that never had them
        # needs their compact range (at most log2 n hashes) to recompute the signed root.
        answer["prefix"] = {"size": prefix.size, "hashes": [h.hex() for h in prefix.hashes]}
    return answer
