"""The 24-hour rule on plain times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from evidence_agent.domain.deadline import DeadlineRule, DeadlineState, deadline_state, lateness

END = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
RULE = DeadlineRule()
H = timedelta(hours=1)


def test_default_rule_is_24_hours_with_warning_at_20() -> None:
    assert DeadlineRule(limit=24 * H, warn=20 * H) == RULE


@pytest.mark.parametrize(
    ("catalogued", "expected"),
    [
        (END, None),
        (END + 24 * H, None),  # exactly at the limit is on time
        (END + 24 * H + timedelta(seconds=1), timedelta(seconds=1)),
        (END + 30 * H, 6 * H),
        (END - H, None),  # catalogued "before" the end: recorder clock ahead, not late
    ],
)
def test_lateness(catalogued: datetime, expected: timedelta | None) -> None:
    assert lateness(END, catalogued, RULE) == expected


def test_lateness_without_a_recording_time_is_none() -> None:
    assert lateness(None, END + 100 * H, RULE) is None


def test_custom_rule() -> None:
    rule = DeadlineRule(limit=2 * H, warn=H)
    assert lateness(END, END + 3 * H, rule) == H
    assert deadline_state(END, None, None, END + 90 * timedelta(minutes=1), rule) == (
        DeadlineState.APPROACHING
    )


@pytest.mark.parametrize(
    ("catalogued", "stored", "now", "expected"),
    [
        # not catalogued yet
        (None, None, END + H, DeadlineState.PENDING),
        (None, None, END + 20 * H - timedelta(seconds=1), DeadlineState.PENDING),
        (None, None, END + 20 * H, DeadlineState.APPROACHING),
        (None, None, END + 24 * H, DeadlineState.APPROACHING),
        (None, None, END + 24 * H + timedelta(seconds=1), DeadlineState.BREACHED),
        # catalogued in time
        (END + H, END + 2 * H, END + 30 * H, DeadlineState.MET),
        (END + H, None, END + 2 * H, DeadlineState.MET),
        (END + H, None, END + 21 * H, DeadlineState.APPROACHING),  # still not stored
        (END + 24 * H, END + 24 * H, END + 48 * H, DeadlineState.MET),
        # catalogued late
        (END + 25 * H, END + 25 * H, END + 26 * H, DeadlineState.LATE),
        (END + 25 * H, None, END + 26 * H, DeadlineState.LATE),
    ],
)
def test_state(
    catalogued: datetime | None, stored: datetime | None, now: datetime, expected: DeadlineState
) -> None:
    assert deadline_state(END, catalogued, stored, now, RULE) == expected


def test_state_without_a_recording_time_is_unknown() -> None:
    assert deadline_state(None, None, None, END, RULE) == DeadlineState.UNKNOWN
    assert deadline_state(None, END, END, END, RULE) == DeadlineState.UNKNOWN


def test_states_are_stable_strings() -> None:
    assert [s.value for s in DeadlineState] == [
        "met",
        "late",
        "pending",
        "approaching",
        "breached",
        "unknown",
    ]
