"""A clip's JSON carries how long after its recording it was catalogued, and how late that was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from evidence_agent.catalog.models import Clip
from evidence_agent.catalog.queries import ClipView

END = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def view(after: timedelta, flags: str, limit_hours: int = 24) -> dict[str, object]:
    clip = Clip(
        id="c1",
        sha256="a" * 64,
        size=1,
        source_path_bytes=b"A.MP4",
        station_id="s",
        recorded_start=END - timedelta(minutes=5),
        recorded_end=END,
        ingested_at=END + after,
        flags=flags,
    )
    return ClipView(clip, "A123456", "100231", "", None, limit_hours).to_json()


def test_late_clip_carries_its_lateness() -> None:
    data = view(timedelta(hours=30), '["late"]')
    assert data["ingested_after_seconds"] == 30 * 3600
    assert data["late_by_seconds"] == 6 * 3600
    assert view(timedelta(hours=30), '["late"]', limit_hours=12)["late_by_seconds"] == 18 * 3600


def test_on_time_clip_has_no_lateness() -> None:
    data = view(timedelta(hours=2), "[]")
    assert data["ingested_after_seconds"] == 2 * 3600
    assert data["late_by_seconds"] is None
