"""Supervised retrieval against an in-memory store: verified handover, refusals, receipts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from blake3 import blake3
from sqlmodel import col, select

from evidence_agent.catalog.models import Clip, CustodyEntry
from evidence_agent.domain.roles import Role
from evidence_agent.errors import InputError, NotFoundError, PermissionDeniedError, StorageError
from evidence_agent.services.station import Station
from review.retrieval import RetrievalIntegrityError, RetrievalRequest, retrieve
from tests.unit.review.fakes import AddClip, MemoryStore, caller

CLERK = caller(Role.CLERK)


def events(station: Station, *types: str) -> list[dict[str, object]]:
    with station.reading() as session:
        rows = session.exec(
            select(CustodyEntry)
            .where(col(CustodyEntry.event_type).in_(types))
            .order_by(col(CustodyEntry.seq))
        ).all()
    return [json.loads(r.entry) for r in rows]


def test_a_verified_copy_and_a_receipt_are_handed_over(
    station: Station, add_clip: AddClip, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 5000
    clip = add_clip(data)
    target = tmp_path / "out"
    report = retrieve(
        station, CLERK, RetrievalRequest([clip.id], None, target, "court"), chunk_bytes=65536
    )
    [item] = report.handed_over
    assert item.file.read_bytes() == data and item.file.stat().st_mode & 0o777 == 0o444
    assert report.receipt is not None
    receipt = json.loads(report.receipt.read_bytes())
    assert receipt["items"][0]["sha256"] == clip.sha256
    assert receipt["items"][0]["verified"] == "blake3"  # the ingest's BLAKE3 was checked
    assert hashlib.sha256(report.receipt.read_bytes()).hexdigest() == report.receipt_sha256
    [event] = events(station, "clip.retrieved")
    assert event["actor"] == "user:alice" and event["reason"] == "court"
    assert event["seq"] == receipt["items"][0]["custody_seq"]
    assert sorted(p.name for p in target.iterdir()) == sorted([item.file.name, report.receipt.name])


def test_a_flipped_byte_in_the_store_is_not_handed_over(
    station: Station, add_clip: AddClip, store: MemoryStore, tmp_path: Path
) -> None:
    good = add_clip(b"good clip")
    bad = add_clip(b"bad clip")
    store.objects[bad.sha256] = b"bad clip".replace(b"c", b"C")
    target = tmp_path / "out"
    with pytest.raises(RetrievalIntegrityError) as caught:
        retrieve(station, CLERK, RetrievalRequest([good.id, bad.id], None, target, "appeal"))
    report = caught.value.report
    assert [h.clip.id for h in report.handed_over] == [good.id]
    assert list(report.failed) == [bad.id]
    names = {p.name for p in target.iterdir()}
    assert not any(n.endswith(".part") for n in names) and len(names) == 2  # good clip + receipt
    assert [e["subject"]["id"] for e in events(station, "clip.integrity_failed")] == [bad.id]  # type: ignore[index]


def test_the_ingest_blake3_is_what_is_checked(
    station: Station, add_clip: AddClip, tmp_path: Path
) -> None:
    # The stored bytes match the SHA-256, but not the BLAKE3 the ingest recorded: refused.
    clip = add_clip(b"clip", b3=blake3(b"another clip").hexdigest())
    with pytest.raises(RetrievalIntegrityError) as caught:
        retrieve(station, CLERK, RetrievalRequest([clip.id], None, tmp_path / "o", "court"))
    assert "BLAKE3 is" in caught.value.report.failed[clip.id]
    assert [p.name for p in (tmp_path / "o").iterdir()] == [caught.value.report.receipt.name]  # type: ignore[union-attr]


def edit_row(station: Station, clip_id: str, **values: object) -> None:
    """An edit of the catalog behind the custody log's back."""
    with station.transaction() as session:
        row = session.get(Clip, clip_id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("blake3", "the catalog's BLAKE3 of clip"),
        ("sha256", "the catalog's SHA-256 of clip"),
        ("station_id", "has no clip.ingested event"),
    ],
)
def test_a_row_edited_behind_the_logs_back_hands_nothing_over(
    station: Station, add_clip: AddClip, store: MemoryStore, tmp_path: Path, edit: str, message: str
) -> None:
    clip = add_clip(b"the footage as ingested")
    other = b"other footage"
    store.objects[hashlib.sha256(other).hexdigest()] = other
    values = {
        "blake3": {"blake3": blake3(other).hexdigest()},  # with the object swapped to match it
        "sha256": {"sha256": hashlib.sha256(other).hexdigest()},  # pointed at another object
        "station_id": {"station_id": "elsewhere"},  # a row no ingest event stands behind
    }[edit]
    if edit == "blake3":
        store.objects[clip.sha256] = other
    edit_row(station, clip.id, **values)
    with pytest.raises(RetrievalIntegrityError) as caught:
        retrieve(station, CLERK, RetrievalRequest([clip.id], None, tmp_path / "o", "court"))
    report = caught.value.report
    assert message in report.failed[clip.id] and not report.handed_over
    [failure] = events(station, "clip.integrity_failed")
    assert failure["subject"]["id"] == clip.id  # type: ignore[index]


def test_a_clip_ingested_before_blake3_is_checked_by_sha256(
    station: Station, add_clip: AddClip, store: MemoryStore, tmp_path: Path
) -> None:
    old = add_clip(b"old clip", b3=None)
    report = retrieve(station, CLERK, RetrievalRequest([old.id], None, tmp_path / "a", "court"))
    [item] = report.handed_over
    assert item.file.read_bytes() == b"old clip" and item.to_json()["verified"] == "sha256"
    [event] = events(station, "clip.retrieved")
    assert event["data"]["verified"].startswith("sha256 ")  # type: ignore[index]
    store.objects[old.sha256] = b"old Clip"
    with pytest.raises(RetrievalIntegrityError) as caught:
        retrieve(station, CLERK, RetrievalRequest([old.id], None, tmp_path / "b", "court"))
    assert "SHA-256 is" in caught.value.report.failed[old.id]


def test_no_reason_no_retrieval(station: Station, add_clip: AddClip, tmp_path: Path) -> None:
    clip = add_clip()
    with pytest.raises(InputError, match="reason"):
        retrieve(station, CLERK, RetrievalRequest([clip.id], None, tmp_path / "o", "  "))
    [refusal] = events(station, "access.refused")
    assert "reason" in refusal["data"]["cause"]  # type: ignore[index]
    assert not (tmp_path / "o").exists()


def test_an_officer_is_refused(station: Station, add_clip: AddClip, tmp_path: Path) -> None:
    clip = add_clip()
    with pytest.raises(PermissionDeniedError):
        retrieve(station, caller(Role.OFFICER), RetrievalRequest([clip.id], None, tmp_path, "x"))
    [refusal] = events(station, "access.refused")
    assert refusal["data"]["roles"] == ["officer"]  # type: ignore[index]


def test_a_full_target_is_refused_before_copying(
    station: Station, add_clip: AddClip, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = add_clip(b"x" * 1000)

    class Usage:
        free = 10

    monkeypatch.setattr("evidence_agent.services.copy_out.shutil.disk_usage", lambda _path: Usage())
    target = tmp_path / "small"
    with pytest.raises(StorageError, match="too full"):
        retrieve(station, CLERK, RetrievalRequest([clip.id], None, target, "court"))
    assert list(target.iterdir()) == []
    [refusal] = events(station, "access.refused")
    assert "too full" in refusal["data"]["cause"]  # type: ignore[index]


def test_a_spooled_clip_is_not_retrieved(
    station: Station, add_clip: AddClip, tmp_path: Path
) -> None:
    clip = add_clip(state="spooled")
    with pytest.raises(InputError, match="spooled"):
        retrieve(station, CLERK, RetrievalRequest([clip.id], None, tmp_path, "court"))
    [refusal] = events(station, "access.refused")
    assert refusal["subject"] == {"kind": "clip", "id": clip.id}
    assert refusal["sha256"] == clip.sha256
    assert refusal["data"]["clips"] == [clip.id]  # type: ignore[index]
    assert refusal["data"]["target"] == str(tmp_path)  # type: ignore[index]


def test_a_refusal_by_case_is_about_the_case(
    station: Station, add_clip: AddClip, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="no case"):
        retrieve(station, CLERK, RetrievalRequest([], "C-404", tmp_path, "court"))
    [refusal] = events(station, "access.refused")
    assert refusal["subject"] == {"kind": "case", "id": "C-404"}
    assert refusal["data"]["case"] == "C-404"  # type: ignore[index]
