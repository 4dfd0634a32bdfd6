"""The case-file clock: the case file is due a set number of days after the enforcement action ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class CaseFileClock:
    """Where an open case stands against its case-file deadline at one moment."""

    due: datetime
    days_left: int  # whole days until due, rounded down: 0 on the last day, negative once overdue
    days_overdue: int  # whole days past due, rounded down: 0 until due and on the first day after

    @property
    def overdue(self) -> bool:
        return self.days_left < 0


def case_file_due(action_end: datetime | None, days: int) -> datetime | None:
    """When the case file is due: `days` after the end of the action; None while it has no end."""
    if action_end is None:
        return None
    return action_end + timedelta(days=days)


def case_file_clock(action_end: datetime | None, now: datetime, days: int) -> CaseFileClock | None:
    """The clock of an open case at `now`; None while the action has no end (no clock yet)."""
    due = case_file_due(action_end, days)
    if due is None:
        return None
    # timedelta.days rounds down: a deadline one hour away is 0 days left, one hour past is -1
    # days left and 0 days overdue.
    return CaseFileClock(due=due, days_left=(due - now).days, days_overdue=max(0, (now - due).days))
