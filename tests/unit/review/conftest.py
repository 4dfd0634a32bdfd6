"""A station on a temporary SQLite catalog with an in-memory object store, and clips to put in it."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from blake3 import blake3
from sqlmodel import select

from evidence_agent.catalog.models import Clip, Officer
from evidence_agent.config import build_settings
from evidence_agent.custody import canonical, events
from evidence_agent.services.cataloguing import ingest_event
from evidence_agent.services.station import Station, open_station
from tests.unit.review.fakes import NOW, AddClip, FixedClock, MemoryStore, NoProber


@pytest.fixture(autouse=True)
def custody_events_take_the_fast_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event the review services log is made of plain strings, lists and dicts: an enum
    member in one (a role, a ground, a state) would send its append to the slower reference
    encoder, which these tests then fail on."""

    def reference(*args: object) -> bytes:
        raise AssertionError(f"a custody event left the fast encoder: {args!r:.400}")

    monkeypatch.setattr(events, "_document", reference)
    monkeypatch.setattr(canonical, "_reference_canonical_json", reference)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def station(tmp_path: Path, store: MemoryStore, clock: FixedClock) -> Iterator[Station]:
    settings = build_settings({}, {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")})
    st = open_station(settings, actor="user:test", store=store, prober=NoProber(), clock=clock)
    yield st
    st.close()


@pytest.fixture
def add_clip(station: Station, store: MemoryStore) -> AddClip:
    """Catalogue and store a clip of `data`, recorded by badge 100231 from `start` for `seconds`."""

    def add(
        data: bytes = b"footage",
        *,
        start: datetime = NOW - timedelta(hours=2),
        seconds: float = 60,
        state: str = "stored",
        retention_until: datetime | None = None,
        b3: str
        | None = "",  # "": the data's BLAKE3, as the ingest records it; None: a clip of before
    ) -> Clip:
        sha = hashlib.sha256(data).hexdigest()
        store.objects[sha] = data
        end = start + timedelta(seconds=seconds)
        with station.transaction() as session:
            officer = session.exec(select(Officer).where(Officer.badge == "100231")).first()
            if officer is None:
                officer = Officer(badge="100231", name="张伟")
                session.add(officer)
                session.flush()
            clip = Clip(
                id=str(uuid.uuid4()),
                sha256=sha,
                blake3=blake3(data).hexdigest() if b3 == "" else b3,
                size=len(data),
                media_kind="video",
                source_path=f"DCIM/100MEDIA/A123456_100231_{start:%Y%m%d%H%M%S}_0001.MP4",
                source_path_bytes=b"x",
                duration_seconds=seconds,
                recorded_start=start,
                recorded_end=end,
                officer_id=officer.id,
                station_id=station.settings.station_id,
                ingested_at=end + timedelta(minutes=5),
                stored_at=end + timedelta(minutes=6),
                state=state,
                retention_until=retention_until or end + timedelta(minutes=5, days=183),
            )
            session.add(clip)
            session.flush()
            # as the ingest records it: a retrieval checks the hash this event fixes
            station.record(session, ingest_event(clip, "station:test", "A123456", officer, None))
        return clip

    return add
