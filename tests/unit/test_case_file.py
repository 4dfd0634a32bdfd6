"""The case-file clock: due a set number of days after the action ends, days left and overdue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from evidence_agent.domain.case_file import case_file_clock, case_file_due

END = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
DUE = datetime(2026, 12, 22, 10, 15, tzinfo=UTC)


def test_the_file_is_due_the_set_number_of_days_after_the_action_ends() -> None:
    assert case_file_due(END, 30) == DUE
    assert case_file_due(END, 45) == END + timedelta(days=45)


def test_an_action_without_an_end_has_no_clock() -> None:
    assert case_file_due(None, 30) is None
    assert case_file_clock(None, END, 30) is None


def test_days_left_are_whole_days_rounded_down() -> None:
    just_ended = case_file_clock(END, END + timedelta(minutes=1), 30)
    assert just_ended is not None
    assert (just_ended.due, just_ended.days_left, just_ended.overdue) == (DUE, 29, False)
    last_day = case_file_clock(END, DUE - timedelta(hours=1), 30)
    assert last_day is not None and (last_day.days_left, last_day.overdue) == (0, False)


def test_on_the_deadline_it_is_not_yet_overdue() -> None:
    clock = case_file_clock(END, DUE, 30)
    assert clock is not None
    assert (clock.days_left, clock.overdue, clock.days_overdue) == (0, False, 0)


def test_past_the_deadline_it_is_overdue_counting_whole_days() -> None:
    an_hour = case_file_clock(END, DUE + timedelta(hours=1), 30)
    assert an_hour is not None
    assert (an_hour.days_left, an_hour.overdue, an_hour.days_overdue) == (-1, True, 0)
    ten_days = case_file_clock(END, DUE + timedelta(days=10, minutes=5), 30)
    assert ten_days is not None
    assert (ten_days.days_left, ten_days.overdue, ten_days.days_overdue) == (-11, True, 10)


def test_the_clock_works_across_time_zones() -> None:
    shanghai = END.astimezone(timezone(timedelta(hours=8)))
    clock = case_file_clock(shanghai, DUE - timedelta(days=3), 30)
    assert clock is not None and clock.due == DUE and clock.days_left == 3
