"""The statistics report's figures on a PostgreSQL catalog, against the same independent count
as on SQLite (tests/unit/publish/test_statistics.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from evidence_agent.config import build_settings
from evidence_agent.domain.roles import Role
from evidence_agent.services.station import Station, open_station
from publish.notices import NoticeInput, add_notice, publish_notice
from publish.statistics import Period, figures
from tests.services.postgres import Database
from tests.unit.publish.test_statistics import _independent_count, _insert, _spec
from tests.unit.review.fakes import FixedClock, MemoryStore, NoProber, caller

pytestmark = pytest.mark.postgres
CLERK = caller(Role.CLERK, user="clerk")


@pytest.fixture
def station(tmp_path: Path, postgres_database: Database) -> Iterator[Station]:
    settings = build_settings(
        {
            "station": {"timezone": "Asia/Shanghai", "id": "station-01"},
            "catalog": {"url": postgres_database.config_url},
        },
        {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")},
    )
    clock = FixedClock(datetime(2026, 12, 5, 2, 0, tzinfo=UTC))
    st = open_station(
        settings, actor="user:test", store=MemoryStore(), prober=NoProber(), clock=clock
    )
    yield st
    st.close()


def test_the_figures_match_an_independent_count_on_postgresql(station: Station) -> None:
    rng = random.Random(15)
    specs = [_spec(rng, i) for i in range(600)]
    _insert(station, specs)
    add_notice(station, CLERK, NoticeInput("N-1", "penalty", "决定", "正文", date(2026, 12, 1)))
    publish_notice(station, CLERK, "N-1", "published")
    data = figures(station, Period.of_year(2026), station.clock.now())
    expected = _independent_count(specs, 2026)
    footage = data["footage"]
    assert footage["clips"] == expected["clips"]
    got = {
        (g["unit"], g["officer"]): (g["clips"], g["hours"]) for g in footage["by_unit_and_officer"]
    }
    assert got == expected["groups"]
    assert footage["late"]["by_cause"] == expected["causes"]
    assert footage["unattributed"]["no_officer"] == expected["no_officer"]
    assert footage["unattributed"]["no_recording_time"] == expected["no_time"]
    assert data["notices"]["publication"]["on_time"] == 1
