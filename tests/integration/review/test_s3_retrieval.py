"""Supervised retrieval from the S3 store on SeaweedFS: the stream is hashed as it comes, and what
does not match the ingest hash is not handed over."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.catalog.models import CustodyEntry
from evidence_agent.domain.roles import Caller, Identity, Role
from evidence_agent.errors import ExitCode
from evidence_agent.services.station import Station
from review.retrieval import RetrievalIntegrityError, RetrievalRequest, retrieve
from tests.integration.review.conftest import add_stored_clip

pytestmark = pytest.mark.s3

CLERK = Caller(Identity("clerk", 1001, frozenset()), frozenset({Role.CLERK}), None)
CHUNK = 1 << 20  # the object comes in several reads, the last one short
LOCK = datetime.now(UTC) + timedelta(days=1)


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
    clip = add_stored_clip(station, store, tmp_path, LOCK, days_ago=1, data=data)
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
    clip = add_stored_clip(
        station, store, tmp_path, LOCK, days_ago=1, data=data, ingested=bytes(ingested)
    )
    target = tmp_path / "out"

    with pytest.raises(RetrievalIntegrityError) as failed:
        retrieve(
            station, CLERK, RetrievalRequest([clip.id], None, target, "court"), chunk_bytes=CHUNK
        )

    assert failed.value.exit_code == ExitCode.INTEGRITY
    assert "BLAKE3" in str(failed.value)
    assert not [p for p in target.iterdir() if p.suffix == ".MP4" or p.name.endswith(".part")]
    assert "clip.integrity_failed" in event_types(station, clip.id)
