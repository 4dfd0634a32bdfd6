"""Last year's statistics report is owed by a station that held footage of that year, not by one
set up since."""

from __future__ import annotations

from datetime import UTC, date, datetime

from evidence_agent.domain.working_days import WorkingDayCalendar
from evidence_agent.services.station import Station
from publish.clocks_due import clocks_due
from tests.unit.review.fakes import AddClip

CAL = WorkingDayCalendar()


def _annual(station: Station, today: date) -> dict[str, object]:
    with station.reading() as session:
        return clocks_due(session, CAL, today)["annual_statistics"]  # type: ignore[no-any-return]


def test_a_station_set_up_this_year_owes_no_report_for_last_year(
    station: Station, add_clip: AddClip
) -> None:
    assert _annual(station, date(2026, 3, 2)) == {
        "year": 2025, "due": "2026-01-31", "owed": False, "produced": False, "overdue": False,
    }  # fmt: skip
    add_clip(start=datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    annual = _annual(station, date(2026, 3, 2))
    assert annual["owed"] is False and annual["overdue"] is False


def test_footage_of_last_year_makes_its_report_owed_and_then_overdue(
    station: Station, add_clip: AddClip
) -> None:
    add_clip(start=datetime(2025, 11, 20, 9, 0, tzinfo=UTC))
    due = _annual(station, date(2026, 1, 30))
    assert due["owed"] is True and due["overdue"] is False
    late = _annual(station, date(2026, 2, 2))
    assert late["owed"] is True and late["overdue"] is True


def test_status_warns_of_deadlines_the_calendar_cannot_count_before_clerks_meet_them(
    station: Station,
) -> None:
    year = next(y for y in range(2026, 2100) if not CAL.knows(y))
    with station.reading() as session:
        assert clocks_due(session, CAL, date(year - 1, 6, 1))["calendar"] == []
        gaps = clocks_due(session, CAL, date(year - 1, 12, 5))["calendar"]
    assert [(g["working_days"], g["year"]) for g in gaps] == [(20, year), (7, year), (3, year)]
    starts = [date.fromisoformat(g["refused_from"]) for g in gaps]
    assert starts == sorted(starts)  # the longest period is refused first
    assert all(
        CAL.first_uncountable_start(s, g["working_days"], 0) == s
        for s, g in zip(starts, gaps, strict=True)
    )
