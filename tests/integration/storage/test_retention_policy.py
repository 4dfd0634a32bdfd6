"""One retention policy on SeaweedFS: the catalog's date and the S3 Object Lock are the same date,
from the station's configured periods, counted from the later of recording and cataloguing."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.catalog.models import Clip
from evidence_agent.config import build_settings
from evidence_agent.domain.retention import whole_second
from evidence_agent.services.checkpoint_publishing import checkpoint_key
from evidence_agent.services.demo_recorder import DemoVolume, make_demo_recorder
from evidence_agent.services.ingest import ingest_volume
from evidence_agent.services.station import Station, open_station
from evidence_agent.services.storing import StoreWorker
from tests.integration.conftest import StoreFactory
from tests.support import service_missing

pytestmark = pytest.mark.s3


def dock(
    tmp_path: Path, store: S3ObjectStore, volume: Path, env: dict[str, str]
) -> tuple[Station, list[Clip]]:
    """Ingest `volume` through the real services onto `store` and return the stored clips."""
    endpoint = store.settings.endpoint
    assert endpoint is not None
    raw: dict[str, Any] = {
        "station": {"id": "st-retention"},
        "store": {"backend": "s3", "bucket": store.bucket, "endpoint": endpoint},
    }
    settings = build_settings(raw, {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data"), **env})
    station = open_station(settings, actor="user:test", store=store)
    worker = StoreWorker(station).start()
    report = ingest_volume(station, volume, on_clip=worker.submit)
    upload = worker.finish()
    assert upload.failed == {} and upload.integrity_failures == {}, upload.failed
    with station.reading() as session:
        clips = list(session.exec(select(Clip)))
    assert clips and {c.state for c in clips} == {"stored"}
    assert len(upload.stored) == len(clips) == len(report.clips)
    return station, clips


def lock_of(s3_admin: Any, store: S3ObjectStore, sha256: str) -> datetime:
    head = s3_admin.head_object(Bucket=store.bucket, Key=store.key_for(sha256))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert isinstance(until, datetime)
    return until


def test_configured_periods_lock_each_clip_until_the_catalogs_date(
    recorder_template: DemoVolume, make_store: StoreFactory, s3_admin: Any, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    shutil.copytree(recorder_template.root, volume)
    store = make_store()
    env = {
        "EVIDENCE_AGENT__RETENTION__STANDARD_DAYS": "400",
        "EVIDENCE_AGENT__RETENTION__IMPORTANT_DAYS": "1825",
    }
    station, clips = dock(tmp_path, store, volume, env)
    try:
        classes = {c.retention_class for c in clips}
        assert classes == {"standard", "important"}
        for clip in clips:
            assert clip.retention_until is not None and clip.recorded_end is not None
            days = 1825 if clip.important else 400
            start = max(clip.recorded_end, clip.ingested_at)
            assert clip.retention_until == whole_second(start + timedelta(days=days)), clip.id
            # The very same date in the bucket: the store used the catalog's.
            assert lock_of(s3_admin, store, clip.sha256) == clip.retention_until, clip.id

        # The station's checkpoints are kept for the longest period (important, 1825 days).
        key = store.artefact_key(checkpoint_key("st-retention", 1))
        versions = s3_admin.list_object_versions(Bucket=store.bucket, Prefix=key)["Versions"]
        assert versions, "no checkpoint published"
        published = s3_admin.head_object(Bucket=store.bucket, Key=versions[0]["Key"])
        expected = datetime.now(UTC) + timedelta(days=1825)
        assert abs(published["ObjectLockRetainUntilDate"] - expected) < timedelta(minutes=5)
    finally:
        station.close()


def test_a_clip_recorded_two_years_before_docking_is_uploaded_and_locked(
    make_store: StoreFactory, s3_admin: Any, tmp_path: Path
) -> None:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed (apt-get install -y ffmpeg)")
    recorded = datetime.now(UTC) - timedelta(days=730)  # a recorder clock reset, an old card
    volume = make_demo_recorder(tmp_path / "old", start=recorded, clips=2).root
    store = make_store()
    station, clips = dock(tmp_path, store, volume, {})
    try:
        now = datetime.now(UTC)
        for clip in clips:
            assert clip.recorded_end is not None and clip.recorded_end < now - timedelta(days=700)
            assert clip.retention_until is not None
            # Kept its whole period from its cataloguing, not already expired on arrival (the
            # default periods: the national minimum, 3 years for the one marked important).
            days = 1095 if clip.important else 183
            assert clip.retention_until == whole_second(clip.ingested_at + timedelta(days=days))
            assert clip.retention_until > now + timedelta(days=182)
            assert lock_of(s3_admin, store, clip.sha256) == clip.retention_until, clip.id
    finally:
        station.close()
