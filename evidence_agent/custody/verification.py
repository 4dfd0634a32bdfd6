"""Verification of one custody log over plain values: steps 1, 2 and 5 of docs/audit.md.

1. rebuild the RFC 9162 tree from the entries and check every checkpoint's signature and root;
2. check that successive checkpoints are consistent (one history, never rewritten);
3. re-hash every stored object against its ingest event (services/audit/verify_station.py:
   it needs the object store);
4. cross-check the catalog's rows against what the log says (catalog_rows.py);
5. against a checkpoint the auditor kept from before: truncation, rollback and forks.

``verify_log`` runs steps 1, 2 and 5 in one pass over the entries and returns the facts steps
3-4 check the store and the catalog against.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from hmac import compare_digest
from time import perf_counter

from evidence_agent.custody.audit_report import AuditReport, LogSummary
from evidence_agent.custody.checkpoint import Checkpoint, log_origin, open_checkpoint
from evidence_agent.custody.entry_pass import CANONICAL_SAMPLE_EVERY, read_entries
from evidence_agent.custody.log_facts import LogFacts
from evidence_agent.custody.merkle import verify_consistency
from evidence_agent.custody.proof_plan import ProofPlan
from evidence_agent.custody.signed_note import Ed25519Verifier
from evidence_agent.errors import InputError, IntegrityError


@dataclass(frozen=True)
class CheckpointInput:
    label: str  # how the report names it: a file path or "checkpoint <size>"
    declared_size: int  # the size its file name or catalog row gives
    note: str | None  # None when unreadable (the reader already named it)


Signed = list[tuple[CheckpointInput, Checkpoint]]  # each checkpoint whose signature verified


@dataclass
class LogInput:
    station_id: str
    key: Ed25519Verifier | None  # None when no usable key was found (already reported)
    checkpoints: list[CheckpointInput]
    entry_chunks: Iterable[list[bytes]]
    collect_facts: bool
    trusted_note: str | None = None
    trusted_label: str = "trusted checkpoint"
    # A bundle: its export ended on a checkpoint covering every entry, so an entry past the
    # newest signed checkpoint was added later, or the newest checkpoint was taken away.
    all_signed: bool = False


@dataclass
class RebuiltTree:
    """What step 1 established, for steps 2 and 5."""

    size: int
    roots: dict[int, bytes]  # at every signed checkpoint's size and the trusted one's
    matched: dict[int, bool]  # by checkpoint size: whether its signed root is the entries'
    plan: ProofPlan | None  # the consistency proof from the trusted checkpoint to the newest
    parse_seconds: float


def verify_log(report: AuditReport, log: LogInput) -> tuple[LogSummary, LogFacts]:
    """Steps 1, 2 and 5 for one log, and the facts steps 3-4 need.

    The signatures of the checkpoints, the trusted one's too, are checked before the pass over
    the entries: the pass must know at which sizes to keep the tree's root, and which nodes
    make step 5's consistency proof.
    """
    sid = log.station_id
    summary = LogSummary(sid, log_origin(sid), key=log.key.key_string() if log.key else None)
    facts = LogFacts(sid)
    began = perf_counter()
    signed = open_signed_checkpoints(report, log)
    summary.checkpoints = len(log.checkpoints)
    trusted = open_trusted_checkpoint(report, log)
    tree = step1_entries_and_checkpoints(report, log, signed, trusted, summary, facts)
    report.steps[1].seconds += perf_counter() - began - tree.parse_seconds
    report.steps[4].seconds += tree.parse_seconds
    step2_consistency_between_checkpoints(report, sid, signed, tree)
    if trusted is not None:
        t0 = perf_counter()
        step5_against_trusted_checkpoint(report, log, trusted, signed, tree, summary)
        report.steps[5].seconds += perf_counter() - t0
    report.logs.append(summary)
    return summary, facts


def open_signed_checkpoints(report: AuditReport, log: LogInput) -> Signed:
    """Step 1, first: each checkpoint's signature; a note's text means nothing until it verifies."""
    sid, origin = log.station_id, log_origin(log.station_id)
    signed: Signed = []
    for cp in log.checkpoints:
        if cp.note is None:
            continue
        if log.key is None:
            report.add(
                1, cp.label, "cannot be checked: the bundle has no usable public key", station=sid
            )
            continue
        try:
            checkpoint = open_checkpoint(cp.note, log.key, origin=origin)
        except IntegrityError as e:
            report.add(1, cp.label, f"signature check failed: {e.message}", station=sid)
            continue
        except InputError as e:
            report.add(
                1, cp.label, f"not a well-formed signed checkpoint: {e.message}", station=sid
            )
            continue
        if checkpoint.size != cp.declared_size:
            report.add(
                1,
                cp.label,
                f"the signed note is for tree size {checkpoint.size}, not {cp.declared_size}",
                station=sid,
            )
        signed.append((cp, checkpoint))
    return signed


def open_trusted_checkpoint(report: AuditReport, log: LogInput) -> Checkpoint | None:
    """Step 5, first: the trusted checkpoint's signature by this log's key.

    Raises InputError for a file that is not a signed checkpoint at all.
    """
    if log.trusted_note is None:
        return None
    label = log.trusted_label
    if log.key is None:
        report.add(5, label, "cannot be checked without the log's key", station=log.station_id)
        return None
    try:
        return open_checkpoint(log.trusted_note, log.key, origin=log_origin(log.station_id))
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


def step1_entries_and_checkpoints(
    report: AuditReport,
    log: LogInput,
    signed: Signed,
    trusted: Checkpoint | None,
    summary: LogSummary,
    facts: LogFacts,
) -> RebuiltTree:
    """Step 1: rebuild the tree from the entries, checking each entry's position (one pass, which
    also folds the facts); then every signed checkpoint's root against the tree, and the key
    against the keys the log itself recorded."""
    newest = max((c.size for _, c in signed), default=0)
    plan = None
    if trusted is not None and trusted.size <= newest:
        plan = ProofPlan(trusted.size, newest)  # step 5's proof, gathered during the pass
    root_sizes = {c.size for _, c in signed} | ({trusted.size} if trusted else set())
    read = read_entries(
        report,
        log.entry_chunks,
        facts,
        summary,
        collect_facts=log.collect_facts,
        root_sizes=root_sizes,
        plan=plan,
        facts_until=newest if log.all_signed else None,
    )
    matched = _match_checkpoints(report, log.station_id, signed, read.roots, read.size)
    good = [(cp, c) for cp, c in signed if matched.get(c.size)]
    if good:
        latest_cp, latest = max(good, key=lambda pair: pair[1].size)
        summary.latest_size, summary.latest_root = latest.size, latest.root_hash
        summary.latest_note = latest_cp.note
        summary.unsigned_entries = read.size - latest.size
    else:
        summary.unsigned_entries = read.size
        if read.size:
            report.add(
                1, "checkpoints", "no signed checkpoint matches the log", station=log.station_id
            )
    if log.all_signed and summary.unsigned_entries:
        report.add(
            1,
            "checkpoints",
            f"{summary.unsigned_entries} entr(ies) after the newest signed checkpoint (size "
            f"{summary.latest_size or 0}): an export ends on a checkpoint covering every entry, "
            "so entries were added to the bundle or its newest checkpoint was removed",
            station=log.station_id,
        )
    _check_key_recorded(report, log, facts)
    return RebuiltTree(read.size, read.roots, matched, plan, read.parse_seconds)


def _match_checkpoints(
    report: AuditReport, sid: str, signed: Signed, roots: dict[int, bytes], n: int
) -> dict[int, bool]:
    """Every checkpoint against the rebuilt tree; a mismatch is narrowed down to the entries
    after the last checkpoint that still matches."""
    matched: dict[int, bool] = {}
    last_good = 0
    for cp, checkpoint in sorted(signed, key=lambda pair: pair[1].size):
        s = checkpoint.size
        if s > n:
            report.add(
                1,
                cp.label,
                f"covers {s} entries but the log has only {n}: entries were removed from the "
                "end (log truncated)",
                station=sid,
            )
            matched[s] = False
        elif not compare_digest(roots[s], checkpoint.root_hash):
            report.add(
                1,
                cp.label,
                f"root hash does not match the entries: one of entries {last_good}..{s - 1} "
                "was changed, removed, inserted or reordered",
                station=sid,
            )
            matched[s] = False
        else:
            matched.setdefault(s, True)
            last_good = s
    return matched


def _check_key_recorded(report: AuditReport, log: LogInput, facts: LogFacts) -> None:
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


def step2_consistency_between_checkpoints(
    report: AuditReport, sid: str, signed: Signed, tree: RebuiltTree
) -> None:
    """Step 2: one signed root per size, and no checkpoint that disagrees with the entries while
    a later one agrees (it was signed over another history).

    Every checkpoint's root was recomputed from the one sequence of entries, so those that
    matched are prefixes of one history; that is stronger than a consistency proof, which is
    what a verifier without the entries uses.
    """
    by_size: dict[int, tuple[CheckpointInput, Checkpoint]] = {}
    for cp, c in signed:
        other = by_size.setdefault(c.size, (cp, c))
        if other[0] is not cp and not compare_digest(other[1].root_hash, c.root_hash):
            report.add(
                2,
                cp.label,
                f"signed root differs from {other[0].label} for the same tree size {c.size}: "
                "the log forked",
                station=sid,
            )
    later_good: int | None = None
    for size in sorted(tree.matched, reverse=True):
        if tree.matched[size]:
            later_good = later_good or size
        elif later_good is not None and size <= tree.size:
            report.add(
                2,
                by_size[size][0].label,
                f"inconsistent with the checkpoint of size {later_good}: that one matches the "
                "entries and this one does not, so they were signed over different histories",
                station=sid,
            )
    good = sum(1 for _, c in signed if tree.matched.get(c.size))
    if good == len(signed):
        report.steps[2].detail = f"{good} checkpoint(s) are prefixes of one history"
    else:
        report.limit(
            2,
            f"established for {good} of {len(signed)} signed checkpoint(s): the others do "
            "not match the entries (step 1)",
        )


def step5_against_trusted_checkpoint(
    report: AuditReport,
    log: LogInput,
    trusted: Checkpoint,
    signed: Signed,
    tree: RebuiltTree,
    summary: LogSummary,
) -> None:
    """Step 5: the log against the checkpoint the auditor kept: a fork (another root for its
    size), truncation, rollback of the checkpoints, and the RFC 9162 consistency proof from it to
    the latest checkpoint, checked by the RFC's algorithm (the proof the auditor can keep)."""
    sid, label, t = log.station_id, log.trusted_label, trusted.size
    summary.trusted_size = t
    for cp, c in signed:
        if c.size == t and not compare_digest(c.root_hash, trusted.root_hash):
            report.add(
                5,
                cp.label,
                f"signed for tree size {t} with another root than the trusted checkpoint: "
                "the station signed two histories (fork)",
                station=sid,
            )
    if t > tree.size:
        report.add(
            5,
            label,
            f"the log has {tree.size} entries, fewer than the {t} the trusted checkpoint "
            "covers: it was truncated or rolled back",
            station=sid,
        )
        return
    if not compare_digest(tree.roots[t], trusted.root_hash):
        report.add(
            5,
            label,
            f"the log's first {t} entries are not those the trusted checkpoint signed: the log "
            "was rewritten (fork)",
            station=sid,
        )
    latest = summary.latest_size
    if latest is None or latest < t:
        report.add(
            5,
            "latest checkpoint",
            f"the newest checkpoint is for size {latest}, older than the trusted size {t}: "
            "checkpoints were rolled back",
            station=sid,
        )
        return
    assert summary.latest_root is not None
    if tree.plan is None or tree.plan.n != latest:
        return  # the newest signed checkpoint failed step 1; the roots above decided
    proof = tree.plan.proof()
    summary.consistency_proof = proof
    try:
        verify_consistency(t, latest, trusted.root_hash, summary.latest_root, proof)
    except IntegrityError as e:
        report.add(
            5,
            label,
            f"not consistent with the latest checkpoint (size {latest}): {e.message}",
            station=sid,
        )


def route_trusted_checkpoint(
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


def finish_report(report: AuditReport, trusted_note: str | None, started: float) -> None:
    """The steps' details and the notes, once every log was verified; ``started``: perf_counter."""
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
    report.seconds = perf_counter() - started
