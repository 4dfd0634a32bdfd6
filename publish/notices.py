"""Public notices of decisions: recorded, redacted and published in time, withdrawn after a revocation."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from typing import Any, NoReturn

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import Case, Notice
from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.personal_data import redact
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.domain.text import is_plain_text
from evidence_agent.domain.working_days import WorkingDayCalendar, WorkingDayClock
from evidence_agent.errors import EvidenceError, InputError, NotFoundError
from evidence_agent.services.audit.logged_rows import check_notice
from evidence_agent.services.guard import read_or_refuse, refuse, require
from evidence_agent.services.station import Station

# The seeds: licence and penalty decisions public within 7 working days of the decision, other
# decisions within 20 (「……7个工作日内公开」, 「……20个工作日内公开」); taken down within 3 working
# days when the decision is revoked (「……3个工作日内撤下」).
PUBLICATION_WORKING_DAYS = {"penalty": 7, "licence": 7, "other": 20}
WITHDRAWAL_WORKING_DAYS = 3
KINDS = tuple(PUBLICATION_WORKING_DAYS)


@dataclass(frozen=True)
class NoticeInput:
    number: str
    kind: str  # penalty, licence, other
    title: str
    body: str  # the decision's text as written, personal data and all
    decision_date: date
    persons: tuple[str, ...] = ()  # natural persons named: parties and third parties
    minors: bool = False  # a minor is concerned: the notice is never published
    case: str | None = None


def _refuse(
    station: Station, caller: Caller, what: str, error: EvidenceError, number: str, reason: str
) -> NoReturn:
    refuse(
        station,
        caller,
        what,
        error,
        subject_kind=Subject.NOTICE,
        subject_id=number[:64] or "-",
        reason=reason,
    )


def _today(station: Station) -> date:
    return station.settings.local_date(station.clock.now())


def add_notice(
    station: Station, caller: Caller, data: NoticeInput, reason: str = ""
) -> dict[str, Any]:
    """Record a decision to be made public; its publication is due 7 or 20 working days on."""
    what = "notice_add"
    require(
        station,
        caller,
        Action.NOTICE_WRITE,
        subject_kind=Subject.NOTICE,
        subject_id=data.number[:64] or "-",
        reason=reason,
    )
    problems = _input_problems(data)
    if problems:
        _refuse(station, caller, what, InputError("; ".join(problems)), data.number, reason)
    calendar = station.settings.calendar
    due = calendar.add_working_days(data.decision_date, PUBLICATION_WORKING_DAYS[data.kind])
    with station.transaction() as session:
        if session.exec(select(Notice).where(Notice.number == data.number)).first():
            raise InputError(f"notice {data.number} exists already")
        case_id = None
        if data.case is not None:
            case = session.exec(select(Case).where(Case.number == data.case)).first()
            if case is None:
                raise NotFoundError(f"no case {data.case!r} in the catalog")
            case_id = case.id
        row = Notice(
            number=data.number,
            case_id=case_id,
            kind=data.kind,
            title=data.title,
            body=data.body,
            persons=json.dumps(list(data.persons), ensure_ascii=False),
            minors=data.minors,
            decision_date=data.decision_date,
            due=due,
            recorded_at=station.clock.now(),
            recorded_by=caller.actor,
        )
        session.add(row)
        station.record(
            session,
            EventType.NOTICE_RECORDED.event(
                data.number,
                actor=caller.actor,
                reason=reason or "decision recorded for publication",
                data={
                    "kind": data.kind,
                    "title": data.title,
                    "decision_date": data.decision_date.isoformat(),
                    "due": due.isoformat(),
                    "case": data.case,
                    "minors": data.minors,
                },
            ),
        )
        return notice_json(row, calendar, _today(station))


def _input_problems(data: NoticeInput) -> list[str]:
    problems = []
    if not data.number or len(data.number) > 64:
        problems.append("the notice number must be 1 to 64 characters")
    if data.kind not in KINDS:
        problems.append(f"kind {data.kind!r} is not one of {', '.join(KINDS)}")
    if not data.title.strip():
        problems.append("a notice needs a title")
    for what, value in (("title", data.title), *(("person", p) for p in data.persons)):
        if not is_plain_text(value):
            problems.append(f"the {what} holds control characters")
    return problems


def _notice_or_refuse(station: Station, caller: Caller, what: str, number: str) -> Notice:
    def read(session: Session) -> Notice:
        row = session.exec(select(Notice).where(Notice.number == number)).first()
        if row is None:
            raise NotFoundError(
                f"no notice {number!r}", remedy="`evidence-agent notice list` shows them"
            )
        check_notice(session, row)  # a minor's notice stays one, whatever the catalog says
        return row

    return read_or_refuse(
        station, caller, what, read, subject_kind=Subject.NOTICE, subject_id=number[:64]
    )


def _change(
    station: Station, caller: Caller, what: str, number: str, reason: str
) -> tuple[Notice, str]:
    require(
        station,
        caller,
        Action.NOTICE_WRITE,
        subject_kind=Subject.NOTICE,
        subject_id=number[:64],
        reason=reason,
    )
    text = reason.strip()
    if not text:
        _refuse(station, caller, what, InputError("a reason is needed"), number, reason)
    return _notice_or_refuse(station, caller, what, number), text


def publish_notice(station: Station, caller: Caller, number: str, reason: str) -> dict[str, Any]:
    """Publish a notice: its text with personal data taken out; never one concerning a minor."""
    what = "notice_publish"
    notice, text = _change(station, caller, what, number, reason)
    problem = None
    if notice.minors:
        problem = f"notice {number} concerns a minor: it is never published"
    elif notice.published_on is not None:
        problem = f"notice {number} was published on {notice.published_on.isoformat()}"
    elif notice.revoked_on is not None:
        problem = f"the decision of notice {number} was revoked: it is not published"
    if problem:
        _refuse(station, caller, what, InputError(problem), number, text)
    today = _today(station)
    persons = json.loads(notice.persons)
    redacted = redact(notice.body, persons)
    title = redact(notice.title, persons).text
    published = published_document(notice, title, redacted.text, today)
    digest = hashlib.sha256(canonical_json(published)).hexdigest()
    with station.transaction() as session:
        row = session.get(Notice, notice.id)
        assert row is not None
        row.published_on = today
        row.published_text = redacted.text
        row.published_sha256 = digest
        session.add(row)
        station.record(
            session,
            EventType.NOTICE_PUBLISHED.event(
                number,
                actor=caller.actor,
                reason=text,
                sha256=digest,
                data={
                    "published_on": today.isoformat(),
                    "due": row.due.isoformat(),
                    "on_time": today <= row.due,
                    "redactions": redacted.counts,
                },
            ),
        )
        return notice_json(row, station.settings.calendar, today)


def published_document(notice: Notice, title: str, text: str, published_on: date) -> dict[str, Any]:
    """A published notice as the feed gives it (its SHA-256 is the one logged)."""
    return {
        "number": notice.number,
        "kind": notice.kind,
        "title": title,
        "decision_date": notice.decision_date.isoformat(),
        "published_on": published_on.isoformat(),
        "text": text,
    }


def revoke_decision(
    station: Station, caller: Caller, number: str, revoked_on: date | None, reason: str
) -> dict[str, Any]:
    """Record that the decision was revoked: a published notice is due to come down in 3
    working days."""
    what = "notice_revoke"
    notice, text = _change(station, caller, what, number, reason)
    if notice.revoked_on is not None:
        _refuse(
            station, caller, what, InputError(f"notice {number} is revoked already"), number, text
        )
    today = _today(station)
    day = revoked_on or today
    if day > today:
        _refuse(
            station, caller, what, InputError("a revocation cannot be in the future"), number, text
        )
    calendar = station.settings.calendar
    due = calendar.add_working_days(day, WITHDRAWAL_WORKING_DAYS)
    with station.transaction() as session:
        row = session.get(Notice, notice.id)
        assert row is not None
        row.revoked_on = day
        row.withdrawal_due = due if row.published_on is not None else None
        session.add(row)
        station.record(
            session,
            EventType.NOTICE_DECISION_REVOKED.event(
                number,
                actor=caller.actor,
                reason=text,
                data={"revoked_on": day.isoformat(), "withdrawal_due": _iso(row.withdrawal_due)},
            ),
        )
        return notice_json(row, calendar, today)


def withdraw_notice(station: Station, caller: Caller, number: str, reason: str) -> dict[str, Any]:
    """Take a published notice down (after a revocation, or for another reason given)."""
    what = "notice_withdraw"
    notice, text = _change(station, caller, what, number, reason)
    if notice.published_on is None or notice.withdrawn_on is not None:
        _refuse(
            station,
            caller,
            what,
            InputError(f"notice {number} is not published: nothing to withdraw"),
            number,
            text,
        )
    today = _today(station)
    with station.transaction() as session:
        row = session.get(Notice, notice.id)
        assert row is not None
        row.withdrawn_on = today
        session.add(row)
        due = row.withdrawal_due
        station.record(
            session,
            EventType.NOTICE_WITHDRAWN.event(
                number,
                actor=caller.actor,
                reason=text,
                data={
                    "withdrawn_on": today.isoformat(),
                    "due": _iso(due),
                    "on_time": None if due is None else today <= due,
                },
            ),
        )
        return notice_json(row, station.settings.calendar, today)


def list_notices(
    station: Station, caller: Caller, *, overdue: bool = False
) -> list[dict[str, Any]]:
    """Every notice with its clocks; `overdue`: those not published, or not withdrawn, in time."""
    require(station, caller, Action.CLOCKS_READ)
    today = _today(station)
    with station.reading() as session:
        rows = notice_rows(session, station.settings.calendar, today)
    return [r for r in rows if r["overdue"]] if overdue else rows


def notice_rows(
    session: Session, calendar: WorkingDayCalendar, today: date
) -> list[dict[str, Any]]:
    rows = session.exec(select(Notice).order_by(col(Notice.due), col(Notice.number))).all()
    return [notice_json(row, calendar, today) for row in rows]


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def publication_state(row: Notice, calendar: WorkingDayCalendar, today: date) -> str:
    """on_time, late, due or overdue; `withheld` for a notice that is never published (a minor)
    or whose decision was revoked before it was."""
    if row.published_on is None and (row.minors or row.revoked_on is not None):
        return "withheld"
    return WorkingDayClock(row.due, row.published_on, today, calendar).state


def notice_json(row: Notice, calendar: WorkingDayCalendar, today: date) -> dict[str, Any]:
    publication = publication_state(row, calendar, today)
    withdrawal = (
        WorkingDayClock(row.withdrawal_due, row.withdrawn_on, today, calendar).state
        if row.withdrawal_due is not None
        else None
    )
    return {
        "number": row.number,
        "kind": row.kind,
        "title": row.title,
        "minors": row.minors,
        "decision_date": row.decision_date.isoformat(),
        "due": row.due.isoformat(),
        "published_on": _iso(row.published_on),
        "publication": publication,
        "revoked_on": _iso(row.revoked_on),
        "withdrawal_due": _iso(row.withdrawal_due),
        "withdrawn_on": _iso(row.withdrawn_on),
        "withdrawal": withdrawal,
        "overdue": publication == "overdue" or withdrawal == "overdue",
    }
