"""Merkle tree over the audit log, as Certificate Transparency hashes it (RFC 9162 §2.1).

    leaf hash   = SHA-256(0x00 || record bytes)
    node hash   = SHA-256(0x01 || left || right)
    MTH({})     = SHA-256("")
    MTH(D[n])   = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

Leaf i is the record with seq i + 1, so a tree of size n holds records 1..n. A signed
tree head (size, root) then commits to every record up to n at once: the host checks
that a record is in it (inclusion proof, log2 n hashes) and that a newer head extends
an older one without changing anything before it (consistency proof).

`MerkleTree` is the device's incremental copy: per level, the hashes of the complete,
aligned subtrees (level 0 the leaf hashes, level j those of 2^j leaves), so an append
costs amortised two hashes and any MTH(D[a:b]) the proofs ask for is a walk of at most
2 log2 n stored nodes. At 1 M records that is 2 M hashes, 64 MB: a Raspberry Pi holds
it; a microcontroller keeps fewer records per log file.

MicroPython-portable: hashlib, bytes and ints only.
"""

import hashlib

HASH_LEN = 32
LEAF_PREFIX = b"\x00"   # RFC 9162 §2.1.1
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


class MerkleError(ValueError):
    pass


def leaf_hash(data):
    return hashlib.sha256(LEAF_PREFIX + bytes(data)).digest()


def node_hash(left, right):
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n):
    """The largest power of two smaller than n (n >= 2)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


class _Proofs:
    """Roots and RFC 9162 proofs, from `size` and `subtree(start, end)` alone."""

    def root(self, size=None):
        size = self.size if size is None else size
        self._check_size(size)
        return self.subtree(0, size)

    def _check_size(self, size):
        if not 0 <= size <= self.size:
            raise MerkleError("tree size %d is not between 0 and %d" % (size, self.size))

    def inclusion_proof(self, index, size=None):
        """RFC 9162 §2.1.3.1 PATH(index, D[size]): the audit path, leaf to root."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise MerkleError("leaf %d is not in a tree of size %d" % (index, size))
        path = []
        start, end = 0, size
        while end - start > 1:  # descend to the leaf, collecting the sibling subtrees
            k = _split(end - start)
            if index < start + k:
                path.append(self.subtree(start + k, end))
                end = start + k
            else:
                path.append(self.subtree(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, old_size, size=None):
        """RFC 9162 §2.1.4.1 PROOF(old_size, D[size])."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= old_size <= size:
            raise MerkleError("old tree size %d is not between 0 and %d" % (old_size, size))
        if old_size == 0 or old_size == size:
            return []
        return self._subproof(old_size, 0, size, True)

    def _subproof(self, m, start, end, complete):
        n = end - start
        if m == n:
            return [] if complete else [self.subtree(start, end)]
        k = _split(n)
        if m <= k:
            return self._subproof(m, start, start + k, complete) + [self.subtree(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self.subtree(start, start + k)]


def _compact_nodes(size):
    """(start, end) of the complete subtrees that make up D[0:size], largest first:
    the nodes a CompactRange of `size` leaves holds."""
    nodes = []
    start = 0
    bit = 1
    while bit << 1 <= size:
        bit <<= 1
    while bit:
        if size & bit:
            nodes.append((start, start + bit))
            start += bit
        bit >>= 1
    return nodes


class MerkleTree(_Proofs):
    """Leaf hashes appended one at a time; roots and proofs for any size up to `size`."""

    def __init__(self):
        self._levels = [bytearray()]  # level j: hashes of subtrees [i*2^j, (i+1)*2^j)

    @property
    def size(self):
        return len(self._levels[0]) // HASH_LEN

    def append_leaf_hash(self, h):
        if len(h) != HASH_LEN:
            raise MerkleError("a leaf hash is 32 bytes")
        level = 0
        while True:
            row = self._levels[level]
            row.extend(h)
            count = len(row) // HASH_LEN
            if count & 1:
                return
            h = node_hash(bytes(row[-2 * HASH_LEN:-HASH_LEN]), bytes(row[-HASH_LEN:]))
            level += 1
            if level == len(self._levels):
                self._levels.append(bytearray())

    def append(self, record):
        self.append_leaf_hash(leaf_hash(record))

    def leaf(self, index):
        return bytes(self._levels[0][index * HASH_LEN:(index + 1) * HASH_LEN])

    def _stored(self, level, index):
        row = self._levels[level]
        return bytes(row[index * HASH_LEN:(index + 1) * HASH_LEN])

    def subtree(self, start, end):
        """MTH(D[start:end]) for the ranges RFC 9162's recursion visits: `start` a multiple
        of the largest power of two not above end - start (always so in root, PATH and
        PROOF, which split at powers of two from 0)."""
        n = end - start
        if n <= 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:
            level = 0
            while (1 << level) < n:
                level += 1
            if start % n == 0:
                return self._stored(level, start >> level)
        k = _split(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def compact_range(self, size=None):
        """The CompactRange of D[0:size]: what a host needs, with the leaves after it,
        to recompute every root and proof past `size` once the first `size` records are
        pruned (the device serves it with its signed head)."""
        size = self.size if size is None else size
        self._check_size(size)
        return CompactRange(size, [self.subtree(a, b) for a, b in _compact_nodes(size)])


class PrunedTree(_Proofs):
    """A tree whose first leaves are known only by their compact range (pruned on the
    device before this host pulled them), then whole leaves: roots and proofs for any
    size and leaf past the prefix. The prefix is untrusted until a root computed
    through it equals a signed one."""

    def __init__(self, prefix):
        self.first = prefix.size
        self._nodes = dict(zip(_compact_nodes(prefix.size), prefix.hashes))
        self._nodes[(0, prefix.size)] = prefix.root()  # the root at the prefix's own size
        self._leaves = []

    @property
    def size(self):
        return self.first + len(self._leaves)

    def append_leaf_hash(self, h):
        if len(h) != HASH_LEN:
            raise MerkleError("a leaf hash is 32 bytes")
        self._leaves.append(h)

    def append(self, record):
        self.append_leaf_hash(leaf_hash(record))

    def subtree(self, start, end):
        # Every range RFC 9162's recursion visits that lies wholly in the prefix is one
        # of its compact nodes (the ranges split at powers of two from 0); ranges
        # across the boundary split down to them and to whole leaves.
        if (start, end) in self._nodes:
            return self._nodes[(start, end)]
        n = end - start
        if n <= 0:
            return EMPTY_ROOT
        if start < self.first and end <= self.first:
            raise MerkleError("leaves %d..%d were pruned: only the whole prefix is known" % (start, end - 1))
        if n == 1:
            return self._leaves[start - self.first]
        k = _split(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def inclusion_proof(self, index, size=None):
        if index < self.first:
            raise MerkleError("leaf %d was pruned before this host had it" % index)
        return _Proofs.inclusion_proof(self, index, size)


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 §2.1.3.2: True when `proof` shows that leaf hash `leaf` is leaf `index`
    of the tree of `size` leaves whose root is `root`."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if len(p) != HASH_LEN or sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(old_size, size, old_root, root, proof):
    """RFC 9162 §2.1.4.2: True when `proof` shows that the tree of `size` leaves with
    root `root` extends the tree of `old_size` leaves with root `old_root`."""
    if not 0 <= old_size <= size:
        return False
    if old_size == size:
        return not proof and old_root == root
    if old_size == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof:
        return False
    for p in proof:
        if len(p) != HASH_LEN:
            return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == root and sn == 0


class CompactRange:
    """The right edge of a tree: the roots of its complete subtrees, largest first (at
    most log2 n hashes). Enough to append leaves and compute the root, nothing more:
    what a host keeps between pulls to check new records against a signed head."""

    def __init__(self, size=0, hashes=()):
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise MerkleError("a compact range's size is a non-negative integer, not %r" % (size,))
        self.size = size
        self.hashes = list(hashes)
        if any(not isinstance(h, bytes) or len(h) != HASH_LEN for h in self.hashes):
            raise MerkleError("a compact range holds 32-byte hashes")
        expected = 0
        while size:
            expected += size & 1
            size >>= 1
        if len(self.hashes) != expected:
            raise MerkleError("a compact range of %d leaves holds %d hashes, not %d"
                              % (self.size, expected, len(self.hashes)))

    def append_leaf_hash(self, h):
        self.hashes.append(h)
        self.size += 1
        s = self.size
        while not s & 1:  # each trailing zero of the new size completes one more subtree
            right = self.hashes.pop()
            self.hashes[-1] = node_hash(self.hashes[-1], right)
            s >>= 1

    def append(self, record):
        self.append_leaf_hash(leaf_hash(record))

    def root(self):
        if not self.hashes:
            return EMPTY_ROOT
        r = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            r = node_hash(h, r)
        return r
