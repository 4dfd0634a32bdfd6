"""The 24-hour rule: from the end of a recording to hashed-and-catalogued, and to stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class DeadlineState(StrEnum):
    MET = "met"  # catalogued within the limit
    LATE = "late"  # catalogued after the limit: a breach, with its lateness
    PENDING = "pending"  # not catalogued yet, still inside the warning window
    APPROACHING = "approaching"  # not catalogued or not stored, past the warning time
    BREACHED = "breached"  # not catalogued yet and already past the limit
    UNKNOWN = "unknown"  # no recording time: a supervisor must look


class LateCause(StrEnum):
    """Why a clip missed the 24-hour rule: where the time went."""

    DOCKED_LATE = "docked_late"  # the recorder was docked after the limit: the officer's delay
    STATION_BACKLOG = "station_backlog"  # docked in time, catalogued late: the station's delay


@dataclass(frozen=True)
class DeadlineRule:
    limit: timedelta = timedelta(hours=24)
    warn: timedelta = timedelta(hours=20)


def lateness(
    recorded_end: datetime | None, catalogued_at: datetime, rule: DeadlineRule
) -> timedelta | None:
    """How far past the limit a clip was catalogued, or None when it was on time or untimed."""
    if recorded_end is None:
        return None
    over = catalogued_at - (recorded_end + rule.limit)
    return over if over > timedelta(0) else None


def deadline_state(
    recorded_end: datetime | None,
    catalogued_at: datetime | None,
    stored_at: datetime | None,
    now: datetime,
    rule: DeadlineRule,
) -> DeadlineState:
    if recorded_end is None:
        return DeadlineState.UNKNOWN
    due = recorded_end + rule.limit
    if catalogued_at is not None:
        if catalogued_at > due:
            return DeadlineState.LATE
        if stored_at is None and now >= recorded_end + rule.warn:
            return DeadlineState.APPROACHING
        return DeadlineState.MET
    if now > due:
        return DeadlineState.BREACHED
    if now >= recorded_end + rule.warn:
        return DeadlineState.APPROACHING
    return DeadlineState.PENDING


def late_cause(
    recorded_end: datetime | None,
    docked_at: datetime | None,
    catalogued_at: datetime,
    rule: DeadlineRule,
) -> LateCause | None:
    """The cause of a breach, or None for a clip catalogued in time (or untimed). Without the
    dock's start (a clip catalogued before docks were recorded) the dock counts as late."""
    if lateness(recorded_end, catalogued_at, rule) is None or recorded_end is None:
        return None
    if docked_at is not None and docked_at <= recorded_end + rule.limit:
        return LateCause.STATION_BACKLOG
    return LateCause.DOCKED_LATE
