"""Closing a case that needs full recording: refused while its footage has gaps, unless the
closer overrides with a reason; the override and the gaps are in the custody log."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import col, select

from evidence_agent.catalog.models import Case, CustodyEntry
from evidence_agent.domain.roles import Role
from evidence_agent.errors import ExitCode, IncompleteError
from evidence_agent.services.station import Station
from review.cases import CaseInput, close_case, create_case, link_clips
from tests.unit.review.fakes import NOW, AddClip, caller

CLERK = caller(Role.CLERK, user="clerk")


def _seizure(station: Station, number: str, minutes: int) -> None:
    start = NOW - timedelta(hours=2)
    create_case(
        station,
        CLERK,
        CaseInput(
            number,
            "t",
            [],
            "cause",
            "seizure",
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
    docs = [json.loads(r.entry) for r in rows]
    return [d for d in docs if d["type"] == kind]


def test_an_incomplete_full_recording_case_stays_open(station: Station, add_clip: AddClip) -> None:
    clip = add_clip(start=NOW - timedelta(hours=2), seconds=60)
    _seizure(station, "C-1", minutes=10)  # 10 minutes of action, 1 minute of footage
    link_clips(station, CLERK, "C-1", [clip.id], "evidence")
    with pytest.raises(IncompleteError, match="does not cover the action window") as refused:
        close_case(station, CLERK, "C-1", "done")
    assert refused.value.exit_code == ExitCode.INCOMPLETE
    with station.reading() as session:
        assert session.exec(select(Case).where(Case.number == "C-1")).one().state == "open"
    assert _events(station, "access.refused")[-1]["data"]["action"] == "case_close"  # type: ignore[index]


def test_an_override_closes_it_and_logs_the_gaps(station: Station, add_clip: AddClip) -> None:
    _seizure(station, "C-2", minutes=10)
    closed = close_case(station, CLERK, "C-2", "the recorder failed", override_incomplete=True)
    assert closed["state"] == "closed"
    event = _events(station, "case.closed")[-1]
    assert event["reason"] == "the recorder failed"
    assert event["data"]["incomplete_override"]["gaps"]  # type: ignore[index]


def test_a_complete_case_closes_without_an_override(station: Station, add_clip: AddClip) -> None:
    clip = add_clip(start=NOW - timedelta(hours=2), seconds=600)
    _seizure(station, "C-3", minutes=10)
    link_clips(station, CLERK, "C-3", [clip.id], "evidence")
    assert close_case(station, CLERK, "C-3", "complete")["state"] == "closed"
    assert "incomplete_override" not in _events(station, "case.closed")[-1]["data"]  # type: ignore[operator]
