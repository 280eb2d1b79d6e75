"""The log's Merkle tree is RFC 9162's: its roots match the definition written out here
and Certificate Transparency's published vectors, and its inclusion and consistency
proofs verify exactly when they should."""

import hashlib

import pytest

from hypothesis import given, settings, strategies as st

from synthseal.device.core import merkle
from synthseal.device.core.merkle import MerkleTree, verify_consistency, verify_inclusion


# -- RFC 9162 §2.1.1, written out directly (no caching, no shared code with merkle.py) --
def rfc_mth(entries):
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + rfc_mth(entries[:k]) + rfc_mth(entries[k:])).digest()


def rfc_path(m, entries):  # §2.1.3.1
    n = len(entries)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return rfc_path(m, entries[:k]) + [rfc_mth(entries[k:])]
    return rfc_path(m - k, entries[k:]) + [rfc_mth(entries[:k])]


def rfc_sides(m, n):
    """Which side each sibling of leaf m lies on, leaf to root, in a tree of n leaves."""
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    return rfc_sides(m, k) + ["right"] if m < k else rfc_sides(m - k, n - k) + ["left"]


def rfc_subproof(m, entries, b):  # §2.1.4.1
    n = len(entries)
    if m == n:
        return [] if b else [rfc_mth(entries)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return rfc_subproof(m, entries[:k], b) + [rfc_mth(entries[k:])]
    return rfc_subproof(m - k, entries[k:], False) + [rfc_mth(entries[:k])]


def tree_of(entries):
    tree = MerkleTree()
    for e in entries:
        tree.append(e)
    return tree


# -- Certificate Transparency's test data (RFC 6962 leaves, as used across CT implementations)
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
CT_PATHS = {(0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                     "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                     "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
            (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                     "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                     "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
            (0, 1): []}
CT_CONSISTENCY = {(1, 1): [],
                  (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                           "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                           "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
                  (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                           "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                           "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
                  (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                           "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]}


def test_roots_match_certificate_transparency_vectors():
    tree = MerkleTree()
    assert tree.root() == hashlib.sha256(b"").digest()
    for n, leaf in enumerate(CT_LEAVES, 1):
        tree.append(leaf)
        assert tree.root().hex() == CT_ROOTS[n - 1]
    for n in range(1, 9):  # a historical root from the full tree, too
        assert tree.root(n).hex() == CT_ROOTS[n - 1]


def test_proofs_match_certificate_transparency_vectors():
    tree = tree_of(CT_LEAVES)
    for (index, size), want in CT_PATHS.items():
        assert [h.hex() for h in tree.inclusion_proof(index, size)] == want
        assert verify_inclusion(index, size, merkle.leaf_hash(CT_LEAVES[index]),
                                [bytes.fromhex(h) for h in want], bytes.fromhex(CT_ROOTS[size - 1]))
    for (old, size), want in CT_CONSISTENCY.items():
        assert [h.hex() for h in tree.consistency_proof(old, size)] == want
        assert verify_consistency(old, size, bytes.fromhex(CT_ROOTS[old - 1]), bytes.fromhex(CT_ROOTS[size - 1]),
                                  [bytes.fromhex(h) for h in want])


# Distinct entries, as log records are (each holds its own seq): with two equal leaves
# swapping them is no change at all.
entries_st = st.lists(st.binary(max_size=12), min_size=1, max_size=70, unique=True)


@settings(max_examples=150, deadline=None)
@given(entries_st)
def test_tree_agrees_with_rfc_definition_at_every_size(entries):
    tree = tree_of(entries)
    for n in range(len(entries) + 1):
        assert tree.root(n) == rfc_mth(entries[:n])


@settings(max_examples=150, deadline=None)
@given(entries_st, st.data())
def test_inclusion_proofs_verify_and_fail_for_anything_wrong(entries, data):
    tree = tree_of(entries)
    size = data.draw(st.integers(1, len(entries)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = tree.inclusion_proof(index, size)
    assert proof == rfc_path(index, entries[:size])
    root = rfc_mth(entries[:size])
    leaf = merkle.leaf_hash(entries[index])
    assert verify_inclusion(index, size, leaf, proof, root)
    # a wrong leaf, index, size or root, or an altered proof, never verifies
    assert not verify_inclusion(index, size, merkle.leaf_hash(entries[index] + b"x"), proof, root)
    assert not verify_inclusion(index, size, leaf, proof, hashlib.sha256(root).digest())
    # A wrong index or size fails unless it asks for the very same walk up the tree (same
    # sides at every level): the path binds the position only through that walk, and the
    # signed tree head binds the size.
    wrong_index = data.draw(st.integers(0, size + 2).filter(lambda i: i != index), label="wrong index")
    if wrong_index >= size or rfc_sides(wrong_index, size) != rfc_sides(index, size):
        assert not verify_inclusion(wrong_index, size, leaf, proof, root)
    wrong_size = data.draw(st.integers(1, len(entries) + 3).filter(lambda s: s != size), label="wrong size")
    if index >= wrong_size or rfc_sides(index, wrong_size) != rfc_sides(index, size):
        assert not verify_inclusion(index, wrong_size, leaf, proof, root)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="altered node")
        bad = list(proof)
        bad[at] = hashlib.sha256(bad[at]).digest()
        assert not verify_inclusion(index, size, leaf, bad, root)
        assert not verify_inclusion(index, size, leaf, proof[:-1], root)
    assert not verify_inclusion(index, size, leaf, proof + [root], root)


@settings(max_examples=150, deadline=None)
@given(entries_st, st.data())
def test_consistency_proofs_verify_and_fail_for_anything_wrong(entries, data):
    tree = tree_of(entries)
    size = data.draw(st.integers(1, len(entries)), label="size")
    old = data.draw(st.integers(1, size), label="old size")
    proof = tree.consistency_proof(old, size)
    assert proof == (rfc_subproof(old, entries[:size], True) if old < size else [])
    old_root, root = rfc_mth(entries[:old]), rfc_mth(entries[:size])
    assert verify_consistency(old, size, old_root, root, proof)
    assert not verify_consistency(old, size, hashlib.sha256(old_root).digest(), root, proof)
    assert not verify_consistency(old, size, old_root, hashlib.sha256(root).digest(), proof)
    # a different history of the same sizes (one entry changed before `old`) fails
    at = data.draw(st.integers(0, old - 1), label="rewritten entry")
    forked = list(entries[:size])
    forked[at] = forked[at] + b"!"
    assert not verify_consistency(old, size, rfc_mth(forked[:old]), root, proof)
    assert not verify_consistency(old, size, old_root, rfc_mth(forked), proof)
    wrong_old = data.draw(st.integers(1, size).filter(lambda s: s != old), label="wrong old size") if size > 1 else None
    if wrong_old is not None and rfc_mth(entries[:wrong_old]) != old_root:
        assert not verify_consistency(wrong_old, size, old_root, root, proof)
    if proof:
        bad = list(proof)
        i = data.draw(st.integers(0, len(bad) - 1), label="altered node")
        bad[i] = hashlib.sha256(bad[i]).digest()
        assert not verify_consistency(old, size, old_root, root, bad)


def test_empty_and_equal_trees_are_consistent_only_with_an_empty_proof():
    tree = tree_of(CT_LEAVES)
    root = tree.root()
    assert verify_consistency(0, 8, merkle.EMPTY_ROOT, root, [])
    assert verify_consistency(8, 8, root, root, [])
    assert not verify_consistency(8, 8, root, root, [root])
    assert not verify_consistency(9, 8, root, root, [])
    assert not verify_inclusion(8, 8, tree.leaf(0), tree.inclusion_proof(0), root)


def test_proofs_in_a_large_tree_stay_logarithmic():
    tree = MerkleTree()
    for i in range(5000):
        tree.append_leaf_hash(hashlib.sha256(b"%d" % i).digest())
    root = tree.root()
    for index in (0, 1, 2047, 2048, 4095, 4999):
        proof = tree.inclusion_proof(index)
        assert len(proof) <= 13
        assert verify_inclusion(index, 5000, tree.leaf(index), proof, root)
    proof = tree.consistency_proof(3001)
    assert len(proof) <= 2 * 13 and verify_consistency(3001, 5000, tree.root(3001), root, proof)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=80, unique=True), st.data())
def test_compact_range_keeps_the_root_with_log_n_hashes(entries, data):
    split = data.draw(st.integers(0, len(entries)), label="saved at")
    edge = merkle.CompactRange()
    for e in entries[:split]:
        edge.append(e)
    assert edge.root() == rfc_mth(entries[:split])
    edge = merkle.CompactRange(edge.size, edge.hashes)  # as a host stores it between pulls
    for e in entries[split:]:
        edge.append(e)
    assert edge.root() == rfc_mth(entries) and len(edge.hashes) == bin(len(entries)).count("1")


@settings(max_examples=120, deadline=None)
@given(entries_st, st.data())
def test_a_pruned_prefix_known_by_its_compact_range_keeps_every_later_root_and_proof(entries, data):
    # What a host that first pulls after the device pruned records 1..k can rebuild:
    # the device's compact range of the first k leaves, then the records it still holds.
    pruned = data.draw(st.integers(0, len(entries) - 1), label="pruned")
    prefix = tree_of(entries).compact_range(pruned)
    assert prefix.root() == rfc_mth(entries[:pruned])
    tree = merkle.PrunedTree(merkle.CompactRange(prefix.size, prefix.hashes))
    for e in entries[pruned:]:
        tree.append(e)
    for n in range(max(pruned, 1), len(entries) + 1):
        assert tree.root(n) == rfc_mth(entries[:n])
    size = data.draw(st.integers(pruned + 1, len(entries)), label="size")
    index = data.draw(st.integers(pruned, size - 1), label="index")
    proof = tree.inclusion_proof(index, size)
    assert verify_inclusion(index, size, merkle.leaf_hash(entries[index]), proof, rfc_mth(entries[:size]))
    if pruned:
        with pytest.raises(merkle.MerkleError):
            tree.inclusion_proof(pruned - 1, size)
    # A prefix that is not the device's gives other roots: the signed root exposes it.
    if pruned:
        forged = merkle.PrunedTree(merkle.CompactRange(pruned, [b"\x00" * 32] + prefix.hashes[1:]))
        for e in entries[pruned:]:
            forged.append(e)
        assert forged.root() != rfc_mth(entries)


@pytest.mark.parametrize("size, hashes", [(-1, []), (1.0, [bytes(32)]), (True, [bytes(32)]), (1, [b"short"]),
                                          (1, ["00" * 32]), (3, [bytes(32)])])
def test_a_compact_range_from_untrusted_storage_is_checked_not_looped_on(size, hashes):
    with pytest.raises(merkle.MerkleError):
        merkle.CompactRange(size, hashes)
