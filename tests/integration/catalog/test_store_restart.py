"""End to end through ingest and the upload queue: the object store dies mid-upload and comes back;
every clip ends stored and verified, none lost, none stored twice (PostgreSQL catalog, SeaweedFS)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from evidence_agent.adapters.s3.credentials import S3Credentials
from evidence_agent.adapters.s3.multipart import PartProgress
from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.catalog.models import Clip, CustodyEntry
from evidence_agent.services.demo_recorder import DemoVolume, generate_clip
from evidence_agent.services.ingest import ingest_volume
from evidence_agent.services.station import Station, open_station
from evidence_agent.services.storing import StoreWorker, store_pending
from tests.integration.conftest import (
    DEMO_START,
    TEST_MULTIPART_THRESHOLD,
    TEST_PART_SIZE,
    new_seaweedfs,
    station_settings,
    store_settings_for,
)
from tests.services.postgres import Database
from tests.services.seaweedfs import SeaweedFS

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.slow]

BUCKET = "evidence"
LONG_CLIP = "A123456_100231_20261120085000_0010.MP4"  # recorder local time, before the others


class StoreThatDies(S3ObjectStore):
    """The S3 adapter, with a hook on every multipart part: the test stops the server there."""

    on_part: Callable[[PartProgress], None] | None = None

    def put(
        self, sha256: str, source: Path, size: int, retain_until: datetime | None, **kw: Any
    ) -> Any:
        return super().put(sha256, source, size, retain_until, on_part=self.on_part, **kw)


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    weed = new_seaweedfs(tmp_path_factory.mktemp("seaweedfs-dies"))
    try:
        weed.create_bucket(BUCKET, object_lock=True)
        yield weed
    finally:
        weed.stop()


@pytest.fixture
def volume(recorder_template: DemoVolume, tmp_path: Path) -> Path:
    """The demo recorder plus one long clip, big enough for a multipart upload of 4 parts."""
    target = tmp_path / "volume"
    shutil.copytree(recorder_template.root, target)
    size = 4 * TEST_PART_SIZE - 4096
    assert size > TEST_MULTIPART_THRESHOLD
    seconds = 4.0
    generate_clip(
        target / "DCIM" / "100MEDIA" / LONG_CLIP,
        seconds=seconds,
        creation_time=DEMO_START - timedelta(minutes=10),
        size="320x180",
        bitrate=int(size * 8 / seconds),
    )
    assert (target / "DCIM" / "100MEDIA" / LONG_CLIP).stat().st_size > TEST_MULTIPART_THRESHOLD
    return target


def test_the_store_dies_mid_upload_and_every_clip_ends_verified_once(
    server: SeaweedFS, postgres_database: Database, volume: Path, tmp_path: Path
) -> None:
    store = StoreThatDies(
        store_settings_for(BUCKET, server.endpoint),
        S3Credentials(server.identity.access_key, server.identity.secret_key, source="test"),
        multipart_threshold=TEST_MULTIPART_THRESHOLD,
        part_size=TEST_PART_SIZE,
        max_concurrency=1,
        max_attempts=2,
        resume_attempts=1,
        resume_backoff=0.05,
        connect_timeout=2,
        read_timeout=20,
    )
    parts_seen: list[PartProgress] = []

    def die_after_two_parts(progress: PartProgress) -> None:
        parts_seen.append(progress)
        if progress.number == 2 and not progress.reused:
            server.stop()  # SIGTERM, as a crashing or restarted store

    store.on_part = die_after_two_parts
    settings = station_settings(
        tmp_path / "data",
        "station-restart",
        bucket=BUCKET,
        endpoint=server.endpoint,
        catalog_url=postgres_database.config_url,
    )
    station: Station = open_station(settings, actor="user:test", store=store)
    try:
        # 1. Dock: the long clip's upload dies after two parts; the dock still finishes.
        worker = StoreWorker(station).start()
        report = ingest_volume(station, volume, on_clip=worker.submit)
        upload = worker.finish()
        clips = {c.sha256: c.clip_id for c in report.clips if c.outcome == "new"}
        long_sha = next(c.sha256 for c in report.clips if c.source_path.endswith(LONG_CLIP))
        assert report.state == "finished"
        assert long_sha in upload.failed
        assert "stays in the spool" in upload.failed[long_sha]
        with station.reading() as session:
            states = {c.sha256: c.state for c in session.exec(select(Clip))}
        assert states[long_sha] == "spooled"
        assert set(station.spool.pending()) == {s for s, st in states.items() if st == "spooled"}
        state_file = station.spool.root / f"{long_sha}.upload.json"
        assert sorted(json.loads(state_file.read_text())["parts"]) == ["1", "2"]

        # 2. The store comes back; the retry resumes the upload and stores the rest.
        server.start()
        parts_seen.clear()
        retry = store_pending(station)
        assert retry.unavailable is None and not retry.failed and not retry.integrity_failures
        assert [p.number for p in parts_seen if p.reused] == [1, 2]
        assert sorted(p.number for p in parts_seen if not p.reused) == [3, 4]

        # 3. Every clip stored and verified, once; nothing left behind anywhere.
        with station.reading() as session:
            rows = list(session.exec(select(Clip)))
            stored_events = Counter(
                session.exec(
                    select(CustodyEntry.subject_id).where(CustodyEntry.event_type == "clip.stored")
                )
            )
        assert {r.sha256: r.state for r in rows} == dict.fromkeys(clips, "stored")
        assert stored_events == Counter(clips.values())  # one clip.stored event per clip
        assert not any(station.spool.root.glob("*.upload.json"))
        assert station.spool.pending() == []
        admin = server.client()
        versions = admin.list_object_versions(Bucket=BUCKET, Prefix="evidence/sha256/")
        assert Counter(v["Key"].rsplit("/", 1)[-1] for v in versions["Versions"]) == Counter(
            list(clips)
        )
        assert not versions.get("DeleteMarkers")
        assert admin.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
        for sha256 in clips:
            assert store.verify(sha256, read_back=True).sha256 == sha256
    finally:
        station.close()
