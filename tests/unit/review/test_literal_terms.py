"""Clip references and search terms are matched literally: `%` and `_` are no wildcards."""

from __future__ import annotations

import pytest

from evidence_agent.catalog.queries import find_clip
from evidence_agent.domain.roles import Role
from evidence_agent.services.station import Station
from review.cases import CaseInput, create_case, link_clips
from review.search import ClipQuery, search_clips
from tests.unit.review.fakes import AddClip, caller

CLERK = caller(Role.CLERK, user="clerk")


@pytest.mark.parametrize("ref", ["%%%%%%", "______", "%_%_%_"])
def test_a_clip_ref_of_wildcards_finds_nothing(
    station: Station, add_clip: AddClip, ref: str
) -> None:
    clip = add_clip()
    with station.reading() as session:
        assert find_clip(session, ref) is None
        assert find_clip(session, clip.id[:8]) is not None  # a real prefix still works


@pytest.mark.parametrize("term", ["%", "_", "c_use"])
def test_a_cause_of_wildcards_matches_no_case(
    station: Station, add_clip: AddClip, term: str
) -> None:
    clip = add_clip()
    assert clip.recorded_start is not None and clip.recorded_end is not None
    create_case(
        station,
        CLERK,
        CaseInput(
            "C-1",
            "t",
            ["李四"],
            "cause",
            "seizure",
            None,
            ["100231"],
            clip.recorded_start,
            clip.recorded_end,
        ),
        None,
    )
    link_clips(station, CLERK, "C-1", [clip.id], "evidence")
    assert search_clips(station, CLERK, ClipQuery(cause=term)) == []
    assert [r["id"] for r in search_clips(station, CLERK, ClipQuery(cause="aus"))] == [clip.id]
