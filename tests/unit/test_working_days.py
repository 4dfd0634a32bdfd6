"""The working-day calendar and the clocks of the three systems, over weekends and holidays."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from evidence_agent.domain.working_days import WorkingDayCalendar, annual_report_due, clock
from evidence_agent.errors import ConfigError

CAL = WorkingDayCalendar()


def test_weekends_holidays_and_adjusted_working_days_of_2026() -> None:
    assert CAL.is_working_day(date(2026, 9, 18))  # a Friday
    assert not CAL.is_working_day(date(2026, 9, 19))  # a Saturday
    assert CAL.is_working_day(date(2026, 9, 20))  # a Sunday worked in lieu of National Day
    assert not CAL.is_working_day(date(2026, 9, 25))  # Mid-Autumn Festival, a Friday
    assert not CAL.is_working_day(date(2026, 10, 1))  # National Day
    assert not CAL.is_working_day(date(2026, 10, 7))  # a Wednesday of the National Day week
    assert CAL.is_working_day(date(2026, 10, 10))  # a Saturday worked in lieu


def test_seven_working_days_across_a_plain_weekend() -> None:
    # Thursday 2026-11-05: Fri 6, Mon 9 .. Fri 13 makes six, Mon 16 the seventh.
    assert CAL.add_working_days(date(2026, 11, 5), 7) == date(2026, 11, 16)


def test_seven_working_days_across_the_national_day_week() -> None:
    # Decided Friday 2026-09-25 (the Mid-Autumn Festival, off; its weekend, then the National
    # Day week): Mon 28, Tue 29, Wed 30, then Oct 1-7 off, Thu 8, Fri 9, Sat 10 (worked), Mon 12.
    assert CAL.add_working_days(date(2026, 9, 25), 7) == date(2026, 10, 12)


def test_an_adjusted_working_day_counts() -> None:
    # Decided Friday 2026-09-18: Sun 20 is worked, so three working days end on Tue 22.
    assert CAL.add_working_days(date(2026, 9, 18), 3) == date(2026, 9, 22)
    # Without the adjusted day the count would end on Wed 23.
    assert CAL.working_days_between(date(2026, 9, 18), date(2026, 9, 22)) == 3


def test_the_clock_is_on_time_late_or_overdue() -> None:
    running = clock(CAL, date(2026, 9, 25), 7, None, date(2026, 10, 9))
    assert running.due == date(2026, 10, 12)
    assert running.state == "due"
    assert running.working_days_left == 2  # Sat 10 (worked) and Mon 12
    late = clock(CAL, date(2026, 9, 25), 7, None, date(2026, 10, 14))
    assert late.overdue and late.state == "overdue"
    assert late.working_days_left == -2
    assert clock(CAL, date(2026, 9, 25), 7, date(2026, 10, 12), date(2026, 10, 14)).on_time
    assert clock(CAL, date(2026, 9, 25), 7, date(2026, 10, 13), date(2026, 10, 14)).state == "late"


def test_a_year_the_library_does_not_know_needs_overrides() -> None:
    with pytest.raises(ConfigError, match="does not know 2030"):
        CAL.add_working_days(date(2029, 12, 31), 2)
    known = WorkingDayCalendar.with_overrides(
        holidays=[date(2030, 1, 1)], working_days=[date(2030, 1, 5)]
    )
    # Tue 2030-01-01 off, Wed 2, Thu 3, Fri 4, Sat 5 worked.
    assert known.add_working_days(date(2029, 12, 31), 4) == date(2030, 1, 5)


def test_the_configuration_s_overrides_reach_the_calendar(tmp_path: Path) -> None:
    from evidence_agent.config import build_settings

    env = {
        "EVIDENCE_AGENT_DATA_DIR": str(tmp_path),
        "EVIDENCE_AGENT__CALENDAR__HOLIDAYS": '["2030-01-01"]',
        "EVIDENCE_AGENT__CALENDAR__WORKING_DAYS": '["2030-01-05"]',
    }
    calendar = build_settings({}, env).calendar
    assert calendar.knows(2030)
    assert calendar.add_working_days(date(2029, 12, 31), 4) == date(2030, 1, 5)


def test_an_override_corrects_a_known_year() -> None:
    fixed = WorkingDayCalendar.with_overrides(holidays=[date(2026, 11, 6)])
    assert fixed.add_working_days(date(2026, 11, 5), 1) == date(2026, 11, 9)
    with pytest.raises(ConfigError, match="both a holiday and a working day"):
        WorkingDayCalendar.with_overrides(
            holidays=[date(2030, 1, 1)], working_days=[date(2030, 1, 1)]
        )


def test_the_annual_statistics_are_due_by_31_january() -> None:
    assert annual_report_due(2026) == date(2027, 1, 31)


def first_unknown_year() -> int:
    return next(y for y in range(2026, 2100) if not CAL.knows(y))


@pytest.mark.parametrize("days", [3, 7, 20])
def test_the_first_start_whose_deadline_cannot_be_counted(days: int) -> None:
    year = first_unknown_year()
    start = CAL.first_uncountable_start(date(year - 1, 11, 20), days, 60)
    assert start is not None and start.year == year - 1
    with pytest.raises(ConfigError, match=f"does not know {year}"):
        CAL.add_working_days(start, days)
    day_before = date.fromordinal(start.toordinal() - 1)
    assert CAL.add_working_days(day_before, days).year == year - 1  # the last one counted


def test_nothing_uncountable_within_reach_or_once_the_year_is_configured() -> None:
    year = first_unknown_year()
    assert CAL.first_uncountable_start(date(year - 1, 6, 1), 20, 45) is None
    known = WorkingDayCalendar.with_overrides(holidays=[date(year, 1, 1)])
    assert known.first_uncountable_start(date(year - 1, 12, 5), 20, 45) is None
