"""Legal review: the request with its case file, the 7-working-day clock across weekends, the
National Day week and an adjusted working day, its extension, the opinion, and the override an
incomplete case needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from evidence_agent.catalog.models import CustodyEntry
from evidence_agent.config import build_settings
from evidence_agent.domain.roles import Role
from evidence_agent.errors import ExitCode, IncompleteError, InputError, PermissionDeniedError
from evidence_agent.services.station import Station, open_station
from review.cases import CaseInput, create_case, link_clips
from review.legal_review import extend_review, give_opinion, list_reviews, request_review
from tests.unit.review.fakes import AddClip, FixedClock, MemoryStore, NoProber, caller

CLERK = caller(Role.CLERK, user="clerk")
REVIEWER = caller(Role.REVIEWER, user="lawyer")
SUPERVISOR = caller(Role.SUPERVISOR, user="boss")
# Friday 2026-09-25, 10:00 in Shanghai: the Mid-Autumn weekend and the National Day week follow.
BEFORE_NATIONAL_DAY = datetime(2026, 9, 25, 2, 0, tzinfo=UTC)


@pytest.fixture
def station(tmp_path: Path, store: MemoryStore, clock: FixedClock) -> Iterator[Station]:
    settings = build_settings(
        {"station": {"timezone": "Asia/Shanghai"}},
        {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")},
    )
    st = open_station(settings, actor="user:test", store=store, prober=NoProber(), clock=clock)
    yield st
    st.close()


def _case(station: Station, number: str, kind: str, start: datetime, minutes: int = 10) -> None:
    create_case(
        station,
        CLERK,
        CaseInput(
            number,
            "t",
            [],
            "cause",
            kind,
            None,
            ["100231"],
            start,
            start + timedelta(minutes=minutes),
        ),
        None,
    )


def _events(station: Station, kind: str) -> list[dict[str, object]]:
    with station.reading() as session:
        rows = session.exec(select(CustodyEntry).order_by(col(CustodyEntry.seq))).all()
    return [d for d in (json.loads(r.entry) for r in rows) if d["type"] == kind]


def test_the_clock_runs_over_the_national_day_week(station: Station, clock: FixedClock) -> None:
    clock.time = BEFORE_NATIONAL_DAY
    _case(station, "P-1", "administrative_penalty", clock.time - timedelta(days=3))
    sent = request_review(station, CLERK, "P-1", "a major penalty")
    # Mon 28, Tue 29, Wed 30; Oct 1-7 off; Thu 8, Fri 9, Sat 10 (worked in lieu); Mon 12.
    assert sent["due"] == "2026-10-12"
    assert sent["state"] == "due"
    event = _events(station, "legal_review.requested")[-1]
    assert event["data"]["case_file"]["case"]["number"] == "P-1"  # type: ignore[index]
    assert event["sha256"] == sent["case_file_sha256"]

    clock.time = datetime(2026, 10, 9, 2, 0, tzinfo=UTC)  # Friday Oct 9
    assert list_reviews(station, REVIEWER, pending=True)[0]["working_days_left"] == 2

    clock.time = datetime(2026, 10, 12, 8, 0, tzinfo=UTC)  # the last day
    given = give_opinion(station, REVIEWER, "P-1", "correct", "the fine exceeds the scale")
    assert given["state"] == "on_time"
    assert given["working_days_taken"] == 7
    opinion = _events(station, "legal_review.opinion")[-1]
    assert opinion["reason"] == "the fine exceeds the scale"
    assert opinion["actor"] == "user:lawyer"
    assert opinion["data"]["opinion"] == "correct"  # type: ignore[index]
    assert opinion["data"]["on_time"] is True  # type: ignore[index]


def test_an_extension_moves_the_due_day_and_a_late_opinion_is_late(
    station: Station, clock: FixedClock
) -> None:
    clock.time = datetime(2026, 11, 5, 2, 0, tzinfo=UTC)  # Thursday
    _case(station, "P-2", "licensing", clock.time - timedelta(days=1))
    assert request_review(station, CLERK, "P-2", "licence")["due"] == "2026-11-16"
    extended = extend_review(station, REVIEWER, "P-2", 3, "expert opinion awaited")
    assert extended["due"] == "2026-11-19"
    assert _events(station, "legal_review.extended")[-1]["reason"] == "expert opinion awaited"
    clock.time = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
    assert list_reviews(station, CLERK)[0]["state"] == "overdue"
    assert give_opinion(station, REVIEWER, "P-2", "agree", "fine")["state"] == "late"


def test_only_the_reviewer_gives_the_opinion(station: Station, clock: FixedClock) -> None:
    clock.time = BEFORE_NATIONAL_DAY
    _case(station, "P-3", "licensing", clock.time - timedelta(days=1))
    request_review(station, CLERK, "P-3", "licence")
    with pytest.raises(PermissionDeniedError):
        give_opinion(station, SUPERVISOR, "P-3", "agree", "looks fine")
    with pytest.raises(InputError, match="not one of"):
        give_opinion(station, REVIEWER, "P-3", "maybe", "unsure")
    with pytest.raises(InputError, match="under legal review already"):
        request_review(station, CLERK, "P-3", "again")


def test_an_incomplete_full_recording_case_needs_a_logged_override(
    station: Station, clock: FixedClock, add_clip: AddClip
) -> None:
    clock.time = BEFORE_NATIONAL_DAY
    start = clock.time - timedelta(hours=2)
    clip = add_clip(start=start, seconds=60)
    _case(station, "S-1", "seizure", start)  # 10 minutes of action, 1 minute of footage
    link_clips(station, CLERK, "S-1", [clip.id], "evidence")
    with pytest.raises(IncompleteError, match="not sent for legal review") as refused:
        request_review(station, CLERK, "S-1", "seizure decision")
    assert refused.value.exit_code == ExitCode.INCOMPLETE
    assert _events(station, "access.refused")[-1]["data"]["action"] == "legal_review_request"  # type: ignore[index]
    assert list_reviews(station, CLERK) == []

    sent = request_review(
        station, CLERK, "S-1", "the recorder's battery failed", override_incomplete=True
    )
    assert sent["incomplete_override"] is True
    event = _events(station, "legal_review.requested")[-1]
    assert event["reason"] == "the recorder's battery failed"
    assert event["data"]["incomplete_override"]["gaps"]  # type: ignore[index]
