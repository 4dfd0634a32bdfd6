"""Audit service: export the custody log as a bundle, verify it live or offline, prove a clip's events.

`verify` runs five numbered steps and returns a report naming every failing item:

1. rebuild the RFC 9162 tree from the entries and check every checkpoint's signature and root;
2. check that successive checkpoints are consistent (one history, never rewritten);
3. re-hash every stored object against its ingest event, both ways;
4. cross-check the catalog's rows against what the log says about them;
5. against a checkpoint the auditor kept from before: truncation, rollback and forks.

On the live station it reads the catalog and the object store; on a bundle it needs nothing but
the bundle's files, so step 3 cannot run there and step 4 uses the catalog rows the bundle
carries. The database layer is imported only for the live station, so an offline check starts
fast and needs no database at all.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hmac import compare_digest
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence_agent.custody import bundle as bundle_format
from evidence_agent.custody.bundle import BundleSummary, StationExport
from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.checkpoint import Checkpoint, open_checkpoint
from evidence_agent.custody.events import CustodyEvent, format_time
from evidence_agent.custody.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MerkleAccumulator,
    inclusion_proof,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from evidence_agent.custody.signed_note import Ed25519Verifier
from evidence_agent.errors import (
    EvidenceError,
    ExitCode,
    InputError,
    IntegrityError,
    NotFoundError,
    StorageError,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

    from evidence_agent.catalog.models import Clip
    from evidence_agent.services.station import Station

STEP_TITLES = {
    1: "entries, tree and checkpoint signatures",
    2: "consistency between checkpoints",
    3: "stored objects against ingest events",
    4: "catalog rows against the log",
    5: "against the auditor's trusted checkpoint",
}
# Entries parsed in full (schema and RFC 8785 form) besides those steps 3-4 read: one in this many.
CANONICAL_SAMPLE_EVERY = 256
MAX_FINDINGS = 10_000  # a rewritten log fails every later checkpoint; keep the report readable
MAX_PROOF_FILE = 64 << 20
_SEQ_KEY = b',"seq":'
_V_TAIL = b'","v":1}'  # how every canonical entry of format version 1 ends
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
# Bytes after which json.dumps and RFC 8785 may spell a value differently: a number with a
# fraction or exponent, a long integer, a 4-byte UTF-8 character. Conservative: a match inside
# a string only costs the slower check.
_NEEDS_RFC8785 = re.compile(rb"[:\[,]-?(?:[0-9]+[.eE]|[0-9]{16})|[\xf0-\xf4]")
_ENTRY_FIELDS = frozenset(
    {"v", "seq", "station", "time", "type", "subject", "actor", "reason", "data", "sha256"}
)


def log_origin(station_id: str) -> str:
    """The origin line of a station's log; sql_log.log_origin, without the database imports."""
    return f"evidence-agent/{station_id}"


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class Finding:
    """One failing item: which step found it, what it is, and what is wrong with it."""

    step: int
    item: str
    message: str
    station: str | None = None
    kind: str = "integrity"  # "integrity" (exit 3) or "error" (could not be checked, exit 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "station": self.station,
            "item": self.item,
            "message": self.message,
            "kind": self.kind,
        }


@dataclass
class StepResult:
    number: int
    title: str
    status: str = "passed"  # passed, failed, limited (ran on part of what it covers), skipped
    detail: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class LogSummary:
    """What the audit established about one station's log; the latest checkpoint is the one to
    keep as the trusted checkpoint of the next audit."""

    station: str
    origin: str
    key: str | None = None
    entries: int = 0
    checkpoints: int = 0
    latest_size: int | None = None
    latest_root: bytes | None = None
    latest_note: str | None = None
    unsigned_entries: int = 0
    parsed_entries: int = 0
    canonical_checked: int = 0
    tree_root: bytes | None = None  # the root of all the entries, signed or not
    trusted_size: int | None = None
    consistency_proof: list[bytes] | None = None

    def to_json(self) -> dict[str, Any]:
        latest = None
        if self.latest_size is not None and self.latest_root is not None:
            latest = {
                "size": self.latest_size,
                "root_hash": _b64(self.latest_root),
                "note": self.latest_note,
            }
        trusted = None
        if self.trusted_size is not None:
            trusted = {
                "size": self.trusted_size,
                "consistency_proof": (
                    [_b64(h) for h in self.consistency_proof]
                    if self.consistency_proof is not None
                    else None
                ),
            }
        return {
            "station": self.station,
            "origin": self.origin,
            "verifier_key": self.key,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "latest_checkpoint": latest,
            "unsigned_entries": self.unsigned_entries,
            "entries_parsed": self.parsed_entries,
            "entries_checked_canonical": self.canonical_checked,
            "trusted_checkpoint": trusted,
        }


@dataclass
class AuditReport:
    source: str  # "station" or "bundle"
    location: str
    started_at: datetime
    steps: dict[int, StepResult] = field(
        default_factory=lambda: {n: StepResult(n, t) for n, t in STEP_TITLES.items()}
    )
    logs: list[LogSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    findings_dropped: int = 0
    seconds: float = 0.0

    def add(
        self, step: int, item: str, message: str, *, station: str | None, kind: str = "integrity"
    ) -> None:
        self.steps[step].status = "failed"
        if len(self.findings) >= MAX_FINDINGS:
            self.findings_dropped += 1
            return
        self.findings.append(Finding(step, item, message, station, kind))

    def limit(self, step: int, detail: str, *, skipped: bool = False) -> None:
        result = self.steps[step]
        if result.status != "failed":
            result.status = "skipped" if skipped else "limited"
        result.detail = detail

    @property
    def intact(self) -> bool:
        return not self.findings and not self.findings_dropped

    @property
    def exit_code(self) -> ExitCode:
        if any(f.kind == "integrity" for f in self.findings) or self.findings_dropped:
            return ExitCode.INTEGRITY
        return ExitCode.ERROR if self.findings else ExitCode.OK

    def raise_for_failures(self) -> None:
        """Raise IntegrityError (or StorageError) naming the first failures, if there are any."""
        if self.intact:
            return
        named = "; ".join(f"{f.item}: {f.message}" for f in self.findings[:3])
        more = len(self.findings) + self.findings_dropped - 3
        message = f"custody audit failed: {named}" + (f" (and {more} more)" if more > 0 else "")
        if self.exit_code == ExitCode.INTEGRITY:
            raise IntegrityError(message)
        raise StorageError(message)

    def to_json(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "exit_code": int(self.exit_code),
            "source": self.source,
            "location": self.location,
            "started_at": format_time(self.started_at),
            "seconds": round(self.seconds, 3),
            "logs": [log.to_json() for log in self.logs],
            "steps": [s.to_json() for s in self.steps.values()],
            "findings": [f.to_json() for f in self.findings],
            "findings_not_listed": self.findings_dropped,
            "notes": self.notes,
        }


# ---------------------------------------------------------------- what the log says


@dataclass(slots=True)  # made once per entry read: not frozen, which costs twice as much
class ParsedEntry:
    """An entry's fields, after its schema was checked."""

    seq: int
    type: str
    station: str
    time: str
    subject_kind: str
    subject_id: str
    actor: str
    reason: str
    sha256: str | None
    data: dict[str, Any]


@dataclass(slots=True)
class ClipFacts:
    clip_id: str
    sha256: str
    ingest_seq: int
    ingest: dict[str, Any]
    stored_seq: int | None = None
    stored: dict[str, Any] | None = None
    deleted_seq: int | None = None  # clip.deleted: the catalog row stays, state "deleted"
    expected_row: tuple[Any, ...] | None = None  # the catalog row's checked fields, by the log
    object_removed_seq: int | None = None  # clip.object_removed: the object may be gone


@dataclass
class LogFacts:
    """The state of the evidence according to the log alone, folded from its events."""

    station_id: str
    clips: dict[str, ClipFacts] = field(default_factory=dict)
    by_sha256: dict[str, str] = field(default_factory=dict)  # content -> clip id
    links: dict[tuple[str, str], int] = field(default_factory=dict)  # (case, clip) -> seq
    keys: list[tuple[int, str]] = field(default_factory=list)  # (seq, verifier key string)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (item, message)


Reducer = Callable[[LogFacts, ParsedEntry], None]


def _on_clip_ingested(facts: LogFacts, e: ParsedEntry) -> None:
    if e.subject_kind != "clip" or e.sha256 is None:
        facts.problems.append((f"entry {e.seq}", "clip.ingested event without a clip or hash"))
        return
    earlier = facts.clips.get(e.subject_id)
    item = f"clip {e.subject_id}"
    if earlier is not None:
        facts.problems.append((item, f"ingested twice: events {earlier.ingest_seq} and {e.seq}"))
        return
    other = facts.by_sha256.get(e.sha256)
    if other is not None:
        facts.problems.append(
            (item, f"same content {e.sha256} as clip {other}: a second clip was made of it")
        )
    facts.clips[e.subject_id] = ClipFacts(e.subject_id, e.sha256, e.seq, e.data)
    facts.by_sha256[e.sha256] = e.subject_id


def _on_clip_stored(facts: LogFacts, e: ParsedEntry) -> None:
    clip = facts.clips.get(e.subject_id)
    if clip is None:
        facts.problems.append(
            (f"clip {e.subject_id}", f"stored (event {e.seq}) but never ingested in the log")
        )
        return
    # Both are checked lower-case hex (ASCII), which compare_digest takes as str.
    if e.sha256 is None or not compare_digest(e.sha256, clip.sha256):
        facts.problems.append(
            (
                f"clip {e.subject_id}",
                f"stored as {e.sha256} (event {e.seq}), ingested as {clip.sha256}",
            )
        )
    clip.stored_seq, clip.stored = e.seq, e.data


def _on_clip_deleted(facts: LogFacts, e: ParsedEntry) -> None:
    clip = facts.clips.get(e.subject_id)
    if clip is None:
        facts.problems.append(
            (f"clip {e.subject_id}", f"deleted (event {e.seq}) but never ingested in the log")
        )
        return
    if e.type == "clip.deleted":
        clip.deleted_seq = e.seq
    else:
        clip.object_removed_seq = e.seq


def _on_case_link(facts: LogFacts, e: ParsedEntry) -> None:
    case = e.data.get("case")
    if e.subject_kind != "clip" or not isinstance(case, str):
        facts.problems.append((f"entry {e.seq}", f"{e.type} event without a clip and a case"))
        return
    if e.type == "case.clip_linked":
        facts.links[(case, e.subject_id)] = e.seq
    else:
        facts.links.pop((case, e.subject_id), None)


# The extension point of steps 3-4: an event type that changes what the catalog must hold gets a
# reducer here and, if it touches a new table or column, a check in CATALOG_CHECKS below.
# Links are review.cases' events: subject {kind: clip, id}, data {"case": case number}.
# Not cross-checked yet: retention class and date, legal hold, retention grounds.
EVENT_REDUCERS: dict[str, Reducer] = {
    "clip.ingested": _on_clip_ingested,
    "clip.stored": _on_clip_stored,
    "clip.deleted": _on_clip_deleted,
    "clip.object_removed": _on_clip_deleted,
    "case.clip_linked": _on_case_link,
    "case.clip_unlinked": _on_case_link,
}
KEY_EVENTS = frozenset({"key.created", "key.rotated"})


# ---------------------------------------------------------------- catalog rows

# The clip row as the cross-check sees it (and as a bundle carries it): catalog values in the
# ingest event's spelling. Each of these is fixed by the clip.ingested event.
INGEST_FIELDS = (
    "size",
    "blake3",
    "sm3",
    "media_kind",
    "source_path",
    "source_path_hex",
    "recorded_start",
    "recorded_end",
    "time_source",
    "duration_seconds",
    "ingested_at",
    "recorder",
    "officer",
    "unit",
    "important",
    "flags",
    "dock_session",
)
CLIP_ROW_FIELDS = ("id", "sha256", "station", "state", "stored_at", *INGEST_FIELDS)
CASE_CLIP_ROW_FIELDS = ("case", "clip")


@dataclass
class CatalogSnapshot:
    """Catalog rows to cross-check; None for a table the source does not have."""

    clips: list[dict[str, Any]] | None = None
    case_clips: list[dict[str, Any]] | None = None


CatalogCheck = Callable[[LogFacts, CatalogSnapshot], Iterator[tuple[str, str]]]


def _check_clips(facts: LogFacts, catalog: CatalogSnapshot) -> Iterator[tuple[str, str]]:
    if catalog.clips is None:
        return
    seen: set[str] = set()
    row_fields = itemgetter(*_ROW_CHECKED)
    for row in catalog.clips:
        clip_id = str(row.get("id"))
        seen.add(clip_id)
        clip = facts.clips.get(clip_id)
        if clip is None:
            yield (
                f"clip {clip_id}",
                "catalog row has no clip.ingested event in the log: added behind its back",
            )
            continue
        expected = clip.expected_row
        if expected is None:
            expected = clip.expected_row = _expected_row(facts, clip)
        # Fast path: == on tuples treats 4.0 as 4 (as _same does) but also True as 1, so the
        # one boolean field is compared by type too; any difference takes the field-by-field
        # path, which names each field.
        try:
            if row_fields(row) == expected and type(row["important"]) is bool:
                continue
        except KeyError:  # a row of an older bundle, without a field added since
            pass
        yield from _row_differences(facts, clip, row)
    for clip_id, clip in facts.clips.items():
        if clip_id not in seen:
            yield (
                f"clip {clip_id}",
                f"ingested in the log (entry {clip.ingest_seq}) but the catalog has no row for it",
            )


# Row fields compared on the fast path, in this order; _expected_row gives the log's values.
_ROW_CHECKED = ("sha256", "station", "state", "stored_at", *INGEST_FIELDS)
_ingest_values = itemgetter(*INGEST_FIELDS)


def _clip_state(clip: ClipFacts) -> tuple[str, str]:
    if clip.deleted_seq is not None:
        return "deleted", f"entry {clip.deleted_seq} deleted it"
    if clip.stored is not None:
        return "stored", f"entry {clip.stored_seq} stored it"
    return "spooled", "it has no store event"


def _expected_row(facts: LogFacts, clip: ClipFacts) -> tuple[Any, ...]:
    stored_at = clip.stored.get("stored_at") if clip.stored is not None else None
    try:
        ingest = _ingest_values(clip.ingest)
    except KeyError:  # an event without some field: the row must say None (null) there
        ingest = tuple(clip.ingest.get(f) for f in INGEST_FIELDS)
    return (clip.sha256, facts.station_id, _clip_state(clip)[0], stored_at, *ingest)


def _row_differences(
    facts: LogFacts, clip: ClipFacts, row: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    item = f"clip {clip.clip_id}"
    at = f"the ingest event (entry {clip.ingest_seq})"
    sha = row.get("sha256")
    if not isinstance(sha, str) or not compare_digest(sha.encode(), clip.sha256.encode()):
        yield item, f"catalog sha256 is {sha}, {at} says {clip.sha256}"
    if row.get("station") != facts.station_id:
        yield (
            item,
            f"catalog station is {row.get('station')!r}, the log's is {facts.station_id!r}",
        )
    ingest = clip.ingest
    for name in INGEST_FIELDS:
        if not _same(row.get(name), ingest.get(name)):
            yield item, f"catalog {name} is {row.get(name)!r}, {at} says {ingest.get(name)!r}"
    state, told = _clip_state(clip)
    if row.get("state") != state:
        yield item, f"catalog state is {row.get('state')!r}, but in the log {told}"
    if clip.stored is not None and row.get("stored_at") != clip.stored.get("stored_at"):
        yield (
            item,
            f"catalog stored_at is {row.get('stored_at')!r}, "
            f"the store event (entry {clip.stored_seq}) says {clip.stored.get('stored_at')!r}",
        )


def _check_case_links(facts: LogFacts, catalog: CatalogSnapshot) -> Iterator[tuple[str, str]]:
    if catalog.case_clips is None:
        return
    rows = {(str(r.get("case")), str(r.get("clip"))) for r in catalog.case_clips}
    for case, clip in sorted(rows - set(facts.links)):
        yield (
            f"link case {case} - clip {clip}",
            "in the catalog, but no custody event links them: added behind the log's back",
        )
    for case, clip in sorted(set(facts.links) - rows):
        yield (
            f"link case {case} - clip {clip}",
            f"linked in the log (entry {facts.links[(case, clip)]}) but missing from the catalog",
        )


CATALOG_CHECKS: tuple[CatalogCheck, ...] = (_check_clips, _check_case_links)


def _same(actual: Any, expected: Any) -> bool:
    # 4.0 in the catalog is 4 in canonical JSON; bool is an int in Python but not here.
    numbers = (int, float)
    if (
        isinstance(actual, numbers)
        and isinstance(expected, numbers)
        and not isinstance(actual, bool)
        and not isinstance(expected, bool)
    ):
        return math.isclose(float(actual), float(expected), rel_tol=0.0, abs_tol=0.0)
    return bool(actual == expected) and type(actual) is type(expected)


# ---------------------------------------------------------------- one log, steps 1, 2 and 5


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


@dataclass(frozen=True)
class CheckpointInput:
    label: str  # how the report names it: a file path or "checkpoint <size>"
    declared_size: int  # the size its file name or catalog row gives
    note: str | None  # None when unreadable (the reader already named it)


@dataclass
class LogInput:
    station_id: str
    key: Ed25519Verifier | None  # None when no usable key was found (already reported)
    checkpoints: list[CheckpointInput]
    entry_chunks: Iterable[list[bytes]]
    collect_facts: bool
    trusted_note: str | None = None
    trusted_label: str = "trusted checkpoint"


def _audit_log(report: AuditReport, log: LogInput) -> tuple[LogSummary, LogFacts]:
    """Steps 1, 2 and 5 for one log, and the facts steps 3-4 need, in one pass over the entries."""
    sid = log.station_id
    origin = log_origin(sid)
    summary = LogSummary(sid, origin, key=log.key.key_string() if log.key else None)
    facts = LogFacts(sid)

    def add(step: int, item: str, message: str) -> None:
        report.add(step, item, message, station=sid)

    began = time.perf_counter()
    # 1. Signatures first: a note's text means nothing until its signature verifies.
    signed: list[tuple[CheckpointInput, Checkpoint]] = []
    for cp in log.checkpoints:
        if cp.note is None:
            continue
        if log.key is None:
            add(1, cp.label, "cannot be checked: the bundle has no usable public key")
            continue
        try:
            checkpoint = open_checkpoint(cp.note, log.key, origin=origin)
        except IntegrityError as e:
            add(1, cp.label, f"signature check failed: {e.message}")
            continue
        except InputError as e:
            add(1, cp.label, f"not a well-formed signed checkpoint: {e.message}")
            continue
        if checkpoint.size != cp.declared_size:
            add(
                1,
                cp.label,
                f"the signed note is for tree size {checkpoint.size}, not {cp.declared_size}",
            )
        signed.append((cp, checkpoint))
    summary.checkpoints = len(log.checkpoints)
    trusted = _open_trusted(report, log, origin)

    # 1. One pass: the tree (with its root at every checkpoint's size), the position of every
    # entry, and the entries steps 3-4 read.
    wanted = {c.size for _, c in signed} | ({trusted.size} if trusted else set())
    roots: dict[int, bytes] = {0: EMPTY_ROOT}
    plan = None
    newest = max((c.size for _, c in signed), default=0)
    if trusted is not None and trusted.size <= newest:
        # The consistency proof to the newest checkpoint, gathered during the pass (step 5).
        plan = ProofPlan(trusted.size, newest)
    stops = sorted(s for s in wanted | (plan.stops if plan else set()) if s > 0)
    if plan is not None and 0 in plan.stops:
        plan.peaks[0] = ()
    leaf_wanted = sorted(plan.leaves_wanted) if plan else []
    acc = MerkleAccumulator()
    parse_tails = tuple(
        b',"type":%s,"v":1}' % json.dumps(t).encode() for t in sorted(EVENT_REDUCERS)
    )
    key_tails = tuple(b',"type":%s,"v":1}' % json.dumps(t).encode() for t in sorted(KEY_EVENTS))
    if log.collect_facts:
        parse_tails += key_tails
    else:
        parse_tails = key_tails
    offset = 0  # seq - position, while entries are in step
    n = 0
    parse_s = 0.0
    perf_counter = time.perf_counter
    stop_i = leaf_i = 0
    for chunk in log.entry_chunks:
        pos, size = 0, len(chunk)
        while pos < size:
            take = size - pos
            if stop_i < len(stops):
                take = min(take, stops[stop_i] - acc.size)
            acc.extend_entries(chunk if take == size else chunk[pos : pos + take])
            pos += take
            while stop_i < len(stops) and acc.size == stops[stop_i]:
                if acc.size in wanted:
                    roots[acc.size] = acc.root()
                if plan is not None and acc.size in plan.stops:
                    plan.peaks[acc.size] = acc.peaks
                stop_i += 1
        while leaf_i < len(leaf_wanted) and leaf_wanted[leaf_i] < n + size:
            assert plan is not None
            plan.leaves[leaf_wanted[leaf_i]] = leaf_hash(chunk[leaf_wanted[leaf_i] - n])
            leaf_i += 1
        # Positions. Fast path: every entry of the chunk holds `,"seq":<its position>,`
        # (the tree, not this check, is what proves the order); a chunk where one does not is
        # read entry by entry, taking the top-level seq (the last one in canonical JSON), and
        # each place where entries were removed, inserted or reordered is named once.
        anomalous: set[int] = set()
        tokens = [b',"seq":%d,' % (i + offset) for i in range(n, n + size)]
        if -1 in map(bytes.rfind, chunk, tokens):
            for j, entry in enumerate(chunk):
                i = n + j
                p = entry.rfind(_SEQ_KEY)
                if p >= 0 and entry.startswith(b"%d," % (i + offset), p + 7):
                    continue
                anomalous.add(j)
                seq = _seq_at(entry, p)
                if seq is None:  # not the canonical spelling: read it the slow way
                    seq = _seq_from_json(entry)
                if seq is None:
                    add(1, f"entry {i}", "has no event number (seq): not a custody event")
                elif seq - i != offset:
                    offset = seq - i
                    if offset:
                        add(
                            1,
                            f"entry {i}",
                            f"holds event number {seq}: entries were removed, inserted or "
                            "reordered here",
                        )
        # The entries read in full: those steps 3-4 fold, key events, any entry that does not
        # end the way canonical JSON does, a sample, and the anomalous ones above. The form is
        # checked on all but the first group.
        use_idx = {
            j for j, e in enumerate(chunk) if e.endswith(parse_tails) or not e.endswith(_V_TAIL)
        }
        check_idx = {
            j for j in use_idx if chunk[j].endswith(key_tails) or not chunk[j].endswith(_V_TAIL)
        }
        check_idx |= anomalous
        check_idx.update(range((-n) % CANONICAL_SAMPLE_EVERY, size, CANONICAL_SAMPLE_EVERY))
        t0 = perf_counter()
        for j in sorted(use_idx | check_idx):
            canonical = j in check_idx
            _parse_into(report, facts, chunk[j], n + j, sid, use=j in use_idx, canonical=canonical)
            summary.parsed_entries += 1
            summary.canonical_checked += canonical
        parse_s += perf_counter() - t0
        n += size
    summary.entries = n
    summary.tree_root = acc.root()

    # 1. Every checkpoint against the rebuilt tree; a mismatch is narrowed down to the entries
    # after the last checkpoint that still matches.
    matched: dict[int, bool] = {}
    last_good = 0
    for cp, checkpoint in sorted(signed, key=lambda pair: pair[1].size):
        s = checkpoint.size
        if s > n:
            add(
                1,
                cp.label,
                f"covers {s} entries but the log has only {n}: entries were removed from the "
                "end (log truncated)",
            )
            matched[s] = False
        elif not compare_digest(roots[s], checkpoint.root_hash):
            add(
                1,
                cp.label,
                f"root hash does not match the entries: one of entries {last_good}..{s - 1} "
                "was changed, removed, inserted or reordered",
            )
            matched[s] = False
        else:
            matched.setdefault(s, True)
            last_good = s
    good = [(cp, c) for cp, c in signed if matched.get(c.size)]
    if good:
        latest_cp, latest = max(good, key=lambda pair: pair[1].size)
        summary.latest_size, summary.latest_root = latest.size, latest.root_hash
        summary.latest_note = latest_cp.note
        summary.unsigned_entries = n - latest.size
    else:
        summary.unsigned_entries = n
        if n:
            add(1, "checkpoints", "no signed checkpoint matches the log")
    _check_keys(report, log, facts, summary)
    report.steps[1].seconds += perf_counter() - began - parse_s
    report.steps[4].seconds += parse_s

    # 2. Consistency. Every checkpoint's root was recomputed from the one sequence of entries,
    # so those that matched are prefixes of one history; that is stronger than a consistency
    # proof, which is what a verifier without the entries uses. What is left to find here: two
    # signed roots for one size, and a checkpoint that disagrees while a later one agrees (it
    # was signed over another history).
    by_size: dict[int, tuple[CheckpointInput, Checkpoint]] = {}
    for cp, c in signed:
        other = by_size.setdefault(c.size, (cp, c))
        if other[0] is not cp and not compare_digest(other[1].root_hash, c.root_hash):
            add(
                2,
                cp.label,
                f"signed root differs from {other[0].label} for the same tree size {c.size}: "
                "the log forked",
            )
    later_good: int | None = None
    for size in sorted(matched, reverse=True):
        if matched[size]:
            later_good = later_good or size
        elif later_good is not None and size <= n:
            label = by_size[size][0].label
            add(
                2,
                label,
                f"inconsistent with the checkpoint of size {later_good}: that one matches the "
                "entries and this one does not, so they were signed over different histories",
            )
    if len(good) == len(signed):
        report.steps[2].detail = f"{len(good)} checkpoint(s) are prefixes of one history"
    else:
        report.limit(
            2,
            f"established for {len(good)} of {len(signed)} signed checkpoint(s): the others do "
            "not match the entries (step 1)",
        )

    # 5. Against the trusted checkpoint.
    if trusted is not None:
        t0 = perf_counter()
        _check_trusted(report, log, trusted, roots, n, signed, summary, plan)
        report.steps[5].seconds += perf_counter() - t0
    report.logs.append(summary)
    return summary, facts


def _open_trusted(report: AuditReport, log: LogInput, origin: str) -> Checkpoint | None:
    if log.trusted_note is None:
        return None
    label = log.trusted_label
    if log.key is None:
        report.add(5, label, "cannot be checked without the log's key", station=log.station_id)
        return None
    try:
        return open_checkpoint(log.trusted_note, log.key, origin=origin)
    except IntegrityError as e:
        report.add(
            5,
            label,
            f"{e.message}: it was not signed by this log's key (was the key swapped?)",
            station=log.station_id,
        )
    except InputError as e:
        raise InputError(
            f"the trusted checkpoint {label} is not a signed checkpoint: {e.message}",
            remedy="give a checkpoint file kept from an earlier bundle (stations/<id>/checkpoints/<size>)",
        ) from e
    return None


def _check_trusted(
    report: AuditReport,
    log: LogInput,
    trusted: Checkpoint,
    roots: dict[int, bytes],
    n: int,
    signed: Sequence[tuple[CheckpointInput, Checkpoint]],
    summary: LogSummary,
    plan: ProofPlan | None,
) -> None:
    sid, label, t = log.station_id, log.trusted_label, trusted.size
    summary.trusted_size = t

    def add(item: str, message: str) -> None:
        report.add(5, item, message, station=sid)

    for cp, c in signed:
        if c.size == t and not compare_digest(c.root_hash, trusted.root_hash):
            add(
                cp.label,
                f"signed for tree size {t} with another root than the trusted checkpoint: "
                "the station signed two histories (fork)",
            )
    if t > n:
        add(
            label,
            f"the log has {n} entries, fewer than the {t} the trusted checkpoint covers: it was "
            "truncated or rolled back",
        )
        return
    if not compare_digest(roots[t], trusted.root_hash):
        add(
            label,
            f"the log's first {t} entries are not those the trusted checkpoint signed: the log "
            "was rewritten (fork)",
        )
    latest = summary.latest_size
    if latest is None or latest < t:
        add(
            "latest checkpoint",
            f"the newest checkpoint is for size {latest}, older than the trusted size {t}: "
            "checkpoints were rolled back",
        )
        return
    assert summary.latest_root is not None
    if plan is None or plan.n != latest:
        return  # the newest signed checkpoint failed step 1; the roots above decided
    # The RFC 9162 consistency proof from the trusted tree to the latest, checked by the
    # RFC's algorithm: the proof an auditor can keep beside the two checkpoints.
    proof = plan.proof()
    summary.consistency_proof = proof
    try:
        verify_consistency(t, latest, trusted.root_hash, summary.latest_root, proof)
    except IntegrityError as e:
        add(label, f"not consistent with the latest checkpoint (size {latest}): {e.message}")


def _check_keys(report: AuditReport, log: LogInput, facts: LogFacts, summary: LogSummary) -> None:
    """The key that verifies the checkpoints must be one the log itself recorded."""
    if log.key is None:
        return
    recorded = [key for _, key in facts.keys]
    if not recorded:
        report.add(
            1,
            "key events",
            "the log records no key.created event: its first entries are missing",
            station=log.station_id,
        )
    elif log.key.key_string() not in recorded:
        first = facts.keys[0]
        report.add(
            1,
            "public key",
            f"{log.key.key_string()} is not a key the log recorded (entry {first[0]} records "
            f"{first[1]}): the public key was swapped",
            station=log.station_id,
        )


def _seq_at(entry: bytes, p: int) -> int | None:
    if p < 0:
        return None
    end = entry.find(b",", p + 7)
    digits = entry[p + 7 : end if end >= 0 else len(entry)]
    return int(digits) if digits.isdigit() else None


def _seq_from_json(entry: bytes) -> int | None:
    try:
        doc = json.loads(entry, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    seq = doc.get("seq") if isinstance(doc, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _parse_into(
    report: AuditReport,
    facts: LogFacts,
    entry: bytes,
    position: int,
    station_id: str,
    *,
    use: bool,
    canonical: bool,
) -> None:
    """Fold one entry into the facts when ``use``; when ``canonical``, check all its fields and
    its RFC 8785 form (else only the fields the reducers read: the sampled check is what keeps
    a million entries under the time budget)."""
    item = f"entry {position}"
    try:
        doc = _DECODER.decode(entry.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        report.add(1, item, "is not JSON text", station=station_id)
        return
    problem = _schema_problem(doc, None, station_id) if canonical else _fold_problem(doc)
    if problem is not None:
        report.add(1, item, problem, station=station_id)
        return
    if canonical and not _is_canonical(entry, doc):
        report.add(1, item, "is not in RFC 8785 canonical form", station=station_id)
    parsed = ParsedEntry(
        seq=doc["seq"],
        type=doc["type"],
        station=doc.get("station"),
        time=doc.get("time"),
        subject_kind=doc["subject"]["kind"],
        subject_id=doc["subject"]["id"],
        actor=doc.get("actor"),
        reason=doc.get("reason"),
        sha256=doc.get("sha256"),
        data=doc["data"],
    )
    if parsed.type in KEY_EVENTS:
        key = parsed.data.get("verifier_key")
        if isinstance(key, str):
            facts.keys.append((position, key))
    if use:
        reducer = EVENT_REDUCERS.get(parsed.type)
        if reducer is not None:
            reducer(facts, parsed)


def _fold_problem(doc: Any) -> str | None:
    """What keeps an entry from being folded into the facts, or None (run on every entry read)."""
    try:
        subject = doc["subject"]
        shaped = (
            type(doc["type"]) is str
            and type(doc["seq"]) is int
            and type(doc["data"]) is dict
            and type(subject["kind"]) is str
            and type(subject["id"]) is str
        )
    except (KeyError, TypeError):
        shaped = False
    if not shaped:
        return "lacks the type, seq, subject or data of a custody event"
    sha = doc.get("sha256")
    if sha is not None and not _is_sha256_hex(sha):
        return "sha256 is not 64 lower-case hex digits"
    return None


def _schema_problem(doc: Any, position: int | None, station_id: str) -> str | None:
    """What is wrong with an entry's fields, or None. ``position`` None: any event number
    (the audit's pass names entries out of place once, not every entry after them)."""
    if not isinstance(doc, dict):
        return "is not a JSON object"
    if doc.get("v") != 1:
        return f"has event format version {doc.get('v')!r}, not 1"
    seq = doc.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return f"event number {seq!r} is not a non-negative integer"
    if position is not None and seq != position:
        return f"holds event number {seq} at position {position}"
    if doc.get("station") != station_id:
        return f"is an event of station {doc.get('station')!r}, not {station_id!r}"
    for name in ("type", "actor", "reason", "time"):
        if not isinstance(doc.get(name), str):
            return f"has no text {name}"
    if not _is_time(doc["time"]):
        return f"time {doc['time']!r} is not RFC 3339 UTC with microseconds"
    subject = doc.get("subject")
    if (
        not isinstance(subject, dict)
        or set(subject) != {"kind", "id"}
        or not all(isinstance(v, str) for v in subject.values())
    ):
        return "subject is not {kind, id}"
    if not isinstance(doc.get("data"), dict):
        return "data is not an object"
    sha = doc.get("sha256")
    if sha is not None and not _is_sha256_hex(sha):
        return "sha256 is not 64 lower-case hex digits"
    extra = set(doc) - _ENTRY_FIELDS
    if extra:
        return f"has unknown fields {sorted(extra)}"
    return None


def _is_time(text: str) -> bool:
    """format_time's one spelling of an instant, and a real date (parse_time, without strptime)."""
    if _TIME.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_canonical(entry: bytes, doc: Any) -> bool:
    """Whether ``entry`` is the RFC 8785 form of ``doc``.

    json.dumps with sorted keys agrees with RFC 8785 except for numbers with a fraction or an
    exponent, integers beyond 2**53 and characters outside the Basic Multilingual Plane (key
    order); entries without those take the fast path, the others the rfc8785 library.
    """
    if _NEEDS_RFC8785.search(entry) is None:
        fast = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        try:
            return fast.encode("utf-8") == entry
        except UnicodeEncodeError:
            return False
    try:
        return canonical_json(doc) == entry
    except InputError:
        return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # NaN and Infinity are not JSON


def _is_sha256_hex(value: Any) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


# ---------------------------------------------------------------- steps 3 and 4


def _cross_check(report: AuditReport, facts: LogFacts, catalog: CatalogSnapshot) -> None:
    t0 = time.perf_counter()
    for item, message in facts.problems:
        report.add(4, item, message, station=facts.station_id)
    for check in CATALOG_CHECKS:
        for item, message in check(facts, catalog):
            report.add(4, item, message, station=facts.station_id)
    report.steps[4].seconds += time.perf_counter() - t0


def _check_objects(
    report: AuditReport,
    station: Station,
    facts: LogFacts,
    store_keys: Iterable[str],
    *,
    local: bool = True,
    report_orphans: bool = True,
) -> int:
    """Step 3: every clip's bytes against its ingest hash, and every stored object against the log."""
    from evidence_agent.io.spool import hash_file

    sid = facts.station_id
    t0 = time.perf_counter()
    checked = 0
    in_store = set(store_keys)
    for clip in facts.clips.values():
        item = f"object {clip.sha256}"
        if clip.object_removed_seq is not None and clip.sha256 not in in_store:
            continue  # removed at the end of its retention, as the log records
        try:
            if (
                clip.stored is not None
                or clip.sha256 in in_store
                or station.store.exists(clip.sha256)
            ):
                station.store.verify(clip.sha256)
            elif not local:
                report.limit(
                    3,
                    f"clip {clip.clip_id} of station {sid} waits in that station's spool; it is checked there",
                )
                continue
            else:
                path = station.spool.path_of(clip.sha256)
                if path.exists():
                    actual = hash_file(path)
                    if not compare_digest(actual.encode(), clip.sha256.encode()):
                        report.add(
                            3,
                            item,
                            f"spooled copy of clip {clip.clip_id} hashes to {actual}",
                            station=sid,
                        )
                elif station.store.exists(clip.sha256):
                    station.store.verify(clip.sha256)  # stored since the log was read
                else:
                    report.add(
                        3,
                        item,
                        f"clip {clip.clip_id} is neither in the spool nor in the store",
                        station=sid,
                    )
            checked += 1
        except IntegrityError as e:
            report.add(3, item, f"clip {clip.clip_id}: {e.message}", station=sid)
        except (EvidenceError, OSError, ValueError) as e:
            report.add(
                3, item, f"clip {clip.clip_id} could not be read: {e}", station=sid, kind="error"
            )
    for sha in sorted(in_store - set(facts.by_sha256)) if report_orphans else ():
        report.add(
            3,
            f"object {sha}",
            "is in the object store but no clip.ingested event has this hash",
            station=sid,
        )
    report.steps[3].seconds += time.perf_counter() - t0
    return checked


# ---------------------------------------------------------------- verifying a bundle


def verify_bundle(
    path: Path, *, trusted_checkpoint: Path | None = None, trusted_key: Path | None = None
) -> AuditReport:
    """Verify an exported bundle with nothing but its files (and the auditor's own anchors)."""
    started = time.perf_counter()
    report = AuditReport("bundle", str(path), datetime.now(UTC))
    trusted_note = _read_trusted_checkpoint(trusted_checkpoint)
    pinned = _read_trusted_key(trusted_key)
    b = bundle_format.open_bundle(path)
    routed = _route_trusted(report, trusted_note, b.station_ids)
    if pinned is not None and pinned.name not in {log_origin(s) for s in b.station_ids}:
        report.add(
            1,
            "trusted key",
            f"is for log {pinned.name!r}, which is not in this bundle",
            station=None,
        )
    for sid in b.station_ids:
        key = _bundle_key(report, b, sid, pinned)
        t0 = time.perf_counter()
        catalog = CatalogSnapshot(
            clips=b.catalog_rows(sid, "clips"), case_clips=b.catalog_rows(sid, "case_clips")
        )
        _check_row_shapes(catalog, sid)
        report.steps[4].seconds += time.perf_counter() - t0
        has_catalog = catalog.clips is not None or catalog.case_clips is not None
        checkpoints = [CheckpointInput(c.path, c.size, c.text) for c in b.checkpoints(sid)]
        log = LogInput(
            station_id=sid,
            key=key,
            checkpoints=checkpoints,
            entry_chunks=b.entries(sid),
            collect_facts=has_catalog,
            trusted_note=routed.get(sid),
            trusted_label=str(trusted_checkpoint) if trusted_checkpoint else "trusted checkpoint",
        )
        _, facts = _audit_log(report, log)
        if has_catalog:
            _cross_check(report, facts, catalog)
    for problem in b.finish():
        report.add(1, f"file {problem.path}", problem.message, station=None)
    report.limit(
        3,
        "not run: a bundle carries no evidence objects; run `evidence-agent verify` where the "
        "object store is reachable",
        skipped=True,
    )
    tables = [
        t
        for t in bundle_format.CATALOG_TABLES
        if any((b.root / bundle_format.catalog_path(s, t)).exists() for s in b.station_ids)
    ]
    if tables:
        report.limit(
            4,
            f"against the catalog rows the bundle carries ({', '.join(tables)}), as exported "
            "by the station; on the station itself it reads the live catalog",
        )
    else:
        report.limit(4, "not run: the bundle carries no catalog rows", skipped=True)
    _finish(report, trusted_note, started)
    return report


def _bundle_key(
    report: AuditReport,
    b: bundle_format.Bundle,
    sid: str,
    pinned: Ed25519Verifier | None,
) -> Ed25519Verifier | None:
    origin = log_origin(sid)
    vkey_rel = bundle_format.verifier_key_path(sid)
    text = b.read_text(vkey_rel)
    key: Ed25519Verifier | None = None
    if text is not None:
        try:
            key = Ed25519Verifier.from_key_string(text.strip())
        except InputError as e:
            report.add(1, f"file {vkey_rel}", f"not a verifier key: {e.message}", station=sid)
    if key is not None and key.name != origin:
        report.add(1, f"file {vkey_rel}", f"is a key for {key.name!r}, not {origin!r}", station=sid)
    pem_rel = bundle_format.public_pem_path(sid)
    pem = b.read_bytes(pem_rel)
    if pem is not None and key is not None:
        try:
            public = serialization.load_pem_public_key(pem)
        except ValueError:
            report.add(1, f"file {pem_rel}", "is not a PEM public key", station=sid)
        else:
            raw = public.public_bytes_raw() if isinstance(public, Ed25519PublicKey) else b""
            if not compare_digest(raw, key.public_key):
                report.add(
                    1,
                    f"file {pem_rel}",
                    f"is not the same key as {bundle_format.VERIFIER_KEY_FILE}: an OpenSSL "
                    "check would use another key (swapped)",
                    station=sid,
                )
    if pinned is not None:
        if pinned.name != origin:
            return key
        if key is None or key.key_string() != pinned.key_string():
            report.add(
                1,
                f"file {vkey_rel}",
                f"is not the trusted key {pinned.key_string()}: the public key was swapped",
                station=sid,
            )
        return pinned
    return key


# Fields a bundle's row may lack: bundles exported before the catalog had them. The cross-check
# reads a missing field as null, which is what the ingest events of that time say too.
_ROW_FIELDS_ADDED_SINCE = frozenset({"blake3"})


def _check_row_shapes(catalog: CatalogSnapshot, sid: str) -> None:
    for name, rows, fields in (
        ("clips", catalog.clips, CLIP_ROW_FIELDS),
        ("case_clips", catalog.case_clips, CASE_CLIP_ROW_FIELDS),
    ):
        required = set(fields) - _ROW_FIELDS_ADDED_SINCE
        for number, row in enumerate(rows or (), start=1):
            if not required <= set(row) <= set(fields):
                raise InputError(
                    f"malformed bundle: stations/{sid}/catalog/{name}.jsonl line {number} "
                    f"does not have the fields {sorted(fields)}"
                )


def _route_trusted(
    report: AuditReport, note: str | None, stations: Sequence[str]
) -> dict[str, str]:
    """Which station's log a trusted checkpoint is for, by its origin line."""
    if note is None:
        return {}
    origin = note.split("\n", 1)[0]
    for sid in stations:
        if log_origin(sid) == origin:
            return {sid: note}
    report.add(
        5,
        "trusted checkpoint",
        f"is for log {origin!r}, which is not among the logs verified here: a station's log "
        "is missing",
        station=None,
    )
    return {}


def _finish(report: AuditReport, trusted_note: str | None, started: float) -> None:
    step1 = report.steps[1]
    if step1.status != "failed":
        step1.detail = "; ".join(
            f"{s.station}: {s.entries} entries, {s.checkpoints} checkpoint(s), latest size "
            f"{s.latest_size}"
            for s in report.logs
        )
    parsed = sum(s.parsed_entries for s in report.logs)
    canonical = sum(s.canonical_checked for s in report.logs)
    report.notes.append(
        f"{parsed} entr(ies) parsed and their fields checked (those steps 3-4 read, key events "
        f"and a sample); RFC 8785 canonical form checked on {canonical}: key events, 1 in "
        f"{CANONICAL_SAMPLE_EVERY} of all entries and any entry not shaped like canonical JSON. "
        "Every entry's bytes are hashed into the tree exactly as stored"
    )
    if trusted_note is None:
        report.limit(
            5,
            "not run: give --trusted-checkpoint FILE, a checkpoint kept from an earlier audit",
            skipped=True,
        )
    elif report.steps[5].status != "failed":
        report.steps[5].detail = "the log extends the trusted checkpoint"
    report.seconds = time.perf_counter() - started


def _read_trusted_checkpoint(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            raw = f.read(bundle_format.MAX_SMALL_FILE + 1)
    except OSError as e:
        raise InputError(f"cannot read the trusted checkpoint {path}: {e.strerror}") from e
    if len(raw) > bundle_format.MAX_SMALL_FILE:
        raise InputError(f"{path} is too large to be a checkpoint")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"the trusted checkpoint {path} is not UTF-8 text") from e


def _read_trusted_key(path: Path | None) -> Ed25519Verifier | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the trusted key {path}: {e}") from e
    return Ed25519Verifier.from_key_string(text.strip())


# ---------------------------------------------------------------- the live station


def _db_station_ids(session: Session) -> set[str]:
    from sqlmodel import select

    from evidence_agent.catalog.models import CustodyHead

    return set(session.exec(select(CustodyHead.station_id)))


def _key_from_log(report: AuditReport, session: Session, station_id: str) -> Ed25519Verifier | None:
    """Another station's key, as its log recorded it at first start (key.created)."""
    for _, entry, _ in _db_entries(session, station_id, below=1):
        try:
            doc = json.loads(entry)
            return Ed25519Verifier.from_key_string(doc["data"]["verifier_key"])
        except (ValueError, KeyError, TypeError, EvidenceError):
            break
    report.add(
        1,
        "station key",
        "the log's first entry does not record the station's key",
        station=station_id,
    )
    return None


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Session]:
    """One consistent read of the catalog.

    SQLite: the agent's engine begins every transaction IMMEDIATE, so writers wait (up to their
    busy timeout) while the log is read; PostgreSQL: a read-only REPEATABLE READ transaction.
    """
    from sqlmodel import Session

    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
    with Session(engine) as session, session.begin():
        yield session


def _db_entries(
    session: Session, station_id: str, *, below: int | None = None
) -> Iterator[tuple[int, bytes, bytes | None]]:
    from sqlmodel import col, select

    from evidence_agent.catalog.models import CustodyEntry

    query = (
        select(col(CustodyEntry.seq), col(CustodyEntry.entry), col(CustodyEntry.leaf_hash))
        .where(CustodyEntry.station_id == station_id)
        .order_by(col(CustodyEntry.seq))
        .execution_options(yield_per=20_000)
    )
    if below is not None:
        query = query.where(col(CustodyEntry.seq) < below)
    for seq, entry, leaf in session.execute(query):
        yield seq, _as_bytes(entry), _as_bytes(leaf) if leaf is not None else None


def _as_bytes(value: Any) -> bytes:
    """A BLOB column's value; SQLite lets a hand edit leave TEXT (or a number) in its place."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return str(value).encode("ascii")


def _db_entry_chunks(
    report: AuditReport, session: Session, station_id: str
) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for seq, entry, stored_leaf in _db_entries(session, station_id):
        if stored_leaf is None or not compare_digest(stored_leaf, leaf_hash(entry)):
            report.add(
                1,
                f"entry {seq}",
                "its bytes do not hash to the leaf hash stored beside them: the entry was "
                "changed in the catalog",
                station=station_id,
            )
        chunk.append(entry)
        if len(chunk) == 20_000:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _db_checkpoints(session: Session, station_id: str) -> list[CheckpointInput]:
    from sqlmodel import col, select

    from evidence_agent.catalog.models import CustodyCheckpoint

    rows = session.exec(
        select(CustodyCheckpoint)
        .where(CustodyCheckpoint.station_id == station_id)
        .order_by(col(CustodyCheckpoint.size))
    )
    return [CheckpointInput(f"checkpoint {r.size}", r.size, r.note) for r in rows]


def _db_catalog(session: Session, station_id: str) -> CatalogSnapshot:
    from sqlmodel import col, select

    from evidence_agent.catalog.models import Case, CaseClip, Clip, Officer, Recorder, Unit

    query = (
        select(Clip, Recorder.serial, Officer.badge, Unit.code)
        .outerjoin(Recorder, col(Clip.recorder_id) == col(Recorder.id))
        .outerjoin(Officer, col(Clip.officer_id) == col(Officer.id))
        .outerjoin(Unit, col(Clip.unit_id) == col(Unit.id))
        .where(Clip.station_id == station_id)
        .order_by(col(Clip.ingested_at), col(Clip.id))
    )
    clips = [clip_row(c, serial, badge, code) for c, serial, badge, code in session.exec(query)]
    link_query = (
        select(Case.number, CaseClip.clip_id)
        .join(Case, col(Case.id) == col(CaseClip.case_id))
        .join(Clip, col(Clip.id) == col(CaseClip.clip_id))
        .where(Clip.station_id == station_id)
        .order_by(col(Case.number), col(CaseClip.clip_id))
    )
    links = [{"case": number, "clip": clip_id} for number, clip_id in session.exec(link_query)]
    return CatalogSnapshot(clips=clips, case_clips=links)


def clip_row(
    clip: Clip, recorder: str | None, officer: str | None, unit: str | None
) -> dict[str, Any]:
    """A catalog clip row in the ingest event's spelling (see ingest.ingest_event_data)."""

    def t(value: datetime | None) -> str | None:
        return format_time(value) if value is not None else None

    return {
        "id": clip.id,
        "sha256": clip.sha256,
        "station": clip.station_id,
        "state": clip.state,
        "stored_at": t(clip.stored_at),
        "size": clip.size,
        "blake3": clip.blake3,
        "sm3": clip.sm3,
        "media_kind": clip.media_kind,
        "source_path": clip.source_path,
        "source_path_hex": _as_bytes(clip.source_path_bytes).hex(),
        "recorded_start": t(clip.recorded_start),
        "recorded_end": t(clip.recorded_end),
        "time_source": clip.time_source,
        "duration_seconds": clip.duration_seconds,
        "ingested_at": t(clip.ingested_at),
        "recorder": recorder,
        "officer": officer,
        "unit": unit,
        "important": clip.important,
        "flags": _json_list(clip.flags),
        "dock_session": clip.dock_session_id,
    }


def _json_list(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # kept as found: the cross-check then names the field


def verify_station(
    station: Station,
    *,
    trusted_checkpoint: Path | None = None,
    trusted_key: Path | None = None,
) -> AuditReport:
    """Verify the live station: its catalog, its log, its object store."""
    started = time.perf_counter()
    sid = station.settings.station_id
    report = AuditReport("station", f"{sid} ({station.store.describe()})", datetime.now(UTC))
    trusted_note = _read_trusted_checkpoint(trusted_checkpoint)
    pinned = _read_trusted_key(trusted_key)
    key = station.custody.signer.verifier
    if pinned is not None and pinned.key_string() != key.key_string():
        report.add(
            1,
            "station key",
            f"the station signs with {key.key_string()}, not the trusted key "
            f"{pinned.key_string()}: the key was swapped",
            station=sid,
        )
        key = pinned
    # Listed before the catalog is read: an object put before then has its ingest event
    # committed before then, so none is wrongly reported as unknown to the log.
    store_keys = list(station.store.iter_keys())
    audited: list[tuple[LogSummary, LogFacts, CatalogSnapshot]] = []
    with _snapshot(station.engine) as session:
        # A shared catalog holds every station's log: each one is verified, this station's first.
        others = sorted(_db_station_ids(session) - {sid})
        routed = _route_trusted(report, trusted_note, [sid, *others])
        for log_sid in [sid, *others]:
            log_key = key if log_sid == sid else _key_from_log(report, session, log_sid)
            log = LogInput(
                station_id=log_sid,
                key=log_key,
                checkpoints=_db_checkpoints(session, log_sid),
                entry_chunks=_db_entry_chunks(report, session, log_sid),
                collect_facts=True,
                trusted_note=routed.get(log_sid),
                trusted_label=str(trusted_checkpoint)
                if trusted_checkpoint
                else "trusted checkpoint",
            )
            log_summary, facts = _audit_log(report, log)
            _check_head(report, session, log_sid, log_summary)
            try:
                catalog = _db_catalog(session, log_sid)
            except (ValueError, TypeError) as e:  # a value no row written by the agent can hold
                report.add(4, "catalog", f"a clip or link row cannot be read: {e}", station=log_sid)
                catalog = CatalogSnapshot()
            audited.append((log_summary, facts, catalog))
    checked = 0
    known: set[str] = set()
    for _, facts, catalog in audited:
        _cross_check(report, facts, catalog)
        checked += _check_objects(
            report, station, facts, store_keys, local=facts.station_id == sid, report_orphans=False
        )
        known.update(facts.by_sha256)
    for sha in sorted(set(store_keys) - known):
        report.add(
            3,
            f"object {sha}",
            "is in the object store but no clip.ingested event of any station's log has this hash",
            station=sid,
        )
    summary = audited[0][0]
    clips_total = sum(len(c.clips or ()) for _, _, c in audited)
    links_total = sum(len(c.case_clips or ()) for _, _, c in audited)
    if report.steps[3].status != "failed":
        report.steps[3].detail = f"{checked} object(s) re-hashed, {len(store_keys)} in the store"
    if report.steps[4].status != "failed":
        report.steps[4].detail = f"{clips_total} clip row(s), {links_total} case link(s)"
    if others:
        report.notes.append(
            f"{len(others)} other station log(s) in this catalog verified ({', '.join(others)}) with "
            "the key each log recorded at its first start; pin a key with --trusted-key to make "
            "that check independent of the catalog"
        )
    if summary.unsigned_entries:
        report.notes.append(
            f"{summary.unsigned_entries} entr(ies) after the latest checkpoint are not signed "
            "yet; `evidence-agent custody checkpoint` signs them"
        )
    _finish(report, trusted_note, started)
    return report


def _check_head(report: AuditReport, session: Session, sid: str, summary: LogSummary) -> None:
    """The tree state the station appends to must be the tree of the entries."""
    from evidence_agent.catalog.models import CustodyHead

    head = session.get(CustodyHead, sid)
    if head is None:
        if summary.entries:
            report.add(1, "custody head", "is missing", station=sid)
        return
    peaks = [head.frontier[i : i + HASH_SIZE] for i in range(0, len(head.frontier), HASH_SIZE)]
    if head.size != summary.entries:
        report.add(
            1,
            "custody head",
            f"says the log has {head.size} entries, but {summary.entries} are stored: entries "
            "were removed or added behind the log's back",
            station=sid,
        )
        return
    try:
        root = MerkleAccumulator.restore(head.size, peaks).root()
    except InputError as e:
        report.add(1, "custody head", f"is corrupt: {e.message}", station=sid)
        return
    if summary.tree_root is not None and not compare_digest(root, summary.tree_root):
        report.add(
            1,
            "custody head",
            "its tree root differs from the root of the stored entries: entries were changed "
            "after they were appended",
            station=sid,
        )


def verify(
    *,
    station: Station | None = None,
    bundle: Path | None = None,
    trusted_checkpoint: Path | None = None,
    trusted_key: Path | None = None,
) -> AuditReport:
    """Verify a bundle when one is given, else the live station."""
    if bundle is not None:
        return verify_bundle(bundle, trusted_checkpoint=trusted_checkpoint, trusted_key=trusted_key)
    if station is None:
        raise InputError("give a station or a bundle to verify")
    return verify_station(station, trusted_checkpoint=trusted_checkpoint, trusted_key=trusted_key)


# ---------------------------------------------------------------- export


def export_bundle(station: Station, dest: Path) -> BundleSummary:
    """Sign the log's current head and export log, checkpoints, key and catalog rows to ``dest``.

    The export is itself an event (audit.exported), signed by the checkpoint made with it, so
    the bundle ends on a checkpoint that covers every entry in it.
    """
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InputError(
            f"{dest} already exists and is not an empty directory",
            remedy="give a new directory name; a bundle is never written over another",
        )
    sid = station.settings.station_id
    with station.transaction() as session:
        station.record(
            session,
            CustodyEvent(
                type="audit.exported",
                subject_kind="station",
                subject_id=sid,
                actor=station.actor,
                reason="custody log, checkpoints, public key and catalog rows exported for audit",
                data={"directory": _printable(dest.absolute())},
            ),
        )
        station.custody.checkpoint(session)
    verifier = station.custody.signer.verifier
    with _snapshot(station.engine) as session:
        # Checkpoints first: the log only grows, so every one of them is covered by the entries
        # read after it.
        checkpoints = [(c.declared_size, c.note or "") for c in _db_checkpoints(session, sid)]
        catalog = _db_catalog(session, sid)
        export = StationExport(
            station_id=sid,
            verifier_key=verifier.key_string(),
            public_key_pem=verifier.public_key_pem(),
            entries=(entry for _, entry, _ in _db_entries(session, sid)),
            checkpoints=checkpoints,
            catalog={"clips": catalog.clips or [], "case_clips": catalog.case_clips or []},
        )
        return bundle_format.write_bundle(
            dest, [export], created_at=station.clock.now(), created_by=station.actor
        )


def make_checkpoint(station: Station) -> dict[str, Any]:
    """Sign the log's head now (if anything is unsigned) and describe the latest checkpoint."""
    with station.transaction() as session:
        made = station.custody.checkpoint(session)
        latest = station.custody.latest_checkpoint(session)
    if latest is None:
        raise NotFoundError("the custody log is empty: there is nothing to sign")
    checkpoint = open_checkpoint(
        latest.note, station.custody.signer.verifier, origin=station.custody.origin
    )
    return {
        "made": made is not None,
        "size": checkpoint.size,
        "root_hash": _b64(checkpoint.root_hash),
        "note": latest.note,
    }


def _printable(path: Path) -> str:
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


# ---------------------------------------------------------------- inclusion proofs

PROOF_FORMAT = "evidence-agent/inclusion-proof"
PROOF_VERSION = 1
_PROOF_KEYS = frozenset(
    {
        "format",
        "version",
        "station",
        "origin",
        "clip",
        "sha256",
        "verifier_key",
        "public_key_pem",
        "checkpoint",
        "tree_size",
        "root_hash",
        "events",
        "made_at",
        "made_by",
    }
)
_PROOF_EVENT_KEYS = frozenset({"seq", "type", "entry", "leaf_hash", "inclusion_proof"})


def prove(station: Station, clip_ref: str) -> dict[str, Any]:
    """Inclusion proofs of a clip's events against the latest checkpoint, verifiable offline.

    The document carries the entries, the signed checkpoint and the verifier key, so
    `verify-proof` needs nothing else. A checkpoint is made first if events are unsigned.
    """
    from evidence_agent.catalog.queries import find_clip

    sid = station.settings.station_id
    verifier = station.custody.signer.verifier
    with station.transaction() as session:
        station.custody.checkpoint(session)
    with _snapshot(station.engine) as session:
        clip = find_clip(session, clip_ref)
        if clip is None:
            raise NotFoundError(
                f"no clip {clip_ref!r} in the catalog",
                remedy="give a clip id, a unique id prefix (6+ characters) or the SHA-256",
            )
        row = station.custody.latest_checkpoint(session)
        if row is None:
            raise NotFoundError("the custody log has no checkpoint yet")
        note = row.note
        checkpoint = open_checkpoint(note, verifier, origin=log_origin(sid))
        entries = [e for _, e, _ in _db_entries(session, sid, below=checkpoint.size)]
        clip_id, catalog_sha = clip.id, clip.sha256
    doc = proof_document(
        station_id=sid,
        clip_id=clip_id,
        entries=entries,
        note=note,
        verifier=verifier,
        made_at=station.clock.now(),
        made_by=station.actor,
    )
    if not compare_digest(doc["sha256"].encode(), catalog_sha.encode()):
        raise IntegrityError(
            f"clip {clip_id}: the catalog's sha256 {catalog_sha} is not the ingest event's "
            f"{doc['sha256']}",
            remedy="run `evidence-agent verify`",
        )
    return doc


def proof_document(
    *,
    station_id: str,
    clip_id: str,
    entries: Sequence[bytes],
    note: str,
    verifier: Ed25519Verifier,
    made_at: datetime,
    made_by: str,
) -> dict[str, Any]:
    """The proof document of a clip's events in the tree of ``entries`` signed by ``note``.

    Raises IntegrityError when the entries are not the tree the note signed, or the clip has
    no ingest event in it. Making each proof is O(n) (merkle.inclusion_proof); a clip has a
    handful of events.
    """
    origin = log_origin(station_id)
    checkpoint = open_checkpoint(note, verifier, origin=origin)
    if len(entries) != checkpoint.size:
        raise IntegrityError(
            f"the log holds {len(entries)} entries below its latest checkpoint's size "
            f"{checkpoint.size}: entries were removed",
            remedy="run `evidence-agent verify`",
        )
    leaves = [leaf_hash(e) for e in entries]
    acc = MerkleAccumulator()
    acc.extend(leaves)
    if not compare_digest(acc.root(), checkpoint.root_hash):
        raise IntegrityError(
            "the log's entries do not match its latest signed checkpoint",
            remedy="run `evidence-agent verify` to find the changed entries",
        )
    # Find the clip's events from the entries themselves, not from the catalog's index column.
    token = b'"subject":{"id":' + json.dumps(clip_id).encode() + b',"kind":"clip"}'
    events = []
    ingest_sha: str | None = None
    for seq, entry in enumerate(entries):
        if token not in entry:
            continue
        doc = json.loads(entry)
        if doc.get("type") == "clip.ingested":
            ingest_sha = doc.get("sha256")
        proof = inclusion_proof(leaves, seq)
        verify_inclusion(leaves[seq], seq, checkpoint.size, proof, checkpoint.root_hash)
        events.append(
            {
                "seq": seq,
                "type": doc.get("type"),
                "entry": entry.decode("utf-8"),
                "leaf_hash": leaves[seq].hex(),
                "inclusion_proof": [h.hex() for h in proof],
            }
        )
    if not isinstance(ingest_sha, str):
        raise IntegrityError(
            f"clip {clip_id} has no clip.ingested event in the signed log",
            remedy="run `evidence-agent verify`",
        )
    return {
        "format": PROOF_FORMAT,
        "version": PROOF_VERSION,
        "station": station_id,
        "origin": origin,
        "clip": clip_id,
        "sha256": ingest_sha,
        "verifier_key": verifier.key_string(),
        "public_key_pem": verifier.public_key_pem(),
        "checkpoint": note,
        "tree_size": checkpoint.size,
        "root_hash": checkpoint.root_hash.hex(),
        "events": events,
        "made_at": format_time(made_at),
        "made_by": made_by,
    }


def verify_proof_file(path: Path, *, trusted_key: Path | None = None) -> dict[str, Any]:
    """Check a proof document offline; return what it proves.

    Raises InputError for a file that is not a proof document, IntegrityError naming the item
    when a signature, hash or proof fails.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PROOF_FILE + 1)
    except OSError as e:
        raise InputError(f"cannot read the proof {path}: {e.strerror}") from e
    if len(raw) > MAX_PROOF_FILE:
        raise InputError(f"{path} is larger than any proof document")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(f"malformed proof: {path} is not JSON text") from e
    return verify_proof(doc, trusted_key=_read_trusted_key(trusted_key))


def verify_proof(doc: Any, *, trusted_key: Ed25519Verifier | None = None) -> dict[str, Any]:
    """Check a parsed proof document; see verify_proof_file."""
    p = _parse_proof(doc)
    origin = log_origin(p["station"])
    if p["origin"] != origin:
        raise InputError(f"malformed proof: origin {p['origin']!r} is not {origin!r}")
    key = Ed25519Verifier.from_key_string(p["verifier_key"])
    if trusted_key is not None:
        if trusted_key.key_string() != key.key_string():
            raise IntegrityError(
                f"the proof's key {key.key_string()} is not the trusted key "
                f"{trusted_key.key_string()}"
            )
        key = trusted_key
    try:
        pem_key = serialization.load_pem_public_key(p["public_key_pem"].encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        raise InputError("malformed proof: public_key_pem is not a PEM public key") from e
    if not isinstance(pem_key, Ed25519PublicKey) or not compare_digest(
        pem_key.public_bytes_raw(), key.public_key
    ):
        raise IntegrityError("the proof's PEM public key is not its verifier key")
    # 1. The checkpoint: signature, then the tree it names.
    checkpoint = open_checkpoint(p["checkpoint"], key, origin=origin)
    if checkpoint.size != p["tree_size"] or not compare_digest(
        checkpoint.root_hash, p["root_hash"]
    ):
        raise IntegrityError("tree_size or root_hash differ from the signed checkpoint's")
    # 2. Each event: its leaf hash, its inclusion proof, and that it is about this clip.
    verified = []
    for event in p["events"]:
        seq, entry = event["seq"], event["entry"]
        item = f"event {seq}"
        leaf = leaf_hash(entry)
        if not compare_digest(leaf, event["leaf_hash"]):
            raise IntegrityError(f"{item}: the entry does not hash to its leaf hash (changed)")
        try:
            verify_inclusion(
                leaf, seq, checkpoint.size, event["inclusion_proof"], checkpoint.root_hash
            )
        except IntegrityError as e:
            raise IntegrityError(f"{item}: {e.message}") from e
        try:
            entry_doc = json.loads(entry)
        except ValueError as e:
            raise IntegrityError(f"{item}: the entry is not JSON") from e
        problem = _schema_problem(entry_doc, seq, p["station"])
        if problem is not None:
            raise IntegrityError(f"{item}: the entry {problem}")
        if entry_doc["subject"] != {"kind": "clip", "id": p["clip"]}:
            raise IntegrityError(f"{item}: the entry is not about clip {p['clip']}")
        if entry_doc["type"] != event["type"]:
            raise IntegrityError(f"{item}: the entry's type is {entry_doc['type']!r}")
        if entry_doc["type"] == "clip.ingested" and entry_doc.get("sha256") != p["sha256"]:
            raise IntegrityError(f"{item}: the ingest event's sha256 is not {p['sha256']}")
        verified.append(
            {
                "seq": seq,
                "type": entry_doc["type"],
                "time": entry_doc["time"],
                "actor": entry_doc["actor"],
                "reason": entry_doc["reason"],
            }
        )
    if not any(e["type"] == "clip.ingested" for e in verified):
        raise IntegrityError("the proof has no clip.ingested event for the clip")
    return {
        "valid": True,
        "clip": p["clip"],
        "sha256": p["sha256"],
        "station": p["station"],
        "verifier_key": key.key_string(),
        "checkpoint": {"size": checkpoint.size, "root_hash": _b64(checkpoint.root_hash)},
        "events": verified,
    }


def _parse_proof(doc: Any) -> dict[str, Any]:
    """The proof document with its hashes decoded; InputError for anything else."""

    def bad(what: str) -> InputError:
        return InputError(
            f"malformed proof: {what}", remedy="give a file made by `evidence-agent prove`"
        )

    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    if doc.get("format") != PROOF_FORMAT:
        raise bad(f"format is {doc.get('format')!r}, not {PROOF_FORMAT!r}")
    if doc.get("version") != PROOF_VERSION:
        raise bad(f"version {doc.get('version')!r} is not {PROOF_VERSION}")
    if set(doc) != _PROOF_KEYS:
        raise bad(f"fields differ from the format: {sorted(set(doc) ^ _PROOF_KEYS)}")
    for name in (
        "station",
        "origin",
        "clip",
        "verifier_key",
        "public_key_pem",
        "checkpoint",
        "made_at",
        "made_by",
    ):
        if not isinstance(doc[name], str):
            raise bad(f"{name} is not text")
    if not _is_sha256_hex(doc["sha256"]):
        raise bad("sha256 is not 64 lower-case hex digits")
    size = doc["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise bad("tree_size is not a positive integer")
    out = dict(doc)
    out["root_hash"] = _hash_hex(doc["root_hash"], "root_hash", bad)
    events = doc["events"]
    if not isinstance(events, list) or not events:
        raise bad("events is not a non-empty list")
    parsed = []
    for number, event in enumerate(events):
        if not isinstance(event, dict) or set(event) != _PROOF_EVENT_KEYS:
            raise bad(f"event {number} does not have the fields {sorted(_PROOF_EVENT_KEYS)}")
        seq = event["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < size:
            raise bad(f"event {number}: seq is not an index into the tree")
        if not isinstance(event["entry"], str) or not isinstance(event["type"], str):
            raise bad(f"event {number}: entry and type must be text")
        try:
            entry = event["entry"].encode("utf-8")
        except UnicodeEncodeError as e:
            raise bad(f"event {number}: entry is not UTF-8 text") from e
        path = event["inclusion_proof"]
        if not isinstance(path, list) or len(path) > 64:
            raise bad(f"event {number}: inclusion_proof is not a list of hashes")
        parsed.append(
            {
                "seq": seq,
                "type": event["type"],
                "entry": entry,
                "leaf_hash": _hash_hex(event["leaf_hash"], f"event {number} leaf_hash", bad),
                "inclusion_proof": [
                    _hash_hex(h, f"event {number} inclusion_proof", bad) for h in path
                ],
            }
        )
    out["events"] = parsed
    return out


def _hash_hex(value: Any, what: str, bad: Callable[[str], InputError]) -> bytes:
    if not _is_sha256_hex(value):
        raise bad(f"{what} is not a SHA-256 in lower-case hex")
    return bytes.fromhex(value)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")
