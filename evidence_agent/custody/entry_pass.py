"""Step 1's one pass over a log's entries: the tree and its roots, each entry's position, the entries read."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from time import perf_counter

from evidence_agent.custody.audit_report import AuditReport, LogSummary
from evidence_agent.custody.entry_schema import SEQ_KEY, V_TAIL, parse_entry, read_seq
from evidence_agent.custody.log_facts import EVENT_REDUCERS, KEY_EVENTS, LogFacts, fold_entry
from evidence_agent.custody.merkle import EMPTY_ROOT, MerkleAccumulator, leaf_hash
from evidence_agent.custody.proof_plan import ProofPlan

# Entries parsed in full (schema and RFC 8785 form) besides those steps 3-4 read: one in this many.
CANONICAL_SAMPLE_EVERY = 256

Problems = list[tuple[str, str]]  # (item, message)


@dataclass
class EntriesRead:
    size: int
    roots: dict[int, bytes]  # the tree's root at each size asked for, and at 0
    parse_seconds: float  # of it, parsing entries for steps 3-4 (their time, in the report)


def read_entries(
    report: AuditReport,
    entry_chunks: Iterable[list[bytes]],
    facts: LogFacts,
    summary: LogSummary,
    *,
    collect_facts: bool,
    root_sizes: set[int],
    plan: ProofPlan | None,
    facts_until: int | None = None,
) -> EntriesRead:
    """Step 1's pass: rebuild the tree (its root at ``root_sizes``, the nodes ``plan`` needs),
    check every entry's position, and parse the entries that are read in full: those steps 3-4
    fold (when ``collect_facts``), key events, and a sample of the others. Entries from position
    ``facts_until`` on (those no signed checkpoint covers, in a bundle) are checked but never
    folded: what no signature vouches for must not vouch for a catalog row."""
    sid = facts.station_id
    tree = _TreeBuilder(root_sizes, plan)
    parse_tails, key_tails = _tails(collect_facts)
    offset = 0  # seq - position, while entries are in step
    n = 0
    parse_s = 0.0
    for chunk in entry_chunks:
        tree.extend(chunk, n)
        offset, anomalous, problems = check_positions(chunk, n, offset)
        for item, message in problems:
            report.add(1, item, message, station=sid)
        use, check = _entries_to_read(chunk, n, anomalous, parse_tails, key_tails)
        if facts_until is not None and n + len(chunk) > facts_until:
            use = {j for j in use if n + j < facts_until}
        t0 = perf_counter()
        _read_in_full(report, facts, summary, chunk, n, use, check)
        parse_s += perf_counter() - t0
        n += len(chunk)
    summary.entries = n
    summary.tree_root = tree.acc.root()
    return EntriesRead(n, tree.roots, parse_s)


class _TreeBuilder:
    """The tree, extended chunk by chunk and stopped at the sizes where a root is wanted, or the
    peaks and leaf hashes of a consistency proof."""

    def __init__(self, root_sizes: set[int], plan: ProofPlan | None) -> None:
        self.acc = MerkleAccumulator()
        self.root_sizes = root_sizes
        self.plan = plan
        self.roots: dict[int, bytes] = {0: EMPTY_ROOT}
        self.stops = sorted(s for s in root_sizes | (plan.stops if plan else set()) if s > 0)
        if plan is not None and 0 in plan.stops:
            plan.peaks[0] = ()
        self.leaf_wanted = sorted(plan.leaves_wanted) if plan else []
        self.stop_i = self.leaf_i = 0

    def extend(self, chunk: list[bytes], first: int) -> None:
        acc, stops, plan = self.acc, self.stops, self.plan
        pos, size = 0, len(chunk)
        while pos < size:
            take = size - pos
            if self.stop_i < len(stops):
                take = min(take, stops[self.stop_i] - acc.size)
            acc.extend_entries(chunk if take == size else chunk[pos : pos + take])
            pos += take
            while self.stop_i < len(stops) and acc.size == stops[self.stop_i]:
                if acc.size in self.root_sizes:
                    self.roots[acc.size] = acc.root()
                if plan is not None and acc.size in plan.stops:
                    plan.peaks[acc.size] = acc.peaks
                self.stop_i += 1
        wanted = self.leaf_wanted
        while self.leaf_i < len(wanted) and wanted[self.leaf_i] < first + size:
            assert plan is not None
            plan.leaves[wanted[self.leaf_i]] = leaf_hash(chunk[wanted[self.leaf_i] - first])
            self.leaf_i += 1


def check_positions(chunk: list[bytes], first: int, offset: int) -> tuple[int, set[int], Problems]:
    """``check_positions_reference``, with a fast path for a chunk where every entry holds
    `,"seq":<its position>,` (the tree, not this check, is what proves the order)."""
    tokens = [b',"seq":%d,' % (i + offset) for i in range(first, first + len(chunk))]
    if -1 not in map(bytes.rfind, chunk, tokens):
        return offset, set(), []
    return check_positions_reference(chunk, first, offset)


def check_positions_reference(
    chunk: list[bytes], first: int, offset: int
) -> tuple[int, set[int], Problems]:
    """Every entry's event number against its position ``first`` + j, entry by entry.

    Returns the new ``offset`` (seq - position), the entries out of place (the pass checks their
    form) and the problems: each place where entries were removed, inserted or reordered is
    named once, not every entry after it.
    """
    anomalous: set[int] = set()
    problems: Problems = []
    for j, entry in enumerate(chunk):
        i = first + j
        p = entry.rfind(SEQ_KEY)
        if p >= 0 and entry.startswith(b"%d," % (i + offset), p + 7):
            continue
        anomalous.add(j)
        seq = read_seq(entry)
        if seq is None:
            problems.append((f"entry {i}", "has no event number (seq): not a custody event"))
        elif seq - i != offset:
            offset = seq - i
            if offset:
                problems.append(
                    (
                        f"entry {i}",
                        f"holds event number {seq}: entries were removed, inserted or "
                        "reordered here",
                    )
                )
    return offset, anomalous, problems


def _tails(collect_facts: bool) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """How the canonical entries to parse end: those folded into the facts (when they are
    collected) and key events; and key events alone."""
    key_tails = tuple(b',"type":%s,"v":1}' % json.dumps(t).encode() for t in sorted(KEY_EVENTS))
    if not collect_facts:
        return key_tails, key_tails
    parse_tails = tuple(
        b',"type":%s,"v":1}' % json.dumps(t).encode() for t in sorted(EVENT_REDUCERS)
    )
    return parse_tails + key_tails, key_tails


def _entries_to_read(
    chunk: list[bytes],
    first: int,
    anomalous: set[int],
    parse_tails: tuple[bytes, ...],
    key_tails: tuple[bytes, ...],
) -> tuple[set[int], set[int]]:
    """The entries of a chunk read in full: those steps 3-4 fold, key events, any entry that does
    not end the way canonical JSON does; and those whose form is checked: all but the first
    group, a sample, and the entries out of place."""
    use = {j for j, e in enumerate(chunk) if e.endswith(parse_tails) or not e.endswith(V_TAIL)}
    check = {j for j in use if chunk[j].endswith(key_tails) or not chunk[j].endswith(V_TAIL)}
    check |= anomalous
    check.update(range((-first) % CANONICAL_SAMPLE_EVERY, len(chunk), CANONICAL_SAMPLE_EVERY))
    return use, check


def _read_in_full(
    report: AuditReport,
    facts: LogFacts,
    summary: LogSummary,
    chunk: list[bytes],
    first: int,
    use: set[int],
    check: set[int],
) -> None:
    sid = facts.station_id
    for j in sorted(use | check):
        canonical = j in check
        parsed, problem = parse_entry(chunk[j], sid, canonical=canonical)
        if problem is not None:
            report.add(1, f"entry {first + j}", problem, station=sid)
        if parsed is not None:
            fold_entry(facts, parsed, first + j, use=j in use)
        summary.parsed_entries += 1
        summary.canonical_checked += canonical
