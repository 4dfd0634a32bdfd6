"""What is due and overdue across the three systems' clocks, for `evidence-agent status`."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

from sqlmodel import Session, func, select

from evidence_agent.catalog.models import Clip, StatisticsReport
from evidence_agent.domain.working_days import WorkingDayCalendar, annual_report_due
from publish.notices import PUBLICATION_WORKING_DAYS, WITHDRAWAL_WORKING_DAYS, notice_rows
from review.legal_review import REVIEW_WORKING_DAYS, review_rows

# How far ahead `status` looks for deadlines the calendar cannot count yet: the State Council
# publishes a year's arrangement in the autumn before it, so this is room to configure it.
CALENDAR_WARNING_DAYS = 45
# Each period the station counts, named as status names it.
PERIODS = {
    "notices due in 20 working days": PUBLICATION_WORKING_DAYS["other"],
    "penalty and licence notices and legal review requests": REVIEW_WORKING_DAYS,
    "withdrawals of revoked notices": WITHDRAWAL_WORKING_DAYS,
}


def clocks_due(session: Session, calendar: WorkingDayCalendar, today: date) -> dict[str, Any]:
    """Legal reviews waiting for an opinion, notices waiting to be published or withdrawn, and
    last year's statistics report; each with its due day and whether it is overdue.

    Last year's report is owed only by a station that held footage of it (a clip catalogued
    before this year began): a station set up this year has nothing to report on yet."""
    reviews = review_rows(session, calendar, today, pending=True)
    notices = [
        n
        for n in notice_rows(session, calendar, today)
        if n["publication"] in ("due", "overdue") or n["withdrawal"] in ("due", "overdue")
    ]
    year = today.year - 1
    produced = session.exec(
        select(StatisticsReport.produced_at).where(StatisticsReport.year == year)
    ).first()
    due = annual_report_due(year)
    first = session.exec(select(func.min(Clip.ingested_at))).one()
    owed = first is not None and first.date() < date(today.year, 1, 1)
    overdue = owed and produced is None and today > due
    return {
        "calendar": calendar_gaps(calendar, today),
        "legal_reviews": reviews,
        "notices": notices,
        "annual_statistics": {
            "year": year,
            "due": due.isoformat(),
            "owed": owed,
            "produced": produced is not None,
            "overdue": overdue,
        },
        "overdue": sum(r["state"] == "overdue" for r in reviews)
        + sum(n["overdue"] for n in notices)
        + overdue,
    }


def calendar_gaps(calendar: WorkingDayCalendar, today: date) -> list[dict[str, Any]]:
    """The periods whose deadlines, counted from a day within the next CALENDAR_WARNING_DAYS,
    would reach a year the calendar does not know: from which day each is refused (exit 4)
    until that year's arrangement is configured. Empty when nothing is near."""
    year = next(y for y in itertools.count(today.year) if not calendar.knows(y))
    gaps = []
    for what, days in PERIODS.items():
        start = calendar.first_uncountable_start(today, days, CALENDAR_WARNING_DAYS)
        if start is not None:
            gaps.append(
                {
                    "what": what,
                    "working_days": days,
                    "refused_from": start.isoformat(),
                    "year": year,
                }
            )
    return gaps
