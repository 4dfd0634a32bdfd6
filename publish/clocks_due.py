"""What is due and overdue across the three systems' clocks, for `evidence-agent status`."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlmodel import Session, func, select

from evidence_agent.catalog.models import Clip, StatisticsReport
from evidence_agent.domain.working_days import WorkingDayCalendar, annual_report_due
from publish.notices import notice_rows
from review.legal_review import review_rows


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
