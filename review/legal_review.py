"""Legal review of a case before its decision: the request with the case file, the clock, the opinion."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any, NoReturn

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import Case, CaseDocument, Clip, LegalReview
from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.domain.working_days import WorkingDayCalendar, WorkingDayClock
from evidence_agent.errors import EvidenceError, InputError
from evidence_agent.services.audit.logged_rows import check_legal_reviews
from evidence_agent.services.guard import read_or_refuse, refuse, require
from evidence_agent.services.station import Station
from review.case_coverage import case_coverage, incomplete_error, incomplete_override
from review.cases import case_json
from review.lookup import get_case, linked_clip_ids

# 「法制审核……一般不超过7个工作日」: the period the seeds give, extendable with a reason.
REVIEW_WORKING_DAYS = 7
OPINIONS = ("agree", "correct", "refer_back")  # 同意 / 纠正 / 退回


def _refuse(
    station: Station, caller: Caller, what: str, error: EvidenceError, case: str, reason: str = ""
) -> NoReturn:
    refuse(station, caller, what, error, subject_kind=Subject.CASE, subject_id=case, reason=reason)


def _checked(station: Station, caller: Caller, action: Action, ref: str, reason: str) -> Case:
    """The case named, once the caller's role allows `action` and a reason is given."""
    require(station, caller, action, subject_kind=Subject.CASE, subject_id=ref[:64], reason=reason)
    if not reason.strip():
        _refuse(station, caller, action.value, InputError("a reason is needed"), ref[:64])

    def read(session: Session) -> Case:
        case = get_case(session, ref)
        check_legal_reviews(session, case)  # the clock and opinion as logged, not as edited
        return case

    return read_or_refuse(
        station,
        caller,
        action.value,
        read,
        subject_kind=Subject.CASE,
        subject_id=ref[:64],
        reason=reason,
    )


def case_file(station: Station, session: Session, case: Case) -> dict[str, Any]:
    """What the reviewer receives: the case, its footage and documents by hash, its coverage."""
    assert case.id is not None
    clip_ids = linked_clip_ids(session, case.id)
    clips = session.exec(select(Clip).where(col(Clip.id).in_(clip_ids))).all() if clip_ids else []
    documents = session.exec(
        select(CaseDocument).where(CaseDocument.case_id == case.id).order_by(col(CaseDocument.id))
    ).all()
    return {
        "case": case_json(session, case, station.settings.review),
        "footage": [{"id": c.id, "sha256": c.sha256} for c in sorted(clips, key=lambda c: c.id)],
        "documents": [{"name": d.name, "sha256": d.sha256} for d in documents],
    }


def request_review(
    station: Station,
    caller: Caller,
    ref: str,
    reason: str,
    *,
    override_incomplete: bool = False,
) -> dict[str, Any]:
    """Send a case for legal review; a full-recording case whose footage has gaps is sent only
    with `override_incomplete` and the reason, both logged with the gaps (as `case close`)."""
    what = Action.LEGAL_REVIEW_REQUEST.value
    case = _checked(station, caller, Action.LEGAL_REVIEW_REQUEST, ref, reason)
    if case.state == "closed":
        _refuse(station, caller, what, InputError(f"case {case.number} is closed"), case.number)
    incomplete = incomplete_override(station, case)
    if incomplete is not None and not override_incomplete:
        _refuse(
            station,
            caller,
            what,
            incomplete_error(case, incomplete, "sent for legal review"),
            case.number,
            reason,
        )
    now = station.clock.now()
    today = station.settings.local_date(now)
    due = station.settings.calendar.add_working_days(today, REVIEW_WORKING_DAYS)
    coverage, _ = case_coverage(station, case)
    with station.transaction() as session:
        if _pending(session, case) is not None:
            raise InputError(
                f"case {case.number} is under legal review already",
                remedy="`evidence-agent legal-review list` shows it",
            )
        document = {**case_file(station, session, case), "coverage": coverage}
        digest = hashlib.sha256(canonical_json(document)).hexdigest()
        row = LegalReview(
            case_id=case.id or 0,
            requested_at=now,
            requested_on=today,
            requested_by=caller.actor,
            reason=reason,
            case_file_sha256=digest,
            incomplete_override=incomplete is not None,
            working_days=REVIEW_WORKING_DAYS,
            due=due,
        )
        session.add(row)
        session.flush()
        override = {"incomplete_override": incomplete} if incomplete is not None else {}
        station.record(
            session,
            EventType.LEGAL_REVIEW_REQUESTED.event(
                case.number,
                actor=caller.actor,
                reason=reason,
                sha256=digest,
                data={
                    "review": row.id,
                    "requested_on": today.isoformat(),
                    "due": due.isoformat(),
                    "working_days": REVIEW_WORKING_DAYS,
                    "case_file": document,
                    **override,
                },
            ),
        )
        return review_json(row, case.number, station.settings.calendar, today)


def extend_review(
    station: Station, caller: Caller, ref: str, working_days: int, reason: str
) -> dict[str, Any]:
    """Give the reviewer `working_days` more on the pending review of a case, with a reason."""
    what = "legal_review_extend"
    case = _checked(station, caller, Action.LEGAL_REVIEW_OPINION, ref, reason)
    if not 1 <= working_days <= 60:
        _refuse(station, caller, what, InputError("extend by 1 to 60 working days"), case.number)
    today = station.settings.local_date(station.clock.now())
    with station.transaction() as session:
        row = _pending_or_fail(session, case)
        row.working_days += working_days
        row.due = station.settings.calendar.add_working_days(row.requested_on, row.working_days)
        session.add(row)
        station.record(
            session,
            EventType.LEGAL_REVIEW_EXTENDED.event(
                case.number,
                actor=caller.actor,
                reason=reason,
                data={"review": row.id, "working_days": working_days, "due": row.due.isoformat()},
            ),
        )
        return review_json(row, case.number, station.settings.calendar, today)


def give_opinion(
    station: Station, caller: Caller, ref: str, opinion: str, reason: str
) -> dict[str, Any]:
    """The reviewer's opinion on the pending review of a case, its reasons in the custody log."""
    what = Action.LEGAL_REVIEW_OPINION.value
    case = _checked(station, caller, Action.LEGAL_REVIEW_OPINION, ref, reason)
    if opinion not in OPINIONS:
        _refuse(
            station,
            caller,
            what,
            InputError(f"opinion {opinion!r} is not one of {', '.join(OPINIONS)}"),
            case.number,
        )
    now = station.clock.now()
    today = station.settings.local_date(now)
    calendar = station.settings.calendar
    with station.transaction() as session:
        row = _pending_or_fail(session, case)
        row.state = "given"
        row.opinion = opinion
        row.opinion_reason = reason
        row.reviewer = caller.actor
        row.given_at = now
        row.given_on = today
        session.add(row)
        station.record(
            session,
            EventType.LEGAL_REVIEW_OPINION.event(
                case.number,
                actor=caller.actor,
                reason=reason,
                data={
                    "review": row.id,
                    "opinion": opinion,
                    "given_on": today.isoformat(),
                    "due": row.due.isoformat(),
                    "on_time": today <= row.due,
                    "working_days_taken": calendar.working_days_between(row.requested_on, today),
                },
            ),
        )
        return review_json(row, case.number, calendar, today)


def list_reviews(
    station: Station, caller: Caller, *, pending: bool = False
) -> list[dict[str, Any]]:
    require(station, caller, Action.CLOCKS_READ)
    today = station.settings.local_date(station.clock.now())
    with station.reading() as session:
        return review_rows(session, station.settings.calendar, today, pending=pending)


def review_rows(
    session: Session, calendar: WorkingDayCalendar, today: date, *, pending: bool = False
) -> list[dict[str, Any]]:
    query = select(LegalReview, Case.number).join(Case, col(Case.id) == LegalReview.case_id)
    if pending:
        query = query.where(LegalReview.state == "pending")
    rows = session.exec(query.order_by(col(LegalReview.due), col(LegalReview.id))).all()
    return [review_json(row, number, calendar, today) for row, number in rows]


def review_json(
    row: LegalReview, case_number: str, calendar: WorkingDayCalendar, today: date
) -> dict[str, Any]:
    clock = WorkingDayClock(row.due, row.given_on, today, calendar)
    return {
        "review": row.id,
        "case": case_number,
        "requested_on": row.requested_on.isoformat(),
        "requested_by": row.requested_by,
        "case_file_sha256": row.case_file_sha256,
        "incomplete_override": row.incomplete_override,
        "working_days": row.working_days,
        "due": row.due.isoformat(),
        "state": clock.state,
        "working_days_left": clock.working_days_left if row.given_on is None else None,
        "opinion": row.opinion,
        "reviewer": row.reviewer,
        "given_on": row.given_on.isoformat() if row.given_on else None,
        "working_days_taken": (
            calendar.working_days_between(row.requested_on, row.given_on) if row.given_on else None
        ),
    }


def _pending(session: Session, case: Case) -> LegalReview | None:
    return session.exec(
        select(LegalReview)
        .where(LegalReview.case_id == case.id)
        .where(LegalReview.state == "pending")
    ).first()


def _pending_or_fail(session: Session, case: Case) -> LegalReview:
    row = _pending(session, case)
    if row is None:
        raise InputError(
            f"case {case.number} has no legal review pending",
            remedy="`evidence-agent legal-review request` sends it",
        )
    return row
