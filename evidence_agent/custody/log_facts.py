"""The state of the evidence according to the custody log alone, folded from its events."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from hmac import compare_digest
from typing import Any

from evidence_agent.custody.entry_schema import ParsedEntry
from evidence_agent.custody.vocabulary import EventType


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


@dataclass(slots=True)
class CaseFacts:
    number: str
    created_seq: int
    created: dict[str, Any]  # case.created: the case as opened (vocabulary.CASE_FIELDS)
    closed_seq: int | None = None
    closed: dict[str, Any] | None = None  # case.closed


@dataclass
class LogFacts:
    """What steps 3-4 check the store and the catalog against."""

    station_id: str
    clips: dict[str, ClipFacts] = field(default_factory=dict)
    by_sha256: dict[str, str] = field(default_factory=dict)  # content -> clip id
    links: dict[tuple[str, str], int] = field(default_factory=dict)  # (case, clip) -> seq
    # Case documents stored by content, as case.document_added recorded them: sha256 -> "case
    # C-1 document 3", and redacted derivatives as clip.derivative_made did ("derivative D of
    # clip C"). They are not clips, and are in the store.
    documents: dict[str, str] = field(default_factory=dict)
    # A clip's legal hold as its latest clip.legal_hold_set or _released left it: clip -> (held,
    # entry), and the grounds for keeping it that clip.retention_ground_set recorded: clip ->
    # {ground: entry}. Kept by clip id, like links: the clip may be another station's.
    holds: dict[str, tuple[bool, int]] = field(default_factory=dict)
    grounds: dict[str, dict[str, int]] = field(default_factory=dict)
    # A clip's retention as its latest clip.retention_changed left it: clip -> ((class, until),
    # entry); before any, the clip.ingested event's, where it records one.
    retention: dict[str, tuple[tuple[Any, Any], int]] = field(default_factory=dict)
    cases: dict[str, CaseFacts] = field(default_factory=dict)  # case number -> its events
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
    if e.type == EventType.CLIP_DELETED:
        clip.deleted_seq = e.seq
    else:
        clip.object_removed_seq = e.seq


def _on_case_link(facts: LogFacts, e: ParsedEntry) -> None:
    case = e.data.get("case")
    if e.subject_kind != "clip" or not isinstance(case, str):
        facts.problems.append((f"entry {e.seq}", f"{e.type} event without a clip and a case"))
        return
    if e.type == EventType.CASE_CLIP_LINKED:
        facts.links[(case, e.subject_id)] = e.seq
    else:
        facts.links.pop((case, e.subject_id), None)


def _on_legal_hold(facts: LogFacts, e: ParsedEntry) -> None:
    if e.subject_kind != "clip":
        facts.problems.append((f"entry {e.seq}", f"{e.type} event without a clip"))
        return
    facts.holds[e.subject_id] = (e.type == EventType.CLIP_LEGAL_HOLD_SET, e.seq)


def _on_ground_set(facts: LogFacts, e: ParsedEntry) -> None:
    ground = e.data.get("ground")
    if e.subject_kind != "clip" or not isinstance(ground, str):
        facts.problems.append((f"entry {e.seq}", f"{e.type} event without a clip and a ground"))
        return
    facts.grounds.setdefault(e.subject_id, {}).setdefault(ground, e.seq)


def _on_retention_changed(facts: LogFacts, e: ParsedEntry) -> None:
    to = e.data.get("to")
    if e.subject_kind != "clip" or not isinstance(to, dict):
        facts.problems.append((f"entry {e.seq}", f"{e.type} event without a clip and a 'to'"))
        return
    facts.retention[e.subject_id] = ((to.get("class"), to.get("until")), e.seq)


def _on_case_created(facts: LogFacts, e: ParsedEntry) -> None:
    if e.subject_kind != "case":
        facts.problems.append((f"entry {e.seq}", f"{e.type} event without a case"))
        return
    earlier = facts.cases.get(e.subject_id)
    if earlier is not None:
        facts.problems.append(
            (f"case {e.subject_id}", f"created twice: events {earlier.created_seq} and {e.seq}")
        )
        return
    facts.cases[e.subject_id] = CaseFacts(e.subject_id, e.seq, e.data)


def _on_case_closed(facts: LogFacts, e: ParsedEntry) -> None:
    case = facts.cases.get(e.subject_id)
    if e.subject_kind != "case" or case is None:
        facts.problems.append(
            (f"case {e.subject_id}", f"closed (event {e.seq}) but never created in the log")
        )
        return
    case.closed_seq, case.closed = e.seq, e.data


def _on_document_added(facts: LogFacts, e: ParsedEntry) -> None:
    if e.sha256 is None:
        facts.problems.append((f"entry {e.seq}", f"{e.type} event without the document's hash"))
        return
    facts.documents[e.sha256] = f"case {e.subject_id} document {e.data.get('document')}"


def _on_derivative_made(facts: LogFacts, e: ParsedEntry) -> None:
    if e.sha256 is None:
        facts.problems.append((f"entry {e.seq}", f"{e.type} event without the derivative's hash"))
        return
    facts.documents[e.sha256] = f"derivative {e.data.get('derivative')} of clip {e.subject_id}"


# The extension point of steps 3-4: an event type that changes what the catalog must hold gets a
# reducer here and, if it touches a new table or column, a check in catalog_rows.CATALOG_CHECKS.
# Links are review.cases' events: subject {kind: clip, id}, data {"case": case number}; holds
# grounds and retention changes review.retention's; cases are opened and closed by review.cases
# (no event edits a case in between).
EVENT_REDUCERS: dict[str, Reducer] = {
    EventType.CLIP_INGESTED: _on_clip_ingested,
    EventType.CLIP_STORED: _on_clip_stored,
    EventType.CLIP_DELETED: _on_clip_deleted,
    EventType.CLIP_OBJECT_REMOVED: _on_clip_deleted,
    EventType.CASE_CLIP_LINKED: _on_case_link,
    EventType.CASE_CLIP_UNLINKED: _on_case_link,
    EventType.CASE_DOCUMENT_ADDED: _on_document_added,
    EventType.CLIP_DERIVATIVE_MADE: _on_derivative_made,
    EventType.CLIP_LEGAL_HOLD_SET: _on_legal_hold,
    EventType.CLIP_LEGAL_HOLD_RELEASED: _on_legal_hold,
    EventType.CLIP_RETENTION_GROUND_SET: _on_ground_set,
    EventType.CLIP_RETENTION_CHANGED: _on_retention_changed,
    EventType.CASE_CREATED: _on_case_created,
    EventType.CASE_CLOSED: _on_case_closed,
}
KEY_EVENTS = frozenset({EventType.KEY_CREATED, EventType.KEY_ROTATED})


def fold_entries(station_id: str, entries: Iterable[ParsedEntry]) -> LogFacts:
    """What a few entries say, in the order given: the events of one clip or case that a
    decision reads, folded as verification folds the whole log."""
    facts = LogFacts(station_id)
    for entry in entries:
        reducer = EVENT_REDUCERS.get(entry.type)
        if reducer is not None:
            reducer(facts, entry)
    return facts


def fold_entry(facts: LogFacts, entry: ParsedEntry, position: int, *, use: bool) -> None:
    """Record a key event's key; when ``use``, fold the event into what the log says."""
    if entry.type in KEY_EVENTS:
        key = entry.data.get("verifier_key")
        if isinstance(key, str):
            facts.keys.append((position, key))
    if use:
        reducer = EVENT_REDUCERS.get(entry.type)
        if reducer is not None:
            reducer(facts, entry)
