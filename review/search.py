"""Clip search for clerks and reviewers: by case, officer, recorder, unit, time, cause, party, state."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import Case, CaseClip
from evidence_agent.catalog.queries import clip_views
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.roles import Action, Caller, search_scope
from evidence_agent.services.guard import read_or_refuse, record_view, refuse, role_missing
from evidence_agent.services.station import Station
from review.lookup import get_case, json_list

DEFAULT_LIMIT = 500


@dataclass(frozen=True)
class ClipQuery:
    case: str | None = None
    officer: str | None = None
    recorder: str | None = None
    unit: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cause: str | None = None  # part of a linked case's cause of action
    party: str | None = None  # part of a linked case's party name
    important: bool | None = None
    state: str | None = None
    limit: int | None = DEFAULT_LIMIT

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for key in ("since", "until"):
            if doc[key] is not None:
                doc[key] = format_time(doc[key])
        return {k: v for k, v in doc.items() if v is not None}


def search_clips(station: Station, caller: Caller, query: ClipQuery) -> list[dict[str, Any]]:
    """Matching clips, newest first, each with the cases it is linked to; the search is logged."""
    decision, officer = search_scope(caller, query.officer)
    if not decision.allowed:
        refuse(
            station,
            caller,
            Action.SEARCH.value,
            role_missing(decision.why),
            data={"query": query.to_json()},
        )
    case_id: int | None = None
    if query.case is not None:
        ref = query.case
        case_id = read_or_refuse(
            station,
            caller,
            Action.SEARCH.value,
            lambda session: get_case(session, ref).id,
            subject_kind=Subject.CASE,
            subject_id=ref[:64],
        )
    with station.reading() as session:
        clip_ids = _clips_of_cases(session, query, case_id)
        views = (
            []
            if clip_ids is not None and not clip_ids
            else clip_views(
                session,
                officer=officer,
                recorder=query.recorder,
                unit=query.unit,
                since=query.since,
                until=query.until,
                state=query.state,
                important=query.important,
                clip_ids=sorted(clip_ids) if clip_ids is not None else None,
                limit=query.limit,
            )
        )
        cases_of = _case_numbers(session, [v.clip.id for v in views])
    rows = []
    for view in views:
        row = view.to_json()
        row["cases"] = cases_of.get(view.clip.id, [])
        row["legal_hold"] = view.clip.legal_hold
        rows.append(row)
    record_view(
        station,
        caller,
        EventType.CLIPS_SEARCHED,
        subject_kind=Subject.STATION,
        subject_id=station.settings.station_id,
        data={"query": {**query.to_json(), "officer": officer}, "clips": [r["id"] for r in rows]},
    )
    return rows


def _clips_of_cases(session: Session, query: ClipQuery, case_id: int | None) -> set[str] | None:
    """The clips linked to the cases the query names (by case, cause or party); None when it
    names no case, so that every clip may match."""
    if query.case is None and not query.cause and not query.party:
        return None
    cases = select(Case)
    if case_id is not None:
        cases = cases.where(Case.id == case_id)
    if query.cause:
        cases = cases.where(col(Case.cause_of_action).contains(query.cause, autoescape=True))
    wanted_party = query.party.casefold() if query.party else None
    case_ids = [
        c.id
        for c in session.exec(cases)
        if wanted_party is None or any(wanted_party in p.casefold() for p in json_list(c.parties))
    ]
    if not case_ids:
        return set()
    return set(session.exec(select(CaseClip.clip_id).where(col(CaseClip.case_id).in_(case_ids))))


def _case_numbers(session: Session, clip_ids: list[str]) -> dict[str, list[str]]:
    """The numbers of the cases each clip is linked to, in number order; unlinked clips absent."""
    cases_of: dict[str, list[str]] = defaultdict(list)
    if clip_ids:
        for clip_id, number in session.exec(
            select(CaseClip.clip_id, Case.number)
            .join(Case, col(Case.id) == col(CaseClip.case_id))
            .where(col(CaseClip.clip_id).in_(clip_ids))
            .order_by(col(Case.number))
        ):
            cases_of[clip_id].append(number)
    return cases_of
