"""RFC 9162 section 2.1 Merkle tree over SHA-256: hashes, incremental root, proofs, checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import sha256
from hmac import compare_digest

from evidence_agent.errors import InputError, IntegrityError

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()  # MTH({}) = HASH() (RFC 9162 section 2.1.1)

# Domain separation between leaves and interior nodes is what stops a second-preimage
# attack in which an interior node is presented as a leaf.
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(entry: bytes) -> bytes:
    """Return the leaf hash HASH(0x00 || entry)."""
    return sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the interior node hash HASH(0x01 || left || right)."""
    return sha256(_NODE_PREFIX + left + right).digest()


class MerkleAccumulator:
    """The right edge of a growing tree: append a leaf in amortised O(1), the root in O(log n).

    It keeps only the roots of the perfect subtrees that make up the tree (one per set bit of
    the size), so a log of any length is rebuilt in constant memory.
    """

    __slots__ = ("_peaks", "_size")

    def __init__(self) -> None:
        self._size = 0
        # Perfect-subtree roots, leftmost (largest) first; len(_peaks) == size.bit_count().
        self._peaks: list[bytes] = []

    @classmethod
    def restore(cls, size: int, peaks: Sequence[bytes]) -> MerkleAccumulator:
        """Resume from a saved ``size`` and ``peaks`` (as returned by the ``peaks`` property)."""
        if size < 0 or len(peaks) != size.bit_count():
            raise InputError(
                f"a tree of size {size} has {max(size, 0).bit_count()} subtree roots, "
                f"not {len(peaks)}"
            )
        for peak in peaks:
            _check_hash(peak, "subtree root")
        acc = cls()
        acc._size = size
        acc._peaks = list(peaks)
        return acc

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def peaks(self) -> tuple[bytes, ...]:
        """The perfect-subtree roots, leftmost first: with ``size``, enough to resume appending."""
        return tuple(self._peaks)

    def copy(self) -> MerkleAccumulator:
        """Return an independent accumulator at the same state."""
        return MerkleAccumulator.restore(self._size, self._peaks)

    def append(self, leaf: bytes) -> None:
        """Append one leaf hash (as made by ``leaf_hash``)."""
        self.extend((leaf,))

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order."""
        # Locals and inlined hashing: this loop runs once per event when a log is audited.
        peaks = self._peaks
        pop = peaks.pop
        push = peaks.append
        prefix = _NODE_PREFIX
        size = self._size
        try:
            for h in leaf_hashes:
                if len(h) != HASH_SIZE:
                    _check_hash(h, f"leaf hash {size}")
                n = size
                # Each trailing 1 bit of the old size is a complete subtree that the new leaf
                # now pairs with; merge them as a binary counter carries.
                while n & 1:
                    h = sha256(prefix + pop() + h).digest()
                    n >>= 1
                push(h)
                size += 1
        finally:
            self._size = size

    def extend_entries(self, entries: Iterable[bytes]) -> None:
        """Hash each entry as a leaf and append it: the audit's hot loop, kept flat on purpose."""
        peaks = self._peaks
        pop = peaks.pop
        push = peaks.append
        leaf_prefix = _LEAF_PREFIX
        node_prefix = _NODE_PREFIX
        size = self._size
        try:
            for entry in entries:
                h = sha256(leaf_prefix + entry).digest()
                n = size
                while n & 1:
                    h = sha256(node_prefix + pop() + h).digest()
                    n >>= 1
                push(h)
                size += 1
        finally:
            self._size = size

    def root(self) -> bytes:
        """Return MTH of the leaves appended so far (SHA-256 of nothing for an empty tree)."""
        peaks = self._peaks
        if not peaks:
            return EMPTY_ROOT
        # MTH splits at the largest power of two below n, so the root folds the subtree roots
        # from the right: H(p0, H(p1, ... H(p[-2], p[-1]))).
        h = peaks[-1]
        for i in range(len(peaks) - 2, -1, -1):
            h = sha256(_NODE_PREFIX + peaks[i] + h).digest()
        return h


def root_from_leaf_hashes(leaf_hashes: Iterable[bytes]) -> bytes:
    """Return the Merkle Tree Hash (MTH) of a list of leaf hashes, in O(n)."""
    acc = MerkleAccumulator()
    acc.extend(leaf_hashes)
    return acc.root()


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return PATH(index, D[n]) of RFC 9162 section 2.1.3.1, in O(n) hashes."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise InputError(f"leaf index {index} is outside a tree of size {n}")
    siblings: list[bytes] = []  # found top-down; the RFC lists them from the leaf up
    start, end = 0, n
    while end - start > 1:
        k = _split_point(end - start)
        if index - start < k:
            siblings.append(_subtree_root(leaf_hashes, start + k, end))
            end = start + k
        else:
            siblings.append(_subtree_root(leaf_hashes, start, start + k))
            start += k
    siblings.reverse()
    return siblings


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return PROOF(old_size, D[n]) of RFC 9162 section 2.1.4.1, in O(n) hashes."""
    n = len(leaf_hashes)
    if not 0 <= old_size <= n:
        raise InputError(f"old tree size {old_size} is outside 0..{n}")
    if old_size in (0, n):
        return []
    nodes: list[bytes] = []  # found top-down; SUBPROOF emits them from the bottom up
    start, end, m = 0, n, old_size
    old_tree_is_a_subtree = True  # the b flag of SUBPROOF
    while m != end - start:
        k = _split_point(end - start)
        if m <= k:
            nodes.append(_subtree_root(leaf_hashes, start + k, end))
            end = start + k
        else:
            nodes.append(_subtree_root(leaf_hashes, start, start + k))
            start += k
            m -= k
            old_tree_is_a_subtree = False
    if not old_tree_is_a_subtree:
        nodes.append(_subtree_root(leaf_hashes, start, end))
    nodes.reverse()
    return nodes


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof by RFC 9162 section 2.1.3.2; raise IntegrityError if it fails.

    Raises InputError for a hash that is not 32 bytes or a negative index or size.
    """
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    _check_proof(proof, "inclusion")
    if index < 0 or tree_size < 0:
        raise InputError(f"leaf index {index} and tree size {tree_size} must not be negative")
    # 1. The leaf must be inside the tree.
    if index >= tree_size:
        raise IntegrityError(f"leaf index {index} is outside a tree of size {tree_size}")
    # 2.-3.
    fn, sn = index, tree_size - 1
    r = leaf
    # 4.
    for p in proof:
        # 4a.
        if sn == 0:
            raise IntegrityError(
                f"inclusion proof for leaf {index} in tree size {tree_size} "
                f"has {len(proof)} hashes, more than the path to the root"
            )
        # 4b.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        # 4c.
        fn >>= 1
        sn >>= 1
    # 5.
    if sn != 0:
        raise IntegrityError(
            f"inclusion proof for leaf {index} in tree size {tree_size} "
            f"has {len(proof)} hashes, fewer than the path to the root"
        )
    if not compare_digest(r, root):
        raise IntegrityError(
            f"inclusion proof for leaf {index} does not lead to the root of tree size {tree_size}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` is a prefix of the tree of ``new_size``.

    Follows RFC 9162 section 2.1.4.2 for 0 < old_size < new_size; the edge cases the RFC leaves
    to the caller are strict: equal sizes need equal roots and an empty proof, size 0 needs the
    empty-tree root and an empty proof, and a shrinking log fails. Raises IntegrityError if the
    proof fails, InputError for a hash that is not 32 bytes or a negative size.
    """
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    _check_proof(proof, "consistency")
    if old_size < 0 or new_size < 0:
        raise InputError(f"tree sizes {old_size} and {new_size} must not be negative")
    if old_size > new_size:
        raise IntegrityError(
            f"tree size went down from {old_size} to {new_size}: "
            "the log was truncated or rolled back"
        )
    if old_size == new_size or old_size == 0:
        _verify_consistency_edge(old_size, new_size, old_root, new_root, proof)
    else:
        _verify_consistency_rfc9162(old_size, new_size, old_root, new_root, proof)


def _verify_consistency_edge(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """The cases RFC 9162 leaves to the caller: two trees of one size, growth from the empty tree."""
    if old_size == new_size:
        if proof:
            raise IntegrityError(
                f"consistency proof between two trees of size {old_size} must be empty"
            )
        if not compare_digest(old_root, new_root):
            raise IntegrityError(
                f"two different roots for tree size {old_size}: the log has forked"
            )
        return
    if proof:
        raise IntegrityError("consistency proof from the empty tree must be empty")
    if not compare_digest(old_root, EMPTY_ROOT):
        raise IntegrityError("root hash given for tree size 0 is not the empty-tree hash")


def _verify_consistency_rfc9162(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2 for 0 < old_size < new_size, its steps numbered as in the RFC."""
    # 1.
    if not proof:
        raise IntegrityError(f"consistency proof from tree size {old_size} to {new_size} is empty")
    # 2. A power-of-two old tree is itself a node of the new tree, so the proof leaves it out.
    path = [old_root, *proof] if old_size & (old_size - 1) == 0 else list(proof)
    # 3.
    fn, sn = old_size - 1, new_size - 1
    # 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            raise IntegrityError(
                f"consistency proof from tree size {old_size} to {new_size} "
                f"has {len(proof)} hashes, more than the trees need"
            )
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    if sn != 0:
        raise IntegrityError(
            f"consistency proof from tree size {old_size} to {new_size} "
            f"has {len(proof)} hashes, fewer than the trees need"
        )
    if not compare_digest(fr, old_root):
        raise IntegrityError(
            f"consistency proof does not reproduce the root of tree size {old_size}: "
            f"that tree is not a prefix of tree size {new_size}"
        )
    if not compare_digest(sr, new_root):
        raise IntegrityError(
            f"consistency proof does not reproduce the root of tree size {new_size}: "
            f"tree size {old_size} is not a prefix of it"
        )


def _split_point(n: int) -> int:
    """Return k, the largest power of two smaller than n (n > 1), where MTH splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    acc = MerkleAccumulator()
    acc.extend(leaf_hashes[start:end])
    return acc.root()


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise InputError(f"{what} is {len(value)} bytes long, not {HASH_SIZE} (SHA-256)")


def _check_proof(proof: Sequence[bytes], kind: str) -> None:
    for i, p in enumerate(proof):
        _check_hash(p, f"{kind} proof hash {i}")
