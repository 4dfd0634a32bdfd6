"""An RFC 9162 consistency proof gathered while a log's tree is rebuilt, not from every leaf hash."""

from __future__ import annotations

from evidence_agent.custody.merkle import node_hash
from evidence_agent.errors import InputError


class ProofPlan:
    """The RFC 9162 consistency proof PROOF(m, D[n]) gathered while the tree is rebuilt,
    instead of from a list of every leaf hash (merkle.consistency_proof, O(n) per proof).

    Each node of the proof is either a perfect subtree [a, a + 2**j) or a right tail [x, n)
    of the tree of size n. A perfect subtree's root is what the accumulator's carry makes when
    leaf a + 2**j - 1 is appended: the fold of that leaf's hash with the last j peaks at size
    a + 2**j - 1. A right tail is the fold of the peaks at size n from x on. So the pass records
    the peaks at a few sizes (``stops``) and a few leaf hashes (``leaves_wanted``).
    """

    def __init__(self, m: int, n: int) -> None:
        if not 0 <= m <= n:
            raise InputError(f"old tree size {m} is outside 0..{n}")
        self.m, self.n = m, n
        self.ranges = _proof_ranges(m, n)
        self.stops: set[int] = {n}
        self.leaves_wanted: set[int] = set()
        for a, b in self.ranges:
            if _is_perfect(a, b):
                self.stops.add(b - 1)
                self.leaves_wanted.add(b - 1)
        self.peaks: dict[int, tuple[bytes, ...]] = {}
        self.leaves: dict[int, bytes] = {}

    def proof(self) -> list[bytes]:
        return [self._root(a, b) for a, b in self.ranges]

    def _root(self, a: int, b: int) -> bytes:
        if _is_perfect(a, b):
            j = (b - a).bit_length() - 1
            h = self.leaves[b - 1]
            peaks = self.peaks[b - 1]
            for p in reversed(peaks[len(peaks) - j :] if j else ()):
                h = node_hash(p, h)
            return h
        # A right tail [a, n): the peaks of size n whose subtrees start at a or later.
        sizes = [1 << bit for bit in reversed(range(self.n.bit_length())) if self.n >> bit & 1]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        if a not in starts:
            raise InputError(f"no subtree of the tree of size {self.n} starts at {a}")
        peaks = self.peaks[self.n]
        tail = peaks[starts.index(a) :]
        h = tail[-1]
        for p in reversed(tail[:-1]):
            h = node_hash(p, h)
        return h


def _is_perfect(a: int, b: int) -> bool:
    size = b - a
    return size > 0 and size & (size - 1) == 0 and a % size == 0


def _proof_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The subtrees [start, end) whose roots make PROOF(m, D[n]), in the proof's order
    (the same walk as merkle.consistency_proof)."""
    if m in (0, n):
        return []
    nodes: list[tuple[int, int]] = []
    start, end = 0, n
    old_tree_is_a_subtree = True
    while m != end - start:
        k = 1 << ((end - start - 1).bit_length() - 1)
        if m <= k:
            nodes.append((start + k, end))
            end = start + k
        else:
            nodes.append((start, start + k))
            start += k
            m -= k
            old_tree_is_a_subtree = False
    if not old_tree_is_a_subtree:
        nodes.append((start, end))
    nodes.reverse()
    return nodes
