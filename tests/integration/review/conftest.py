"""A station on the session's SeaweedFS (a fresh Object Lock bucket each test), and clips stored
in it as the ingest and the upload queue leave them."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from blake3 import blake3
from sqlmodel import select

from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.catalog.models import Clip, Officer
from evidence_agent.domain.media import MediaInfo
from evidence_agent.services.cataloguing import ingest_event
from evidence_agent.services.station import Station, open_station
from tests.integration.conftest import StoreFactory, station_settings
from tests.services.seaweedfs import SeaweedFS


class NoProber:
    def probe(self, path: Path) -> MediaInfo:
        raise AssertionError("nothing is probed here")


@pytest.fixture
def store(make_store: StoreFactory) -> S3ObjectStore:
    return make_store()


@pytest.fixture
def station(
    tmp_path: Path, store: S3ObjectStore, evidence_bucket: str, seaweedfs: SeaweedFS
) -> Iterator[Station]:
    settings = station_settings(
        tmp_path / "data", "st-review", bucket=evidence_bucket, endpoint=seaweedfs.endpoint
    )
    st = open_station(settings, actor="user:test", store=store, prober=NoProber())
    yield st
    st.close()


def add_stored_clip(
    station: Station,
    store: S3ObjectStore,
    tmp_path: Path,
    lock_until: datetime,
    *,
    days_ago: int,
    data: bytes | None = None,
    ingested: bytes | None = None,
) -> Clip:
    """A clip of `data` (4 KiB of random bytes unless given) recorded `days_ago` days ago,
    stored with its object locked until `lock_until`, catalogued with its ingest event.

    The ingest hashed `ingested`: the same bytes unless a test says the store no longer holds
    what was ingested."""
    data = os.urandom(4096) if data is None else data
    sha = hashlib.sha256(data).hexdigest()
    source = tmp_path / f"{sha}.mp4"
    source.write_bytes(data)
    store.put(sha, source, len(data), lock_until)
    start = datetime.now(UTC) - timedelta(days=days_ago)
    end = start + timedelta(seconds=60)
    with station.transaction() as session:
        officer = session.exec(select(Officer).where(Officer.badge == "100231")).first()
        if officer is None:
            officer = Officer(badge="100231", name="张伟")
            session.add(officer)
            session.flush()
        clip = Clip(
            id=str(uuid.uuid4()),
            sha256=sha,
            blake3=blake3(data if ingested is None else ingested).hexdigest(),
            size=len(data),
            media_kind="video",
            source_path=f"DCIM/100MEDIA/A123456_100231_{start:%Y%m%d%H%M%S}_0001.MP4",
            source_path_bytes=b"x",
            duration_seconds=60,
            recorded_start=start,
            recorded_end=end,
            officer_id=officer.id,
            station_id=station.settings.station_id,
            ingested_at=end + timedelta(minutes=5),
            stored_at=end + timedelta(minutes=6),
            state="stored",
            retention_until=end + timedelta(days=183),
        )
        session.add(clip)
        session.flush()
        station.record(session, ingest_event(clip, "station:test", "A123456", officer, None))
    return clip
