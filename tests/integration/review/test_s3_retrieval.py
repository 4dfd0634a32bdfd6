"""Supervised retrieval from the S3 store on SeaweedFS: the stream is hashed as it comes, and what
does not match the ingest hash is not handed over."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from blake3 import blake3
from sqlmodel import col, select

from evidence_agent.catalog.models import Clip, CustodyEntry, Officer
from evidence_agent.domain.media import MediaInfo
from evidence_agent.errors import ExitCode
from evidence_agent.ingest import ingest_event
from evidence_agent.s3_store import S3ObjectStore
from evidence_agent.station import Station, open_station
from review.retrieval import RetrievalIntegrityError, RetrievalRequest, retrieve
from review.roles import Caller, Identity, Role
from tests.integration.conftest import StoreFactory, station_settings
from tests.services.seaweedfs import SeaweedFS

pytestmark = pytest.mark.s3

CLERK = Caller(Identity("clerk", 1001, frozenset()), frozenset({Role.CLERK}), None)
CHUNK = 1 << 20  # the object comes in several reads, the last one short


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
        tmp_path / "data", "st-retrieval", bucket=evidence_bucket, endpoint=seaweedfs.endpoint
    )
    st = open_station(settings, actor="user:test", store=store, prober=NoProber())
    yield st
    st.close()


def add_stored_clip(
    station: Station, store: S3ObjectStore, tmp_path: Path, data: bytes, *, ingested: bytes
) -> Clip:
    """Store `data` in the bucket; catalogue it as the ingest would have for the bytes
    `ingested` (the same bytes, unless the store no longer holds what was ingested)."""
    sha = hashlib.sha256(data).hexdigest()
    source = tmp_path / f"{sha}.mp4"
    source.write_bytes(data)
    store.put(sha, source, len(data), datetime.now(UTC) + timedelta(days=1))
    start = datetime.now(UTC) - timedelta(hours=3)
    end = start + timedelta(seconds=60)
    with station.transaction() as session:
        officer = Officer(badge="100231", name="张伟")
        session.add(officer)
        session.flush()
        clip = Clip(
            id=str(uuid.uuid4()),
            sha256=sha,
            blake3=blake3(ingested).hexdigest(),
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


def event_types(station: Station, clip_id: str) -> list[str]:
    with station.reading() as session:
        rows = session.exec(
            select(CustodyEntry.event_type)
            .where(CustodyEntry.subject_id == clip_id)
            .order_by(col(CustodyEntry.seq))
        ).all()
    return list(rows)


def test_a_clip_is_read_from_the_bucket_verified_and_handed_over(
    station: Station, store: S3ObjectStore, tmp_path: Path
) -> None:
    data = os.urandom(5 * CHUNK + 4321)
    clip = add_stored_clip(station, store, tmp_path, data, ingested=data)
    target = tmp_path / "out"

    report = retrieve(
        station, CLERK, RetrievalRequest([clip.id], None, target, "court"), chunk_bytes=CHUNK
    )

    [item] = report.handed_over
    assert item.file.read_bytes() == data
    assert item.verified == "blake3"
    assert report.receipt is not None
    receipt = json.loads(report.receipt.read_bytes())
    assert receipt["items"][0]["sha256"] == clip.sha256
    assert event_types(station, clip.id)[-1] == "clip.retrieved"


def test_an_object_that_is_not_what_was_ingested_is_not_handed_over(
    station: Station, store: S3ObjectStore, tmp_path: Path
) -> None:
    data = os.urandom(3 * CHUNK + 17)
    ingested = bytearray(data)
    ingested[CHUNK + 5] ^= 0x01  # one bit differs from the bytes the ingest hashed
    clip = add_stored_clip(station, store, tmp_path, data, ingested=bytes(ingested))
    target = tmp_path / "out"

    with pytest.raises(RetrievalIntegrityError) as failed:
        retrieve(
            station, CLERK, RetrievalRequest([clip.id], None, target, "court"), chunk_bytes=CHUNK
        )

    assert failed.value.exit_code == ExitCode.INTEGRITY
    assert "BLAKE3" in str(failed.value)
    assert not [p for p in target.iterdir() if p.suffix == ".MP4" or p.name.endswith(".part")]
    assert "clip.integrity_failed" in event_types(station, clip.id)
