"""The review tests' station (temporary SQLite catalog, in-memory store), in the station's zone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from evidence_agent.config import build_settings
from evidence_agent.services.station import Station, open_station
from tests.unit.review.conftest import add_clip, clock, custody_events_take_the_fast_encoder, store
from tests.unit.review.fakes import FixedClock, MemoryStore, NoProber

__all__ = ["add_clip", "clock", "custody_events_take_the_fast_encoder", "store"]


@pytest.fixture
def station(tmp_path: Path, store: MemoryStore, clock: FixedClock) -> Iterator[Station]:
    settings = build_settings(
        {"station": {"timezone": "Asia/Shanghai", "id": "station-01"}},
        {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")},
    )
    st = open_station(settings, actor="user:test", store=store, prober=NoProber(), clock=clock)
    yield st
    st.close()
