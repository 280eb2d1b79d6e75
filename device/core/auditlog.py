"""The device's append-only audit log file.

Each record (see logrecord.py) is stored as

    u32 length | record bytes | u32 CRC32(record bytes)

and appended with flush + fsync before `append` returns, so a record that was
acknowledged survives a power cut. On open, a torn tail (a partial write interrupted
by power loss) is detected by its length or CRC and cut off; everything before it is
kept. Records are never rewritten in place.
"""

import struct
from binascii import crc32

from . import logrecord
from .merkle import MerkleTree

try:
    from os import fsync as _fsync
except ImportError:  # MicroPython: flush() is the durability point its VFS offers
    _fsync = None

_ENTRY_HEAD = "<I"
_MAX_RECORD = 1 << 20


class AuditLogError(Exception):
    pass


# "No such file": ENOENT is 2 on Linux and MicroPython ports, 44 on the WebAssembly
# port's filesystem (WASI numbering).
_NO_SUCH_FILE = (2, 44)


class AuditLog:
    """writable=False opens a log that another process owns: it never creates, cuts or
    repairs the file, and an incomplete tail is simply not read."""

    def __init__(self, path, writable=True, keep_torn_tail=None):
        """keep_torn_tail(offset, data): called with a torn tail's bytes before they are
        cut, to keep them as evidence; torn_tail is then (offset, data)."""
        self.path = path
        self.writable = writable
        self.torn_tail = None
        self._keep_torn_tail = keep_torn_tail
        self._offsets = []  # file offset of each record's entry, in seq order
        self.first_seq = 1
        self.head_hash = logrecord.GENESIS_HASH
        self.tree = MerkleTree()  # RFC 9162 tree over the records, leaf i = seq i + 1
        self._end = 0
        self._load()

    def _load(self):
        try:
            f = open(self.path, "rb")
        except OSError as err:
            # Only a log that does not exist yet is created; any other error (EIO, EACCES)
            # must never reopen an existing log for writing, which would empty it.
            if not self.writable or not err.args or err.args[0] not in _NO_SUCH_FILE:
                raise
            open(self.path, "wb").close()
            return
        f.close()
        self.refresh()

    def refresh(self):
        """Take in records appended by another process since the last look (the capture
        loop and the serial service may run apart). Cuts a torn tail; refuses a log
        damaged in the middle rather than truncating good records after the damage."""
        with open(self.path, "rb") as f:
            f.seek(self._end)
            data = f.read()
        at = 0
        while at + 4 <= len(data):
            (n,) = struct.unpack(_ENTRY_HEAD, data[at:at + 4])
            end = at + 4 + n + 4
            if n > _MAX_RECORD or end > len(data):
                break
            body = data[at + 4:at + 4 + n]
            (crc,) = struct.unpack("<I", data[at + 4 + n:end])
            if crc32(body) & 0xFFFFFFFF != crc:
                if end < len(data):
                    raise AuditLogError(
                        "audit log %s is damaged at byte %d (record %d) and has records after it; "
                        "refusing to cut them off: pull it with the host tool and keep a copy"
                        % (self.path, self._end + at, self.next_seq))
                break
            if not self._offsets:
                self.first_seq = logrecord.decode_record(body)["seq"]
            self._offsets.append(self._end + at)
            self.head_hash = logrecord.record_hash(body)
            self.tree.append(body)
            at = end
        if at != len(data) and self.writable:
            # Torn tail from an interrupted write: kept aside first, then dropped so that
            # appends continue the chain.
            self.torn_tail = (self._end + at, bytes(data[at:]))
            if self._keep_torn_tail is not None:
                self._keep_torn_tail(self._end + at, self.torn_tail[1])
            with open(self.path, "r+b") as f:
                f.seek(self._end + at)
                try:
                    f.truncate()
                except AttributeError:  # no truncate on some MicroPython ports
                    pass
        self._end += at

    @property
    def count(self):
        return len(self._offsets)

    @property
    def next_seq(self):
        return self.first_seq + len(self._offsets)

    def append(self, time_ms, content_sha256, event, produce_id, decision):
        """Append one record durably; return (seq, record bytes)."""
        if not self.writable:
            raise AuditLogError("audit log %s is open read-only: only the agent appends" % self.path)
        seq = self.next_seq
        record = logrecord.encode_record(
            seq, time_ms, self.head_hash, content_sha256, event, produce_id, decision)
        entry = struct.pack(_ENTRY_HEAD, len(record)) + record + struct.pack(
            "<I", crc32(record) & 0xFFFFFFFF)
        with open(self.path, "r+b") as f:
            f.seek(self._end)
            f.write(entry)
            f.flush()
            if _fsync is not None:
                _fsync(f.fileno())
        self._offsets.append(self._end)
        self._end += len(entry)
        self.head_hash = logrecord.record_hash(record)
        self.tree.append(record)
        return seq, record

    def tree_head(self):
        """(size, root): the Merkle tree over records 1..size, size = the last seq."""
        self._check_tree()
        return self.tree.size, self.tree.root()

    def root(self, size):
        self._check_tree()
        return self.tree.root(size)

    def consistency_proof(self, old_size, size):
        self._check_tree()
        return self.tree.consistency_proof(old_size, size)

    def inclusion_proof(self, seq, size):
        self._check_tree()
        return self.tree.inclusion_proof(seq - 1, size)

    def _check_tree(self):
        if self.first_seq != 1:
            raise AuditLogError("the log starts at seq %d: its tree needs the records before it" % self.first_seq)

    def read(self, start_seq, max_count, fits=None):
        """Return record bytes from start_seq on: at most max_count records and, if
        `fits` is given, only as many as fits(list of record lengths) accepts."""
        index = start_seq - self.first_seq
        if index < 0:
            raise AuditLogError("records before seq %d are no longer on the device" % self.first_seq)
        out = []
        lengths = []
        with open(self.path, "rb") as f:
            for offset in self._offsets[index:index + max_count]:
                f.seek(offset)
                (n,) = struct.unpack(_ENTRY_HEAD, f.read(4))
                if fits is not None and not fits(lengths + [n]):
                    break
                out.append(f.read(n))
                lengths.append(n)
        return out
