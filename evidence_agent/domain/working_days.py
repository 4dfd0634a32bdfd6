"""The working-day calendar (official holidays, adjusted working days) and the clocks counted in it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import chinese_calendar

from evidence_agent.errors import ConfigError

# The years the library's tables cover; a year outside them is known only through overrides.
_LIBRARY_YEARS = range(min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year + 1)


@dataclass(frozen=True)
class WorkingDayCalendar:
    """Official working days: Monday to Friday except holidays, plus the weekend days worked in
    lieu. The State Council publishes each year's arrangement late in the year before; the
    library knows the years up to its release, and `holidays` / `working_days` (the station's
    configuration) add a later year or correct one."""

    holidays: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()

    @classmethod
    def with_overrides(
        cls, holidays: Iterable[date] = (), working_days: Iterable[date] = ()
    ) -> WorkingDayCalendar:
        # Read once: the configuration passes iterators, which a second reading finds empty.
        off, on = frozenset(holidays), frozenset(working_days)
        both = off & on
        if both:
            raise ConfigError(
                "a day cannot be both a holiday and a working day: "
                + ", ".join(d.isoformat() for d in sorted(both)),
                remedy="fix calendar.holidays / calendar.working_days in the configuration",
            )
        return cls(off, on)

    def knows(self, year: int) -> bool:
        return year in _LIBRARY_YEARS or any(
            d.year == year for d in self.holidays | self.working_days
        )

    def is_working_day(self, day: date) -> bool:
        if day in self.working_days:
            return True
        if day in self.holidays:
            return False
        if day.year in _LIBRARY_YEARS:
            return bool(chinese_calendar.is_workday(day))
        if not self.knows(day.year):
            # Counting weekends only would move a deadline silently across a holiday week.
            raise ConfigError(
                f"the working-day calendar does not know {day.year}: its holidays and adjusted "
                "working days are not published in this release",
                remedy="add the year's official arrangement to calendar.holidays and "
                "calendar.working_days in the configuration (config/evidence-agent.toml)",
            )
        return day.weekday() < 5

    def add_working_days(self, start: date, days: int) -> date:
        """The `days`-th working day after `start` (the day of the act itself does not count,
        as in 「自作出决定之日起7个工作日内」: the period runs from the next day)."""
        if days < 0:
            raise ValueError("a period of working days cannot be negative")
        day = start
        left = days
        while left:
            day += timedelta(days=1)
            if self.is_working_day(day):
                left -= 1
        return day

    def first_uncountable_start(self, today: date, days: int, within: int) -> date | None:
        """The first day from `today` to `within` days after it from which a period of `days`
        working days would reach a year this calendar does not know (its deadline refused),
        or None: what a station warns of before its clerks meet the refusal."""
        last = today + timedelta(days=within)
        if all(self.knows(y) for y in range(today.year, last.year + 1)):
            try:
                self.add_working_days(last, days)
            except ConfigError:
                pass
            else:
                return None  # every earlier start's period ends sooner, in the years known
        for offset in range(within + 1):
            start = today + timedelta(days=offset)
            try:
                self.add_working_days(start, days)
            except ConfigError:
                return start
        return None

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after `start` up to and including `end` (0 when `end` is not later)."""
        count = 0
        day = start
        while day < end:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return count


@dataclass(frozen=True)
class WorkingDayClock:
    """Where one deadline counted in working days stands on a given day."""

    due: date
    done: date | None  # the day the act was done (published, withdrawn, opinion given)
    today: date
    calendar: WorkingDayCalendar

    @property
    def on_time(self) -> bool | None:
        """Done by the due day; None while not done."""
        return None if self.done is None else self.done <= self.due

    @property
    def overdue(self) -> bool:
        """Not done and past the due day."""
        return self.done is None and self.today > self.due

    @property
    def working_days_left(self) -> int:
        """Working days from today to the due day; negative once overdue, 0 on the due day."""
        if self.today <= self.due:
            return self.calendar.working_days_between(self.today, self.due)
        return -self.calendar.working_days_between(self.due, self.today)

    @property
    def state(self) -> str:
        if self.done is not None:
            return "on_time" if self.on_time else "late"
        return "overdue" if self.overdue else "due"


def clock(
    calendar: WorkingDayCalendar, start: date, days: int, done: date | None, today: date
) -> WorkingDayClock:
    return WorkingDayClock(calendar.add_working_days(start, days), done, today, calendar)


def annual_report_due(year: int) -> date:
    """The statistics of a year are due by 31 January of the next one."""
    return date(year + 1, 1, 31)
