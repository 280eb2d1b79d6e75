"""The device's append-only audit log file.

Each record (see logrecord.py) is stored as

    u32 length | record bytes | u32 CRC32(record bytes)

and appended with flush + fsync before `append` returns, so a record that was
acknowledged survives a power cut. On open, a torn tail (a partial write interrupted
by power loss) is detected by its length, CRC or chain link, moved aside (its bytes
handed to keep_torn_tail, which stores them, before the cut) and the log continues
after the last whole record; damage in the middle makes the log read-only, never
shorter. Records are never rewritten in place.
"""

import os
import struct
from binascii import crc32

from . import logrecord
from .merkle import MerkleTree

try:
    from os import fsync as _fsync
except ImportError:  # MicroPython: flush() is the durability point its VFS offers
    _fsync = None

_ENTRY_HEAD = "<I"


def _next_entry(data, start):
    """The offset of the first whole entry (a record's length, its CRC holding) at or
    after `start`, or None. A torn write leaves a prefix of one entry, never a whole
    one after it: finding one means records follow the damage."""
    for at in range(start, len(data) - 8 - logrecord.MIN_RECORD_LEN + 1):
        (n,) = struct.unpack(_ENTRY_HEAD, data[at:at + 4])
        if logrecord.MIN_RECORD_LEN <= n <= logrecord.MAX_RECORD_LEN and at + 8 + n <= len(data):
            (crc,) = struct.unpack("<I", data[at + 4 + n:at + 8 + n])
            if crc32(data[at + 4:at + 4 + n]) & 0xFFFFFFFF == crc:
                return at
    return None


class AuditLogError(Exception):
    pass


class LogAdvanced(AuditLogError):
    """Another writer appended first: the records were made for seqs now taken."""


def _write_durably(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        if _fsync is not None:
            _fsync(f.fileno())


def _rename(source, target):
    os.rename(source, target)  # atomic on POSIX (and MicroPython's VFS): the old file or the new
    if _fsync is None:
        return  # MicroPython: its VFS commits the rename itself
    try:  # and durable, in order: the folder's entry is on storage before the next step
        fd = os.open(os.path.dirname(target) or ".", os.O_RDONLY | os.O_DIRECTORY)
    except (AttributeError, OSError):
        return  # no directory handles here
    try:
        _fsync(fd)
    finally:
        os.close(fd)


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
        # The leaf hashes of pruned records, 32 bytes per record from seq 1: with them the
        # Merkle tree, its roots and its proofs stay whole after the records are gone.
        self.pruned_leaves_path = path + ".pruned-leaves"
        self.writable = writable
        self.torn_tail = None
        self.torn_reason = None   # "torn" (an interrupted append) or "damaged" (a changed last record)
        self.damage = None        # {"offset", "seq", "message"}: damage in the middle, the log is read-only
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
        loop and the serial service may run apart).

        An entry is a record only if its length is a record's, its CRC holds, and it
        follows the chain (next seq, previous record's hash). What follows the last such
        record is either
          - a tail no longer than one entry: an interrupted append (torn_reason "torn")
            or a last record whose bytes changed ("damaged"). The owner moves it aside
            (keep_torn_tail gets the bytes first) and cuts it, so appends continue;
          - anything longer: damage in the middle. Nothing is cut: the log becomes
            read-only, `damage` says where, and the verified prefix is still served so
            that a host can pull it."""
        if self.damage is not None:
            return
        with open(self.path, "rb") as f:
            f.seek(self._end)
            data = f.read()
        at = 0
        reason = None
        while at < len(data):
            if at + 4 > len(data):
                reason = "torn"
                break
            (n,) = struct.unpack(_ENTRY_HEAD, data[at:at + 4])
            if not logrecord.MIN_RECORD_LEN <= n <= logrecord.MAX_RECORD_LEN:
                reason = "damaged"
                break
            end = at + 4 + n + 4
            if end > len(data):
                reason = "torn"
                break
            body = data[at + 4:at + 4 + n]
            (crc,) = struct.unpack("<I", data[at + 4 + n:end])
            if crc32(body) & 0xFFFFFFFF != crc or not self._follows(body):
                reason = "damaged"
                break
            if not self._offsets:
                self.first_seq = logrecord.record_link(body)[0]
                self._load_pruned_leaves()
            self._offsets.append(self._end + at)
            self.head_hash = logrecord.record_hash(body)
            self.tree.append(body)
            at = end
        rest = len(data) - at
        resumes = _next_entry(data, at + 1) if rest else None
        if resumes is not None:
            self.damage = {"offset": self._end + at, "seq": self.next_seq, "message": (
                "audit log %s is damaged at byte %d (record %d), and records follow at byte %d; it is read-only: "
                "its first %d records are still served, nothing is cut; pull it with the host tool and keep a copy"
                % (self.path, self._end + at, self.next_seq, self._end + resumes, self.count))}
            self.writable = False
        elif rest and self.writable:
            self.torn_tail = (self._end + at, bytes(data[at:]))
            self.torn_reason = reason
            if self._keep_torn_tail is not None:
                self._keep_torn_tail(self._end + at, self.torn_tail[1])  # durable before the cut
            with open(self.path, "r+b") as f:
                f.seek(self._end + at)
                try:
                    f.truncate()
                except AttributeError:  # no truncate on some MicroPython ports
                    pass
                f.flush()
                if _fsync is not None:
                    _fsync(f.fileno())
        self._end += at

    def _load_pruned_leaves(self):
        """A log that starts after seq 1 was pruned: its tree begins with the kept leaf
        hashes of the records before it (the file may hold more, written by a prune
        that a power cut stopped before the log itself was rewritten)."""
        if self.first_seq == 1 or self.tree.size:
            return
        try:
            with open(self.pruned_leaves_path, "rb") as f:
                leaves = f.read((self.first_seq - 1) * 32)
        except OSError:
            return  # no leaves: tree_head() says the tree cannot be built
        if len(leaves) == (self.first_seq - 1) * 32:
            for i in range(0, len(leaves), 32):
                self.tree.append_leaf_hash(leaves[i:i + 32])

    def prune(self, count):
        """Drop the first `count` records (the caller decided they may go: acknowledged
        by a collector and past the retention period). First the leaf hashes of every
        record up to the new first one are written aside, then the log is rewritten
        without those records and renamed into place: a power cut leaves the old log or
        the new one, and either loads with a whole tree."""
        if self.damage is not None or not self.writable:
            raise AuditLogError("audit log %s is read-only: nothing is pruned" % self.path)
        # The newest record always stays: the log's first record is what says where
        # its seqs continue after a prune.
        count = min(count, self.count - 1)
        if count <= 0:
            return 0
        self._check_tree()
        new_first = self.first_seq + count
        leaves = b"".join(self.tree.leaf(i) for i in range(new_first - 1))
        _write_durably(self.pruned_leaves_path + ".tmp", leaves)
        _rename(self.pruned_leaves_path + ".tmp", self.pruned_leaves_path)
        cut = self._offsets[count]
        with open(self.path, "rb") as f:
            f.seek(cut)
            kept = f.read(self._end - cut)
        _write_durably(self.path + ".tmp", kept)
        _rename(self.path + ".tmp", self.path)
        self._offsets = [offset - cut for offset in self._offsets[count:]]
        self._end -= cut
        self.first_seq = new_first
        return count

    def _follows(self, body):
        """The record's layout holds and it takes the next seq. (Its hash link is the
        host's to check: a forged link is evidence to show, not storage damage to hide.)"""
        try:
            seq, _ = logrecord.record_link(body)
        except logrecord.RecordError:
            return False
        return seq == self.next_seq if self._offsets else seq >= 1

    @property
    def count(self):
        return len(self._offsets)

    @property
    def next_seq(self):
        return self.first_seq + len(self._offsets)

    def append(self, time_ms, content_sha256, event, produce_id, decision):
        """Append one record durably; return (seq, record bytes)."""
        return self.append_many([(time_ms, content_sha256, event, produce_id, decision)])[0]

    def append_many(self, items, expect_seq=None):
        """Group commit: append several records, each a tuple of append's arguments,
        with one write and one fsync; all are durable when it returns, none is counted
        before. Returns [(seq, record bytes)]. With `expect_seq`, nothing is written
        (LogAdvanced) unless the first record takes that seq: a writer that numbered
        its content before appending checks and appends in one step."""
        if expect_seq is not None and expect_seq != self.next_seq:
            raise LogAdvanced("the audit log is at seq %d, not %d: another writer appended first"
                              % (self.next_seq, expect_seq))
        if self.damage is not None:
            raise AuditLogError(self.damage["message"])
        if not self.writable:
            raise AuditLogError("audit log %s is open read-only: only the agent appends" % self.path)
        seq, head = self.next_seq, self.head_hash
        made, entries = [], []
        for time_ms, content_sha256, event, produce_id, decision in items:
            record = logrecord.encode_record(seq, time_ms, head, content_sha256, event, produce_id, decision)
            entries.append(struct.pack(_ENTRY_HEAD, len(record)) + record
                           + struct.pack("<I", crc32(record) & 0xFFFFFFFF))
            made.append((seq, record))
            seq, head = seq + 1, logrecord.record_hash(record)
        data = b"".join(entries)
        with open(self.path, "r+b") as f:
            f.seek(self._end)
            f.write(data)
            f.flush()
            if _fsync is not None:
                _fsync(f.fileno())  # the records are on storage before anyone is told they exist
        for entry, (_, record) in zip(entries, made):
            self._offsets.append(self._end)
            self._end += len(entry)
            self.tree.append(record)
        self.head_hash = head
        return made

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

    def pruned_prefix(self):
        """The compact range of the pruned records 1..first_seq-1 (merkle.CompactRange),
        or None when nothing was pruned: with it a host that never had those records
        still recomputes every signed root."""
        if self.first_seq == 1:
            return None
        self._check_tree()
        return self.tree.compact_range(self.first_seq - 1)

    def _check_tree(self):
        if self.tree.size != self.next_seq - 1:
            raise AuditLogError("the log starts at seq %d and the leaf hashes of the records before it are missing: "
                                "its tree cannot be built" % self.first_seq)

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
