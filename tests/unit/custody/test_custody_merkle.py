"""Tests of the RFC 9162 Merkle tree: published vectors, tampering, the RFC's definitions."""

from __future__ import annotations

import random
from collections.abc import Sequence
from hashlib import sha256

import pytest

from evidence_agent.custody.merkle import (
    EMPTY_ROOT,
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from evidence_agent.errors import InputError, IntegrityError

h = bytes.fromhex

# --- Published vectors --------------------------------------------------------------------
# From github.com/transparency-dev/merkle, proof/verify_test.go (the same data as Google's
# certificate-transparency C++ merkle_tree_test.cc). Inclusion vectors there number leaves
# from 1; they are converted to 0-based indices below.
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
ROOTS = [  # ROOTS[i] is the root of the tree of the first i + 1 leaves
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
INCLUSION_PROOFS = [  # (0-based leaf index, tree size, proof)
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
CONSISTENCY_PROOFS = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")

LEAF_HASHES = [leaf_hash(d) for d in LEAVES]


def test_hasher_vectors() -> None:
    # From transparency-dev/merkle rfc6962/rfc6962_test.go.
    assert h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == EMPTY_ROOT
    assert leaf_hash(b"") == h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert leaf_hash(b"L123456") == h(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456") == h(
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_published_roots(size: int) -> None:
    assert root_from_leaf_hashes(LEAF_HASHES[:size]) == ROOTS[size - 1]
    acc = MerkleAccumulator()
    acc.extend_entries(LEAVES[:size])
    assert acc.size == size
    assert acc.root() == ROOTS[size - 1]


def test_empty_tree_root() -> None:
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert MerkleAccumulator().root() == EMPTY_ROOT


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_PROOFS)
def test_published_inclusion_proofs(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(LEAF_HASHES[:size], index) == proof
    verify_inclusion(LEAF_HASHES[index], index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_PROOFS)
def test_published_consistency_proofs(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(LEAF_HASHES[:new], old) == proof
    verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


# --- Tampering ----------------------------------------------------------------------------
# Same probes as corruptInclusionProof / corruptConsistencyProof in transparency-dev/merkle
# proof/verify_test.go. A same-length change must be an IntegrityError; a hash of the wrong
# length or a negative number is malformed input.


def _flip(proof: Sequence[bytes], i: int, bit: int) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ bit]) + out[i][1:]
    return out


def _expect_failure(call: object, *args: object) -> None:
    lengths_ok = all(len(a) == 32 for a in args if isinstance(a, bytes)) and all(
        len(p) == 32 for a in args if isinstance(a, list) for p in a
    )
    numbers_ok = all(a >= 0 for a in args if isinstance(a, int))
    expected = IntegrityError if lengths_ok and numbers_ok else InputError
    with pytest.raises(expected):
        call(*args)  # type: ignore[operator]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_PROOFS[1:])
def test_tampered_inclusion_proofs_fail(index: int, size: int, proof: list[bytes]) -> None:
    leaf, root = LEAF_HASHES[index], ROOTS[size - 1]
    probes: list[tuple[bytes, int, int, list[bytes], bytes]] = [
        (leaf, index - 1, size, proof, root),
        (leaf, index + 1, size, proof, root),
        (leaf, index ^ 2, size, proof, root),
        (leaf, index, size * 2, proof, root),
        (leaf, index, size // 2, proof, root),
        (b"WrongLeaf", index, size, proof, root),
        (LEAF_HASHES[(index + 1) % 8], index, size, proof, root),  # another leaf
        (leaf, index, size, proof, EMPTY_ROOT),
        (leaf, index, size, proof, SOME_HASH),
        (leaf, index, size, [*proof, b""], root),
        (leaf, index, size, [*proof, root], root),
        (leaf, index, size, [b"", *proof], root),
        (leaf, index, size, [root, *proof], root),
        (leaf, index, size, proof[:-1], root),
        (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root),
    ]
    if len(proof) > 1:
        probes.append((leaf, index, size, proof[::-1], root))
    probes += [(leaf, index, size, _flip(proof, i, 8), root) for i in range(len(proof))]
    for probe in probes:
        _expect_failure(verify_inclusion, *probe)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_PROOFS[1:])
def test_tampered_consistency_proofs_fail(old: int, new: int, proof: list[bytes]) -> None:
    root1, root2 = ROOTS[old - 1], ROOTS[new - 1]
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (old - 1, new, root1, root2, proof),
        (old + 1, new, root1, root2, proof),
        (old ^ 2, new, root1, root2, proof),
        (old, new * 2, root1, root2, proof),
        (old, new // 2, root1, root2, proof),
        (old, new, b"WrongRoot", root2, proof),
        (old, new, root1, b"WrongRoot", proof),
        (old, new, SOME_HASH, root2, proof),
        (old, new, root1, SOME_HASH, proof),
        (old, new, root2, root1, proof),
        (old, new, root1, root2, []),
        (old, new, root1, root2, [*proof, b""]),
        (old, new, root1, root2, [*proof, root1]),
        (old, new, root1, root2, [*proof, root2]),
        (old, new, root1, root2, [b"", *proof]),
        (old, new, root1, root2, [root1, *proof]),
        (old, new, root1, root2, [root2, *proof]),
        (old, new, root1, root2, [proof[0], *proof]),
        (old, new, root1, root2, proof[:-1]),
        (old, new, root1, root2, proof[::-1]),
    ]
    probes += [(old, new, root1, root2, _flip(proof, i, 16)) for i in range(len(proof))]
    for probe in probes:
        _expect_failure(verify_consistency, *probe)


def test_every_flipped_byte_in_a_proof_fails() -> None:
    index, size, proof = INCLUSION_PROOFS[2]
    for i in range(len(proof)):
        for j in range(32):
            bad = list(proof)
            bad[i] = bad[i][:j] + bytes([bad[i][j] ^ 1]) + bad[i][j + 1 :]
            with pytest.raises(IntegrityError):
                verify_inclusion(LEAF_HASHES[index], index, size, bad, ROOTS[size - 1])


def test_reordered_leaves_fail() -> None:
    swapped = list(LEAF_HASHES)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    swapped_root = root_from_leaf_hashes(swapped)
    assert swapped_root != ROOTS[7]
    # The original leaf at its original place is not in the reordered tree ...
    with pytest.raises(IntegrityError):
        verify_inclusion(LEAF_HASHES[2], 2, 8, inclusion_proof(LEAF_HASHES, 2), swapped_root)
    # ... and the reordered tree does not extend the original prefix.
    with pytest.raises(IntegrityError, match="prefix"):
        verify_consistency(4, 8, ROOTS[3], swapped_root, consistency_proof(swapped, 4))


def test_inclusion_edge_cases() -> None:
    leaf = leaf_hash(b"data")
    verify_inclusion(leaf, 0, 1, [], leaf)  # a one-leaf tree's root is its leaf hash
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1)]:
        with pytest.raises(IntegrityError, match="outside"):
            verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    with pytest.raises(InputError):
        verify_inclusion(leaf, 0, 1, [], b"")
    with pytest.raises(InputError):
        verify_inclusion(b"", 0, 1, [], leaf)
    with pytest.raises(InputError):
        verify_inclusion(leaf, -1, 1, [], leaf)


def test_consistency_edge_cases() -> None:
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    with pytest.raises(IntegrityError, match="forked"):
        verify_consistency(3, 3, ROOTS[2], ROOTS[3], [])
    with pytest.raises(IntegrityError, match="must be empty"):
        verify_consistency(3, 3, ROOTS[2], ROOTS[2], [EMPTY_ROOT])
    with pytest.raises(IntegrityError, match="must be empty"):
        verify_consistency(0, 1, EMPTY_ROOT, ROOTS[0], [EMPTY_ROOT])
    with pytest.raises(IntegrityError, match="empty-tree"):
        verify_consistency(0, 1, SOME_HASH, ROOTS[0], [])
    with pytest.raises(IntegrityError, match="truncated or rolled back"):
        verify_consistency(5, 4, ROOTS[4], ROOTS[3], [])
    with pytest.raises(IntegrityError, match="empty"):
        verify_consistency(1, 2, ROOTS[0], ROOTS[1], [])
    with pytest.raises(InputError):
        verify_consistency(-1, 2, ROOTS[0], ROOTS[1], [])


def test_proof_generation_rejects_bad_positions() -> None:
    with pytest.raises(InputError):
        inclusion_proof([], 0)
    with pytest.raises(InputError):
        inclusion_proof(LEAF_HASHES, 8)
    with pytest.raises(InputError):
        inclusion_proof(LEAF_HASHES, -1)
    with pytest.raises(InputError):
        consistency_proof(LEAF_HASHES, 9)
    with pytest.raises(InputError):
        consistency_proof(LEAF_HASHES, -1)
    assert consistency_proof(LEAF_HASHES, 0) == []
    assert consistency_proof(LEAF_HASHES, 8) == []


# --- Agreement with the RFC's recursive definitions ---------------------------------------


def _mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 section 2.1.1 defines it, over leaf hashes."""
    n = len(d)
    if n == 0:
        return sha256(b"").digest()
    if n == 1:
        return d[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(_mth(d[:k]), _mth(d[k:]))


def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def _subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 section 2.1.4.1."""
    n = len(d)
    if m == n:
        return [] if b else [_mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_subproof(m, d[:k], b), _mth(d[k:])]
    return [*_subproof(m - k, d[k:], False), _mth(d[:k])]


def _random_leaf_hashes(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [leaf_hash(rng.randbytes(rng.randrange(0, 40))) for _ in range(n)]


def test_incremental_root_matches_recursive_mth() -> None:
    hashes = _random_leaf_hashes(300, seed=1)
    acc = MerkleAccumulator()
    assert acc.root() == _mth([])
    for size, leaf in enumerate(hashes, start=1):
        acc.append(leaf)
        assert acc.size == size
        assert len(acc.peaks) == size.bit_count()
        assert acc.root() == _mth(hashes[:size]), size


def test_bulk_extend_matches_per_leaf_append() -> None:
    rng = random.Random(2)
    entries = [rng.randbytes(rng.randrange(0, 64)) for _ in range(1000)]
    by_entry = MerkleAccumulator()
    by_entry.extend_entries(entries[:400])
    by_entry.extend_entries(entries[400:])
    by_hash = MerkleAccumulator()
    for entry in entries:
        by_hash.append(leaf_hash(entry))
    assert by_entry.root() == by_hash.root() == _mth([leaf_hash(e) for e in entries])


def test_accumulator_restore_and_copy() -> None:
    hashes = _random_leaf_hashes(77, seed=3)
    acc = MerkleAccumulator()
    acc.extend(hashes[:50])
    resumed = MerkleAccumulator.restore(acc.size, acc.peaks)
    snapshot = acc.copy()
    resumed.extend(hashes[50:])
    assert resumed.root() == root_from_leaf_hashes(hashes)
    assert snapshot.root() == root_from_leaf_hashes(hashes[:50])
    with pytest.raises(InputError):
        MerkleAccumulator.restore(50, acc.peaks[1:])
    with pytest.raises(InputError):
        MerkleAccumulator.restore(-1, [])


def test_accumulator_rejects_a_short_leaf_hash_and_stays_consistent() -> None:
    acc = MerkleAccumulator()
    with pytest.raises(InputError, match="leaf hash 3"):
        acc.extend([*LEAF_HASHES[:3], b"short"])
    assert acc.size == 3
    assert acc.root() == ROOTS[2]


@pytest.mark.parametrize("size", range(1, 41))
def test_all_proofs_verify_and_match_the_rfc(size: int) -> None:
    hashes = _random_leaf_hashes(size, seed=size)
    root = _mth(hashes)
    for index in range(size):
        proof = inclusion_proof(hashes, index)
        assert proof == _path(index, hashes)
        verify_inclusion(hashes[index], index, size, proof, root)
    for old in range(size + 1):
        proof = consistency_proof(hashes, old)
        if 0 < old < size:
            assert proof == _subproof(old, hashes, True)
        verify_consistency(old, size, _mth(hashes[:old]), root, proof)
