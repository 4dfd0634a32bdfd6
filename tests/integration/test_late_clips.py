"""Clips that broke the 24-hour rule: listed with their cause, and counted alike by `status`
and the daemon's metric."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from evidence_agent.adapters.metrics import create_metrics
from evidence_agent.catalog.queries import clip_views, station_status
from evidence_agent.config import build_settings
from evidence_agent.domain.deadline import DeadlineRule, LateCause, late_cause
from evidence_agent.services.daemon import Daemon
from evidence_agent.services.demo_recorder import make_demo_recorder
from evidence_agent.services.ingest import ingest_volume
from evidence_agent.services.station import Station, open_station
from evidence_agent.services.storing import store_pending
from tests.support import service_missing

RULE = DeadlineRule()
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def test_the_cause_is_whose_delay_it_was() -> None:
    end = T0
    assert late_cause(end, end + timedelta(hours=2), end + timedelta(hours=3), RULE) is None
    assert late_cause(end, end + timedelta(hours=30), end + timedelta(hours=30), RULE) == (
        LateCause.DOCKED_LATE
    )
    assert late_cause(end, end + timedelta(hours=23), end + timedelta(hours=25), RULE) == (
        LateCause.STATION_BACKLOG
    )
    assert late_cause(end, None, end + timedelta(hours=25), RULE) == LateCause.DOCKED_LATE
    assert late_cause(None, None, end, RULE) is None


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    settings = build_settings(
        {"station": {"id": "late"}}, {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")}
    )
    st = open_station(settings, actor="user:test")
    now = datetime.now(UTC)
    # One recorder docked 30 hours after it recorded, one within the hour.
    late = make_demo_recorder(tmp_path / "late", serial="A000001", start=now - timedelta(hours=30))
    fresh = make_demo_recorder(tmp_path / "fresh", serial="A000002", start=now - timedelta(hours=1))
    ingest_volume(st, late.root)
    ingest_volume(st, fresh.root)
    store_pending(st)  # stored: a breach stays a breach once the clip is safe
    yield st
    st.close()


def test_late_clips_are_listed_with_their_cause(station: Station) -> None:
    with station.reading() as session:
        late = [v.to_json() for v in clip_views(session, late=True)]
        others = [v.to_json() for v in clip_views(session, late=False)]
    assert late and others
    assert {c["recorder"] for c in late} == {"A000001"}
    assert {c["late_cause"] for c in late} == {LateCause.DOCKED_LATE}
    assert all(c["late_by_seconds"] > 0 for c in late)
    assert {c["late_cause"] for c in others} == {None}


def test_status_and_the_metric_count_the_same_breaches(station: Station) -> None:
    with station.reading() as session:
        listed = len(clip_views(session, late=True))
        status = station_status(session, now=datetime.now(UTC), rule=RULE)
    assert sum(status.late.values()) == listed
    metrics = create_metrics()
    Daemon(station, [], metrics=metrics)._refresh_metrics()
    exposition = generate_latest(metrics.registry).decode()
    assert f"evidence_agent_clips_over_deadline {float(listed)}" in exposition
