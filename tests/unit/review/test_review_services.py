"""Case links, retention and deletion services on a temporary catalog with an in-memory store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from evidence_agent.catalog.models import Clip, CustodyEntry
from evidence_agent.domain.roles import Role
from evidence_agent.domain.states import ClipState
from evidence_agent.errors import InputError, NotFoundError, PermissionDeniedError
from evidence_agent.services.station import Station
from review.cases import (
    CaseInput,
    attach_document,
    check_case,
    close_case,
    create_case,
    link_clips,
    show_case,
    unlink_clips,
)
from review.retention import approve_deletion, due, mark_ground, request_deletion, set_hold
from review.settings import ReviewSettings
from tests.unit.review.fakes import NOW, AddClip, FixedClock, MemoryStore, caller

REVIEW = ReviewSettings()
CLERK = caller(Role.CLERK, user="clerk")
BOSS = caller(Role.SUPERVISOR, user="boss")
OTHER_BOSS = caller(Role.SUPERVISOR, user="boss2")


def types(station: Station) -> list[str]:
    with station.reading() as session:
        return list(session.exec(select(CustodyEntry.event_type).order_by(col(CustodyEntry.seq))))


def clip_row(station: Station, clip_id: str) -> Clip:
    with station.reading() as session:
        row = session.get(Clip, clip_id)
        assert row is not None
        return row


def new_case(
    station: Station, number: str, start: object, end: object, kind: str = "seizure"
) -> None:
    create_case(
        station,
        CLERK,
        CaseInput(number, "t", ["李四"], "cause", kind, None, ["100231"], start, end),  # type: ignore[arg-type]
        None,
    )


def test_linking_makes_footage_permanent_and_unlinking_gives_it_back_its_class(
    station: Station, add_clip: AddClip
) -> None:
    clip = add_clip()
    new_case(station, "C-1", clip.recorded_start, clip.recorded_end)
    result = link_clips(station, CLERK, "C-1", [clip.id], "evidence")
    assert result["linked"] == [clip.id]
    assert clip_row(station, clip.id).retention_class == "permanent"
    assert clip_row(station, clip.id).retention_until is None
    unlink_clips(station, CLERK, "C-1", [clip.id], "linked by mistake")
    row = clip_row(station, clip.id)
    assert row.retention_class == "standard"
    # Counted again from the later of the recording's end and its cataloguing.
    assert row.retention_until == clip.ingested_at + timedelta(days=183)
    assert types(station)[-4:] == [
        "case.clip_linked",
        "clip.retention_changed",
        "case.clip_unlinked",
        "clip.retention_changed",
    ]


def test_a_link_needs_a_reason_and_an_existing_clip(station: Station, add_clip: AddClip) -> None:
    clip = add_clip()
    new_case(station, "C-2", clip.recorded_start, clip.recorded_end)
    with pytest.raises(InputError, match="reason"):
        link_clips(station, CLERK, "C-2", [clip.id], " ")
    with pytest.raises(NotFoundError, match="no clip"):
        link_clips(station, CLERK, "C-2", ["nope-nope"], "x")
    with pytest.raises(PermissionDeniedError):
        link_clips(station, caller(Role.AUDITOR), "C-2", [clip.id], "x")
    assert types(station).count("access.refused") == 3


def test_case_check_finds_the_gap_between_two_linked_clips(
    station: Station, add_clip: AddClip
) -> None:
    start = NOW - timedelta(hours=3)
    a = add_clip(b"a", start=start, seconds=60)
    add_clip(b"b", start=start + timedelta(seconds=60), seconds=60)
    c = add_clip(b"c", start=start + timedelta(seconds=120), seconds=60)
    new_case(station, "C-3", start, start + timedelta(seconds=180))
    link_clips(station, CLERK, "C-3", [a.id, c.id], "footage")
    result, report = check_case(station, CLERK, "C-3")
    assert report is not None and not report.complete
    assert [g["seconds"] for g in result["gaps"]] == [60.0]
    assert len(result["unlinked_in_window"]) == 1
    shown = show_case(station, CLERK, "C-3")
    assert [e["kind"] for e in shown["timeline"]].count("video") == 2


def test_unknown_enforcement_types_are_refused(station: Station) -> None:
    with pytest.raises(InputError, match="not known"):
        new_case(station, "C-4", NOW, NOW, kind="seizur")


def test_two_person_deletion(
    station: Station, add_clip: AddClip, clock: FixedClock, store: MemoryStore
) -> None:
    clip = add_clip()
    clock.time = NOW + timedelta(days=200)
    assert [r["id"] for r in due(station, CLERK)] == [clip.id]
    with pytest.raises(PermissionDeniedError, match="request by another person"):
        approve_deletion(station, BOSS, REVIEW, clip.id, "tidy")
    request_deletion(station, BOSS, clip.id, "past retention")
    with pytest.raises(PermissionDeniedError, match="two-person"):
        approve_deletion(station, BOSS, REVIEW, clip.id, "approve my own")
    result = approve_deletion(station, OTHER_BOSS, REVIEW, clip.id, "approved")
    assert result.store == "removed" and clip.sha256 not in store.objects
    assert result.request["requested_by"] == "user:boss"
    assert clip_row(station, clip.id).state == "deleted"
    assert types(station)[-2:] == ["clip.deleted", "clip.object_removed"]
    assert due(station, CLERK) == []


def test_no_deletion_before_retention_ends_or_under_hold(
    station: Station, add_clip: AddClip, clock: FixedClock
) -> None:
    clip = add_clip()
    with pytest.raises(InputError, match="kept until"):
        request_deletion(station, CLERK, clip.id, "early")
    clock.time = NOW + timedelta(days=200)
    set_hold(station, BOSS, [clip.id], None, "litigation")
    with pytest.raises(InputError, match="legal hold"):
        request_deletion(station, CLERK, clip.id, "due")
    assert due(station, CLERK) == []
    set_hold(station, BOSS, [clip.id], None, "litigation over", release=True)
    assert [r["id"] for r in due(station, CLERK)] == [clip.id]


def test_a_ground_for_permanent_keeping(station: Station, add_clip: AddClip) -> None:
    clip = add_clip()
    result = mark_ground(station, BOSS, clip.id, "obstruction", "officer obstructed")
    assert result["retention_class"] == "permanent"
    assert json.loads(clip_row(station, clip.id).retention_grounds) == ["obstruction"]
    with pytest.raises(InputError, match="not a ground"):
        mark_ground(station, BOSS, clip.id, "case_evidence", "x")
    with pytest.raises(PermissionDeniedError):
        mark_ground(station, CLERK, clip.id, "obstruction", "x")


def test_a_document_is_kept_by_hash_and_put_on_the_timeline(
    station: Station, add_clip: AddClip, store: MemoryStore, tmp_path: Path
) -> None:
    clip = add_clip()
    new_case(station, "C-5", clip.recorded_start, clip.recorded_end)
    decision = tmp_path / "decision.pdf"
    decision.write_bytes(b"%PDF- decision")
    result = attach_document(
        station, CLERK, "C-5", decision, "penalty decision", NOW - timedelta(hours=1)
    )
    assert store.objects[result["sha256"]] == b"%PDF- decision"
    shown = show_case(station, CLERK, "C-5")
    assert [d["name"] for d in shown["documents"]] == ["decision.pdf"]
    assert "document" in [e["kind"] for e in shown["timeline"]]
    assert list(station.settings.data_dir.glob(".document-*")) == []


def _refusals(station: Station) -> list[dict[str, object]]:
    with station.reading() as session:
        rows = session.exec(
            select(CustodyEntry)
            .where(CustodyEntry.event_type == "access.refused")
            .order_by(col(CustodyEntry.seq))
        ).all()
    return [json.loads(r.entry) for r in rows]


def test_a_new_case_is_refused_for_what_was_typed_and_for_a_number_in_use(
    station: Station,
) -> None:
    with pytest.raises(InputError, match="the title holds control characters"):
        create_case(
            station,
            CLERK,
            CaseInput("C-6", "t\nforged", [], "cause", "seizure", None, [], NOW, NOW),
            None,
        )
    assert _refusals(station)[-1]["subject"] == {"kind": "case", "id": "C-6"}
    new_case(station, "C-6", NOW, NOW)
    with pytest.raises(InputError, match="exists already"):
        new_case(station, "C-6", NOW, NOW)


def test_links_already_so_are_unchanged(station: Station, add_clip: AddClip) -> None:
    clip = add_clip()
    new_case(station, "C-7", clip.recorded_start, clip.recorded_end)
    link_clips(station, CLERK, "C-7", [clip.id], "evidence")
    again = link_clips(station, CLERK, "C-7", [clip.id], "evidence")
    assert (again["linked"], again["unchanged"]) == ([], [clip.id])
    unlink_clips(station, CLERK, "C-7", [clip.id], "mistake")
    again = unlink_clips(station, CLERK, "C-7", [clip.id], "mistake")
    assert (again["unlinked"], again["unchanged"]) == ([], [clip.id])
    assert types(station).count("case.clip_linked") == 1
    assert types(station).count("case.clip_unlinked") == 1


def test_deleted_footage_and_a_closed_case_refuse_links(
    station: Station, add_clip: AddClip
) -> None:
    kept, gone = add_clip(b"kept"), add_clip(b"gone")
    new_case(station, "C-8", kept.recorded_start, kept.recorded_end, kind="hearing")
    with pytest.raises(InputError, match="name at least one clip"):
        link_clips(station, CLERK, "C-8", [], "evidence")
    with station.transaction() as session:
        row = session.get(Clip, gone.id)
        assert row is not None
        row.state = ClipState.DELETED
        session.add(row)
    with pytest.raises(InputError, match=f"deleted clips cannot be linked: {gone.id}"):
        link_clips(station, CLERK, "C-8", [kept.id, gone.id], "evidence")
    close_case(station, CLERK, "C-8", "done", override_incomplete=True)
    with pytest.raises(InputError, match="C-8 is closed"):
        link_clips(station, CLERK, "C-8", [kept.id], "evidence")
    assert [r["data"]["action"] for r in _refusals(station)] == ["case_link"] * 3  # type: ignore[index]
    assert [r["subject"] for r in _refusals(station)] == [{"kind": "case", "id": "C-8"}] * 3


def test_only_a_file_is_attached(station: Station, tmp_path: Path) -> None:
    new_case(station, "C-9", NOW, NOW)
    with pytest.raises(InputError, match="is not a file"):
        attach_document(station, CLERK, "C-9", tmp_path, "decision")
    assert _refusals(station)[-1]["data"]["action"] == "case_attach"  # type: ignore[index]
