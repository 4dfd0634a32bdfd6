"""The catalog row a decision acts on, held to the custody events of its clip or case first."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import (
    Case,
    CaseClip,
    Clip,
    Derivative,
    Disclosure,
    LegalReview,
    Notice,
    StatisticsReport,
    Unit,
)
from evidence_agent.custody.catalog_rows import case_row_differences, clip_keeping_differences
from evidence_agent.custody.entry_schema import ParsedEntry, parse_entry
from evidence_agent.custody.log_facts import LogFacts, fold_entries
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.roles import Caller
from evidence_agent.errors import IntegrityError
from evidence_agent.services.audit import live_catalog
from evidence_agent.services.guard import read_or_refuse
from evidence_agent.services.station import Station

# What a clip's keeping (whether it may be deleted) is folded from.
_KEEPING_EVENTS = (
    EventType.CLIP_INGESTED,
    EventType.CLIP_RETENTION_CHANGED,
    EventType.CLIP_LEGAL_HOLD_SET,
    EventType.CLIP_LEGAL_HOLD_RELEASED,
    EventType.CLIP_RETENTION_GROUND_SET,
    EventType.CASE_CLIP_LINKED,
    EventType.CASE_CLIP_UNLINKED,
)
_CASE_EVENTS = (EventType.CASE_CREATED, EventType.CASE_CLOSED)
_LINK_EVENTS = (EventType.CASE_CLIP_LINKED, EventType.CASE_CLIP_UNLINKED)
_NOTHING_DONE = "nothing was done; run `evidence-agent verify` and report the finding"


_DISCLOSURE_EVENTS = (
    EventType.DISCLOSURE_REQUESTED,
    EventType.DISCLOSURE_APPROVED,
    EventType.DISCLOSURE_REFUSED,
    EventType.DISCLOSURE_PRODUCED,
)
_DERIVATIVE_EVENTS = (
    EventType.DERIVATIVE_REQUESTED,
    EventType.DERIVATIVE_APPROVED,
    EventType.DERIVATIVE_REFUSED,
    EventType.CLIP_DERIVATIVE_MADE,
)


def subject_facts(
    session: Session, station_id: str, subject_ids: Iterable[str], types: Iterable[EventType]
) -> LogFacts:
    """What the custody log says of a few clips or cases, from their events of ``types`` in
    every station's log, in the order they were recorded."""
    return fold_entries(station_id, subject_events(session, subject_ids, types))


def subject_events(
    session: Session, subject_ids: Iterable[str], types: Iterable[EventType]
) -> list[ParsedEntry]:
    """The events of ``types`` about a few subjects, from every station's log, in the order
    they were recorded."""
    events: list[ParsedEntry] = []
    for sid, seq, entry in live_catalog.subject_entries(session, subject_ids, types):
        event, problem = parse_entry(entry, sid, canonical=False)
        if event is None:
            raise IntegrityError(
                f"entry {seq} of the custody log of station {sid} {problem}", remedy=_NOTHING_DONE
            )
        events.append(event)
    events.sort(key=lambda e: (e.time or "", e.station or "", e.seq))
    return events


def clip_keeping_problems(session: Session, clip: Clip) -> list[str]:
    """How the clip's legal hold, grounds, retention and case links in the catalog differ from
    its events."""
    facts = subject_facts(session, clip.station_id, [clip.id], _KEEPING_EVENTS)
    row = live_catalog.keeping_fields(clip)
    found = [message for _, message in clip_keeping_differences(facts, clip.id, row)]
    logged = sorted(case for case, clip_id in facts.links if clip_id == clip.id)
    catalogued = list(
        session.exec(
            select(Case.number)
            .join(CaseClip, col(CaseClip.case_id) == col(Case.id))
            .where(CaseClip.clip_id == clip.id)
            .order_by(col(Case.number))
        )
    )
    if catalogued != logged:
        found.append(
            f"the catalog links it to case(s) {catalogued}, but the log's case.clip_linked and "
            f"case.clip_unlinked events to {logged}"
        )
    return found


def check_clip_keeping(session: Session, clip_id: str) -> None:
    """Raise IntegrityError when what decides a clip's deletion is not what its events say."""
    clip = session.get(Clip, clip_id)
    if clip is None:
        return  # gone since the caller read it: its own next step says so
    found = clip_keeping_problems(session, clip)
    if found:
        raise IntegrityError(
            f"clip {clip.id}: " + "; ".join(found) + ": its catalog row was changed behind the "
            "custody log's back",
            remedy=_NOTHING_DONE,
        )


def clip_as_logged_or_refuse(
    station: Station, caller: Caller, action: str, clip_id: str, reason: str
) -> None:
    """Go on when the clip's row says what its events say; else log the refusal and raise."""
    read_or_refuse(
        station,
        caller,
        action,
        lambda session: check_clip_keeping(session, clip_id),
        subject_kind=Subject.CLIP,
        subject_id=clip_id,
        reason=reason,
    )


def case_problems(session: Session, case: Case) -> list[str]:
    """How a case's catalog row differs from its case.created and case.closed events, and
    which of its links in the catalog no case.clip_linked event stands behind."""
    facts = subject_facts(session, "", [case.number], _CASE_EVENTS)
    logged = facts.cases.get(case.number)
    if logged is None:
        return ["no case.created event in the custody log stands behind its catalog row"]
    unit = session.get(Unit, case.unit_id) if case.unit_id is not None else None
    row = live_catalog.case_row(case, unit.code if unit is not None else None)
    found = [message for _, message in case_row_differences(logged, row)]
    linked = list(session.exec(select(CaseClip.clip_id).where(CaseClip.case_id == case.id)))
    if linked:
        links = subject_facts(session, "", linked, _LINK_EVENTS).links
        unlogged = sorted(c for c in linked if (case.number, c) not in links)
        if unlogged:
            found.append(
                "the catalog links clip(s) " + ", ".join(unlogged) + " to it, but no "
                "case.clip_linked event does"
            )
    return found


def check_case(session: Session, case_id: int) -> None:
    """Raise IntegrityError when a case's row or links are not what the log says."""
    case = session.get(Case, case_id)
    if case is None:
        return  # gone since the caller read it: its own next step says so
    found = case_problems(session, case)
    if found:
        raise IntegrityError(
            f"case {case.number}: " + "; ".join(found) + ": its catalog row was changed "
            "behind the custody log's back",
            remedy=_NOTHING_DONE,
        )


def case_as_logged_or_refuse(
    station: Station, caller: Caller, action: str, case: Case, reason: str = ""
) -> None:
    """Go on when the case's row says what its events say; else log the refusal and raise."""
    case_id = case.id
    assert case_id is not None  # a case read from the catalog
    read_or_refuse(
        station,
        caller,
        action,
        lambda session: check_case(session, case_id),
        subject_kind=Subject.CASE,
        subject_id=case.number,
        reason=reason,
    )


def _decided(events: list[ParsedEntry], types: tuple[EventType, ...], first: str) -> str:
    """The state the events leave a request in: `first`, then approved or refused, then the
    last type's (produced, made)."""
    state = first
    for event in events:
        if event.type == types[1]:
            state = "approved"
        elif event.type == types[2]:
            state = "refused"
        elif event.type == types[3]:
            state = "made" if types[3] == EventType.CLIP_DERIVATIVE_MADE else "produced"
    return state


def _differences(row: dict[str, Any], logged: dict[str, Any]) -> list[str]:
    return [
        f"its {name} is {row[name]!r} in the catalog but {logged[name]!r} in the custody log"
        for name in row
        if row[name] != logged[name]
    ]


def disclosure_problems(session: Session, row: Disclosure) -> list[str]:
    """How a disclosure's row (what is handed over, to whom, asked by whom, and its state)
    differs from its disclosure.requested, .approved/.refused and .produced events."""
    events = subject_events(session, [row.id], _DISCLOSURE_EVENTS)
    asked = _first(events, EventType.DISCLOSURE_REQUESTED)
    if asked is None:
        return ["no disclosure.requested event stands behind its catalog row"]
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    in_row = {
        "case": case.number if case is not None else None,
        "clips": _json(row.clips),
        "documents": _json(row.documents),
        "derivatives": _json(row.derivatives),
        "recipient": row.recipient,
        "requester": row.requested_by,
        "state": row.state,
    }
    logged = {
        **{name: asked.data.get(name) for name in ("case", "clips", "documents", "recipient")},
        "derivatives": asked.data.get("derivatives", []),
        "requester": asked.actor,
        "state": _decided(events, _DISCLOSURE_EVENTS, "requested"),
    }
    return _differences(in_row, logged)


def derivative_problems(session: Session, row: Derivative) -> list[str]:
    """How a derivative's row (its clip, plan, requester and state) differs from the events
    logged on its clip for it."""
    events = [
        e
        for e in subject_events(session, [row.clip_id], _DERIVATIVE_EVENTS)
        if e.data.get("derivative") == row.id
    ]
    asked = _first(events, EventType.DERIVATIVE_REQUESTED)
    if asked is None:
        return ["no derivative.requested event on its clip stands behind its catalog row"]
    in_row = {
        "plan": hashlib.sha256(row.plan.encode("utf-8")).hexdigest(),
        "recorded plan hash": row.plan_sha256,
        "requester": row.requested_by,
        "state": row.state,
    }
    logged = {
        "plan": asked.data.get("plan_sha256"),
        "recorded plan hash": asked.data.get("plan_sha256"),
        "requester": asked.actor,
        "state": _decided(events, _DERIVATIVE_EVENTS, "requested"),
    }
    return _differences(in_row, logged)


_NOTICE_EVENTS = (
    EventType.NOTICE_RECORDED,
    EventType.NOTICE_PUBLISHED,
    EventType.NOTICE_DECISION_REVOKED,
    EventType.NOTICE_WITHDRAWN,
)
_REVIEW_EVENTS = (
    EventType.LEGAL_REVIEW_REQUESTED,
    EventType.LEGAL_REVIEW_EXTENDED,
    EventType.LEGAL_REVIEW_OPINION,
)


def notice_problems(session: Session, row: Notice) -> list[str]:
    """How a notice's row (what it is, whether it concerns a minor, its clocks and what was
    published) differs from its notice.* events. Its body and the persons named are personal
    data the log does not hold; what was published of them is held by its hash."""
    events = subject_events(session, [row.number], _NOTICE_EVENTS)
    recorded = _first(events, EventType.NOTICE_RECORDED)
    if recorded is None:
        return ["no notice.recorded event stands behind its catalog row"]
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    published = _first(events, EventType.NOTICE_PUBLISHED)
    revoked = _first(events, EventType.NOTICE_DECISION_REVOKED)
    withdrawn = _first(events, EventType.NOTICE_WITHDRAWN)
    in_row = {
        "kind": row.kind,
        "title": row.title,
        "decision date": row.decision_date.isoformat(),
        "publication due": row.due.isoformat(),
        "case": case.number if case is not None else None,
        "minors flag": row.minors,
        "published on": _day(row.published_on),
        "published text hash": row.published_sha256,
        "revoked on": _day(row.revoked_on),
        "withdrawal due": _day(row.withdrawal_due),
        "withdrawn on": _day(row.withdrawn_on),
    }
    logged = {
        "kind": recorded.data.get("kind"),
        "title": recorded.data.get("title"),
        "decision date": recorded.data.get("decision_date"),
        "publication due": recorded.data.get("due"),
        "case": recorded.data.get("case"),
        "minors flag": recorded.data.get("minors"),
        "published on": published.data.get("published_on") if published else None,
        "published text hash": published.sha256 if published else None,
        "revoked on": revoked.data.get("revoked_on") if revoked else None,
        "withdrawal due": revoked.data.get("withdrawal_due") if revoked else None,
        "withdrawn on": withdrawn.data.get("withdrawn_on") if withdrawn else None,
    }
    return _differences(in_row, logged)


def legal_review_problems(session: Session, row: LegalReview, case: str) -> list[str]:
    """How a legal review's row (its clock, the case file sent, the opinion and who gave it)
    differs from the legal_review.* events on its case `case` for it."""
    events = [
        e for e in subject_events(session, [case], _REVIEW_EVENTS) if e.data.get("review") == row.id
    ]
    requested = _first(events, EventType.LEGAL_REVIEW_REQUESTED)
    if requested is None:
        return ["no legal_review.requested event stands behind its catalog row"]
    extended = [e for e in events if e.type == EventType.LEGAL_REVIEW_EXTENDED]
    opinion = _first(events, EventType.LEGAL_REVIEW_OPINION)
    in_row = {
        "requester": row.requested_by,
        "requested on": row.requested_on.isoformat(),
        "case file hash": row.case_file_sha256,
        "period in working days": row.working_days,
        "due": row.due.isoformat(),
        "state": row.state,
        "opinion": row.opinion,
        "reviewer": row.reviewer,
        "given on": _day(row.given_on),
    }
    logged = {
        "requester": requested.actor,
        "requested on": requested.data.get("requested_on"),
        "case file hash": requested.sha256,
        "period in working days": sum(
            int(e.data.get("working_days", 0)) for e in [requested, *extended]
        ),
        "due": (extended[-1] if extended else requested).data.get("due"),
        "state": "given" if opinion else "pending",
        "opinion": opinion.data.get("opinion") if opinion else None,
        "reviewer": opinion.actor if opinion else None,
        "given on": opinion.data.get("given_on") if opinion else None,
    }
    return _differences(in_row, logged)


def statistics_problems(session: Session, row: StatisticsReport, station_id: str) -> list[str]:
    """How a statistics report's row (which says the annual report was produced) differs from
    the statistics.reported event with its figures' hash."""
    events = subject_events(session, [station_id], (EventType.STATISTICS_REPORTED,))
    logged = next((e for e in events if e.sha256 == row.sha256), None)
    if logged is None:
        return [f"no statistics.reported event has its figures' hash {row.sha256}"]
    in_row = {
        "year": row.year,
        "first day": row.period_start.isoformat(),
        "last day": row.period_end.isoformat(),
        "producer": row.produced_by,
    }
    return _differences(
        in_row,
        {
            "year": logged.data.get("year"),
            "first day": logged.data.get("period_start"),
            "last day": logged.data.get("period_end"),
            "producer": logged.actor,
        },
    )


def check_notice(session: Session, row: Notice) -> None:
    """Raise IntegrityError when a notice's row is not what its events say."""
    _raise_if(f"notice {row.number}", notice_problems(session, row))


def check_legal_reviews(session: Session, case: Case) -> None:
    """Raise IntegrityError when any legal review of `case` is not what its events say."""
    for row in session.exec(select(LegalReview).where(LegalReview.case_id == case.id)):
        _raise_if(
            f"legal review {row.id} of case {case.number}",
            legal_review_problems(session, row, case.number),
        )


def _first(events: list[ParsedEntry], kind: EventType) -> ParsedEntry | None:
    return next((e for e in events if e.type == kind), None)


def _day(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def check_disclosure(session: Session, row: Disclosure) -> None:
    """Raise IntegrityError when a disclosure's row is not what its events say."""
    _raise_if(f"disclosure {row.id}", disclosure_problems(session, row))


def check_derivative(session: Session, row: Derivative) -> None:
    """Raise IntegrityError when a derivative's row is not what its events say."""
    _raise_if(f"derivative {row.id}", derivative_problems(session, row))


def _raise_if(what: str, found: list[str]) -> None:
    if found:
        raise IntegrityError(
            f"{what}: " + "; ".join(found) + ": its catalog row was changed behind the custody "
            "log's back",
            remedy=_NOTHING_DONE,
        )


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # kept as found: the comparison then names the field
