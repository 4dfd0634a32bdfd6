"""Step 4 of verification: the catalog's rows, as plain values, against what the log says."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from hmac import compare_digest
from operator import itemgetter
from typing import Any

from evidence_agent.custody.audit_report import AuditReport
from evidence_agent.custody.log_facts import CaseFacts, ClipFacts, LogFacts
from evidence_agent.custody.vocabulary import INGEST_FIELDS
from evidence_agent.errors import InputError

# What decides whether a clip may be deleted, fixed by review.retention's events instead: the
# legal hold (clip.legal_hold_set and _released), the grounds for keeping it for good
# (clip.retention_ground_set), a sorted list, and its retention class and keep-until time (the
# latest clip.retention_changed's `to`, else what the clip.ingested event records, if it does).
KEEPING_FIELDS = ("legal_hold", "retention_grounds", "retention_class", "retention_until")
CLIP_ROW_FIELDS = ("id", "sha256", "station", "state", "stored_at", *INGEST_FIELDS, *KEEPING_FIELDS)
CASE_CLIP_ROW_FIELDS = ("case", "clip")
# The case row as the cross-check sees it: the fields of case.created that the catalog keeps, in
# that event's spelling (unit code, lists, RFC 3339 times); state and closed_at as case.closed
# leaves them.
CASE_ROW_FIELDS = (
    "number",
    "title",
    "parties",
    "cause_of_action",
    "enforcement_type",
    "unit",
    "handling_officers",
    "action_start",
    "action_end",
    "created_at",
    "state",
    "closed_at",
)
# Fields a bundle's row may lack: bundles exported before the catalog had them, or before the
# export carried them. The cross-check reads a missing ingest field as null, which is what the
# ingest events of that time say too, and does not compare a missing keeping field.
ROW_FIELDS_ADDED_SINCE = frozenset({"blake3", *KEEPING_FIELDS})


@dataclass
class CatalogSnapshot:
    """Catalog rows to cross-check; None for a table the source does not have."""

    clips: list[dict[str, Any]] | None = None
    case_clips: list[dict[str, Any]] | None = None
    cases: list[dict[str, Any]] | None = None


CatalogCheck = Callable[[LogFacts, CatalogSnapshot], Iterator[tuple[str, str]]]


def step4_catalog_rows_against_log(
    report: AuditReport, facts: LogFacts, catalog: CatalogSnapshot
) -> None:
    """Step 4: what the log's events say of clips and case links against the catalog's rows,
    after the problems found while folding the events."""
    t0 = time.perf_counter()
    for item, message in facts.problems:
        report.add(4, item, message, station=facts.station_id)
    for check in CATALOG_CHECKS:
        for item, message in check(facts, catalog):
            report.add(4, item, message, station=facts.station_id)
    report.steps[4].seconds += time.perf_counter() - t0


def check_row_shapes(catalog: CatalogSnapshot, station_id: str) -> None:
    """Raise InputError for a bundle's row without the fields of its table."""
    for name, rows, fields in (
        ("clips", catalog.clips, CLIP_ROW_FIELDS),
        ("case_clips", catalog.case_clips, CASE_CLIP_ROW_FIELDS),
        ("cases", catalog.cases, CASE_ROW_FIELDS),
    ):
        required = set(fields) - ROW_FIELDS_ADDED_SINCE
        for number, row in enumerate(rows or (), start=1):
            if not required <= set(row) <= set(fields):
                raise InputError(
                    f"malformed bundle: stations/{station_id}/catalog/{name}.jsonl line {number} "
                    f"does not have the fields {sorted(fields)}"
                )


def _check_clips(facts: LogFacts, catalog: CatalogSnapshot) -> Iterator[tuple[str, str]]:
    if catalog.clips is None:
        return
    seen: set[str] = set()
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
        yield from clip_row_differences(facts, clip, row)
        yield from clip_keeping_differences(facts, clip_id, row)
    for clip_id, clip in facts.clips.items():
        if clip_id not in seen:
            yield (
                f"clip {clip_id}",
                f"ingested in the log (entry {clip.ingest_seq}) but the catalog has no row for it",
            )


# Row fields compared on the fast path, in this order; _expected_row gives the log's values.
_ROW_CHECKED = ("sha256", "station", "state", "stored_at", *INGEST_FIELDS)
_row_fields = itemgetter(*_ROW_CHECKED)
_ingest_values = itemgetter(*INGEST_FIELDS)


def clip_row_differences(
    facts: LogFacts, clip: ClipFacts, row: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    """``clip_row_differences_reference``, with a fast path for a row that agrees."""
    expected = clip.expected_row
    if expected is None:
        expected = clip.expected_row = _expected_row(facts, clip)
    # == on tuples treats 4.0 as 4 (as _same does) but also True as 1, so the one boolean field
    # is compared by type too; any difference takes the reference, which names each field.
    try:
        if _row_fields(row) == expected and type(row["important"]) is bool:
            return iter(())
    except KeyError:  # a row of an older bundle, without a field added since
        pass
    return clip_row_differences_reference(facts, clip, row)


def clip_row_differences_reference(
    facts: LogFacts, clip: ClipFacts, row: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    """Each field of a clip's catalog row that differs from what the log says, named."""
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


def clip_keeping_differences(
    facts: LogFacts, clip_id: str, row: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    """The legal hold, grounds and retention of a clip's catalog row against the log's events,
    each field that differs named; a field the row lacks, or a retention the log does not
    record (an ingest event written before it did), is not compared."""
    retention, _ = _logged_retention(facts, clip_id)
    if (
        row.get("legal_hold") is False
        and row.get("retention_grounds") == []
        and clip_id not in facts.holds
        and clip_id not in facts.grounds
        and (
            retention is None
            or (row.get("retention_class"), row.get("retention_until")) == retention
        )
    ):
        return iter(())
    return _keeping_differences(facts, clip_id, row)


def _logged_retention(facts: LogFacts, clip_id: str) -> tuple[tuple[Any, Any] | None, str]:
    """The clip's (class, until) by the log, and which event says it; None: not recorded."""
    changed = facts.retention.get(clip_id)
    if changed is not None:
        return changed[0], f"the clip.retention_changed event (entry {changed[1]})"
    clip = facts.clips.get(clip_id)
    if clip is None or "retention_class" not in clip.ingest:
        return None, ""
    ingest = clip.ingest
    return (
        (ingest.get("retention_class"), ingest.get("retention_until")),
        f"the ingest event (entry {clip.ingest_seq})",
    )


def _keeping_differences(
    facts: LogFacts, clip_id: str, row: dict[str, Any]
) -> Iterator[tuple[str, str]]:
    item = f"clip {clip_id}"
    held, seq = facts.holds.get(clip_id, (False, None))
    if "legal_hold" in row and not _same(row["legal_hold"], held):
        if seq is None:
            told = "no clip.legal_hold_set event names it"
        else:
            told = f"entry {seq} {'set' if held else 'released'} its hold"
        yield item, f"catalog legal_hold is {row['legal_hold']!r}, but in the log {told}"
    grounds = facts.grounds.get(clip_id, {})
    if "retention_grounds" in row and not _same(row["retention_grounds"], sorted(grounds)):
        entries = ", ".join(f"{g} (entry {s})" for g, s in sorted(grounds.items()))
        yield (
            item,
            f"catalog retention_grounds is {row['retention_grounds']!r}, but the log's "
            f"clip.retention_ground_set events give {entries or 'none'}",
        )
    retention, said = _logged_retention(facts, clip_id)
    if retention is None:
        return
    for name, value in zip(("retention_class", "retention_until"), retention, strict=True):
        if name in row and not _same(row[name], value):
            yield item, f"catalog {name} is {row[name]!r}, {said} says {value!r}"


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


def _check_cases(facts: LogFacts, catalog: CatalogSnapshot) -> Iterator[tuple[str, str]]:
    if catalog.cases is None:
        return
    seen: set[str] = set()
    for row in catalog.cases:
        number = str(row.get("number"))
        seen.add(number)
        case = facts.cases.get(number)
        if case is None:
            yield (
                f"case {number}",
                "catalog row has no case.created event in the log: added behind its back",
            )
            continue
        yield from case_row_differences(case, row)
    for number, case in sorted(facts.cases.items()):
        if number not in seen:
            yield (
                f"case {number}",
                f"created in the log (entry {case.created_seq}) but the catalog has no row for it",
            )


def case_row_differences(case: CaseFacts, row: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Each field of a case's catalog row that differs from its case.created event (and its
    case.closed event, for state and closed_at), named. A field an older event lacks is not
    compared."""
    item = f"case {case.number}"
    closed = case.closed
    for name in CASE_ROW_FIELDS:
        if closed is not None and name in ("state", "closed_at"):
            value = "closed" if name == "state" else closed.get("closed_at")
            said = f"the case.closed event (entry {case.closed_seq})"
        elif name in case.created:
            value, said = case.created[name], f"the case.created event (entry {case.created_seq})"
        else:
            continue
        if not _same(row.get(name), value):
            yield item, f"catalog {name} is {row.get(name)!r}, {said} says {value!r}"


# Each check names the rows of one table that disagree with the facts (log_facts.EVENT_REDUCERS).
CATALOG_CHECKS: tuple[CatalogCheck, ...] = (_check_clips, _check_case_links, _check_cases)
