"""The upload queue apart from ingest, on SeaweedFS: the store away, back, refusing, lying; spool space."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.catalog.models import Clip, CustodyCheckpoint, CustodyEntry
from evidence_agent.custody.checkpoint import open_checkpoint
from evidence_agent.io.spool import Spool
from evidence_agent.services.checkpoint_publishing import (
    PUBLISHED_FILE,
    checkpoint_key,
    publish_checkpoints,
    verifier_key_name,
)
from evidence_agent.services.demo_recorder import DemoVolume
from evidence_agent.services.ingest import ingest_volume
from evidence_agent.services.ingest_report import IngestReport
from evidence_agent.services.spool_space import spool_space, watch_spool_space
from evidence_agent.services.station import Station, open_station
from evidence_agent.services.storing import StoreWorker, store_pending
from tests.integration.conftest import StoreFactory, station_settings
from tests.integration.storage.outage import StoreOutage
from tests.services.seaweedfs import SeaweedFS

pytestmark = pytest.mark.s3


@pytest.fixture
def volume(recorder_template: DemoVolume, tmp_path: Path) -> Path:
    target = tmp_path / "volume"
    shutil.copytree(recorder_template.root, target)
    return target


@pytest.fixture
def outage(seaweedfs: SeaweedFS) -> Iterator[StoreOutage]:
    with StoreOutage(seaweedfs.s3_port) as proxy:
        yield proxy


def s3_station(
    tmp_path: Path, store: S3ObjectStore, bucket: str, station_id: str = "st-queue"
) -> Station:
    endpoint = store.settings.endpoint
    assert endpoint is not None
    settings = station_settings(tmp_path / "data", station_id, bucket=bucket, endpoint=endpoint)
    return open_station(settings, actor="user:test", store=store)


def new_clips(report: IngestReport) -> dict[str, str]:
    """sha256 -> clip id of the clips the dock catalogued."""
    return {c.sha256: c.clip_id for c in report.clips if c.outcome == "new"}


def clip_rows(station: Station) -> list[Clip]:
    with station.reading() as session:
        return list(session.exec(select(Clip)))


def stored_events(station: Station) -> list[str]:
    """The clip ids of the clip.stored events in the station's log."""
    query = select(col(CustodyEntry.subject_id)).where(CustodyEntry.event_type == "clip.stored")
    with station.reading() as session:
        return [subject for subject in session.exec(query) if subject is not None]


def spool_entries(station: Station) -> list[str]:
    return sorted(p.name for p in station.spool.root.iterdir() if p.name != ".incoming")


def test_ingest_goes_on_while_the_store_is_down_and_uploads_when_it_returns(
    make_store: StoreFactory,
    evidence_bucket: str,
    s3_admin: Any,
    outage: StoreOutage,
    volume: Path,
    tmp_path: Path,
) -> None:
    outage.down()
    station = s3_station(tmp_path, make_store(endpoint=outage.endpoint), evidence_bucket)
    try:
        # 1. The dock is read, hashed and catalogued: the 24-hour clock stops with the store away.
        worker = StoreWorker(station).start()
        report = ingest_volume(station, volume, on_clip=worker.submit)
        upload = worker.finish()
        clips = new_clips(report)
        assert len(clips) >= 4
        assert report.state == "finished"
        assert upload.stored == []
        assert set(upload.failed) == set(clips)
        assert all("stays in the spool" in m for m in upload.failed.values())
        assert any("cannot connect to the object store" in m for m in upload.failed.values())
        rows = clip_rows(station)
        assert {r.state for r in rows} == {"spooled"}
        assert all(r.ingested_at is not None and r.stored_at is None for r in rows)
        assert set(station.spool.pending()) == set(clips)
        assert stored_events(station) == []

        # 2. The retry while it is still away: nothing is tried twice, nothing is lost.
        retry = store_pending(station)
        assert retry.unavailable is not None
        assert "cannot connect to the object store" in retry.unavailable
        assert retry.stored == [] and retry.waiting == len(clips)
        assert set(retry.failed) == set(clips)
        assert set(station.spool.pending()) == set(clips)

        # 3. The store is back: every clip uploaded, verified, marked stored, spool reclaimed.
        outage.up()
        retry = store_pending(station)
        assert retry.unavailable is None and retry.waiting == 0
        assert sorted(retry.stored) == sorted(clips.values())
        assert spool_entries(station) == []  # no copy, no upload state left
        rows = clip_rows(station)
        assert {r.state for r in rows} == {"stored"}
        assert all(r.stored_at is not None for r in rows)
        assert sorted(stored_events(station)) == sorted(clips.values())
        checker = make_store()
        for sha256 in clips:
            assert checker.verify(sha256, read_back=True).sha256 == sha256

        # 4. The custody checkpoints made meanwhile went to the bucket with the retry.
        assert retry.checkpoints is not None and retry.checkpoints.published
        with station.reading() as session:
            notes = {
                c.size: c.note
                for c in session.exec(
                    select(CustodyCheckpoint).where(CustodyCheckpoint.station_id == "st-queue")
                )
            }
        for size, note in notes.items():
            body = checker.get_bytes(checkpoint_key("st-queue", size))
            assert body.decode() == note
        assert checker.get_bytes(verifier_key_name("st-queue")).decode().strip() == (
            station.custody.signer.verifier.key_string()
        )
    finally:
        station.close()


def test_a_stored_object_that_does_not_verify_is_never_marked_stored(
    make_store: StoreFactory, evidence_bucket: str, s3_admin: Any, volume: Path, tmp_path: Path
) -> None:
    store = make_store()
    station = s3_station(tmp_path, store, evidence_bucket)
    try:
        clips = new_clips(ingest_volume(station, volume))
        rogue = sorted(clips)[0]
        # Something else already sits under the clip's name (another writer, a corrupt copy).
        s3_admin.put_object(Bucket=evidence_bucket, Key=store.key_for(rogue), Body=b"not the clip")

        retry = store_pending(station)

        assert list(retry.integrity_failures) == [rogue]
        message = retry.integrity_failures[rogue]
        assert f"s3://{evidence_bucket}/evidence/sha256/" in message and rogue in message
        assert sorted(retry.stored) == sorted(v for k, v in clips.items() if k != rogue)
        assert retry.waiting == 1
        states = {r.sha256: r.state for r in clip_rows(station)}
        assert states[rogue] == "spooled"  # not marked stored
        assert station.spool.pending() == [rogue]  # and its spool copy is kept
        assert clips[rogue] not in stored_events(station)
    finally:
        station.close()


def test_the_store_worker_marks_a_batch_stored_but_not_its_clip_that_does_not_verify(
    make_store: StoreFactory, evidence_bucket: str, s3_admin: Any, volume: Path, tmp_path: Path
) -> None:
    store = make_store()
    station = s3_station(tmp_path, store, evidence_bucket)
    try:
        clips = new_clips(ingest_volume(station, volume))
        rogue = sorted(clips)[1]
        s3_admin.put_object(Bucket=evidence_bucket, Key=store.key_for(rogue), Body=b"not the clip")
        worker = StoreWorker(station)
        for sha256 in clips:  # all waiting before the worker starts: it takes them at once
            worker.submit(sha256)
        upload = worker.start().finish()

        assert list(upload.integrity_failures) == [rogue]
        others = sorted(v for k, v in clips.items() if k != rogue)
        assert sorted(upload.stored) == others
        states = {r.sha256: r.state for r in clip_rows(station)}
        assert states[rogue] == "spooled" and station.spool.pending() == [rogue]
        assert {s for k, s in states.items() if k != rogue} == {"stored"}
        assert sorted(stored_events(station)) == others
    finally:
        station.close()


def test_a_bucket_without_object_lock_gets_no_evidence(
    make_store: StoreFactory, unlocked_bucket: str, s3_admin: Any, volume: Path, tmp_path: Path
) -> None:
    station = s3_station(tmp_path, make_store(bucket=unlocked_bucket), unlocked_bucket)
    try:
        worker = StoreWorker(station).start()
        clips = new_clips(ingest_volume(station, volume, on_clip=worker.submit))
        upload = worker.finish()
        assert upload.stored == [] and set(upload.failed) == set(clips)
        assert any("does not have Object Lock enabled" in m for m in upload.failed.values())

        retry = store_pending(station)

        assert retry.unavailable is not None
        assert "not fit for evidence" in retry.unavailable
        assert "--object-lock-enabled-for-bucket" in retry.unavailable
        assert retry.waiting == len(clips)
        listing = s3_admin.list_objects_v2(Bucket=unlocked_bucket, Prefix="evidence/sha256/")
        assert listing.get("KeyCount", 0) == 0
        assert {r.state for r in clip_rows(station)} == {"spooled"}
        assert set(station.spool.pending()) == set(clips)
    finally:
        station.close()


def test_checkpoints_are_published_under_object_lock_as_docks_end(
    make_store: StoreFactory, evidence_bucket: str, s3_admin: Any, volume: Path, tmp_path: Path
) -> None:
    store = make_store()
    station = s3_station(tmp_path, store, evidence_bucket, station_id="st-publish")
    try:
        ingest_volume(station, volume)  # the dock's end makes a checkpoint and publishes it

        with station.reading() as session:
            latest = station.custody.latest_checkpoint(session)
        assert latest is not None
        key = store.artefact_key(checkpoint_key("st-publish", latest.size))
        retention = s3_admin.get_object_retention(Bucket=evidence_bucket, Key=key)["Retention"]
        assert retention["Mode"] == "COMPLIANCE"
        note = store.get_bytes(checkpoint_key("st-publish", latest.size)).decode()
        checkpoint = open_checkpoint(
            note, station.custody.signer.verifier, origin=station.custody.origin
        )
        assert checkpoint.size == latest.size
        with pytest.raises(s3_admin.exceptions.ClientError):
            head = s3_admin.head_object(Bucket=evidence_bucket, Key=key)
            s3_admin.delete_object(Bucket=evidence_bucket, Key=key, VersionId=head["VersionId"])

        # Publishing again (the record of what was published lost) changes nothing.
        (station.settings.data_dir / PUBLISHED_FILE).unlink()
        again = publish_checkpoints(station)
        assert again.failed is None and again.integrity_failure is None
        listing = s3_admin.list_object_versions(
            Bucket=evidence_bucket, Prefix="evidence/checkpoints/st-publish/"
        )
        keys = [v["Key"] for v in listing.get("Versions", [])]
        assert len(keys) == len(set(keys))  # one version of each: nothing was written twice
    finally:
        station.close()


def test_spool_space_warns_before_the_spool_fills(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.prepare()
    (spool.root / ("ab" * 32)).write_bytes(b"x" * 1000)
    free = shutil.disk_usage(spool.root).free

    critical = spool_space(spool, min_free_bytes=free * 10)
    low = spool_space(spool, min_free_bytes=int(free / 1.5))

    assert critical is not None and low is not None
    assert critical.level == "critical"
    assert critical.message is not None
    assert "less than ingest.min_spool_free_bytes" in critical.message
    assert "1 clip(s)" in critical.message
    assert low.level == "low" and low.message is not None and "is filling" in low.message
    assert (low.waiting_clips, low.waiting_bytes) == (1, 1000)
    assert spool_space(Spool(tmp_path / "absent"), 0) is None


def test_the_daemon_hook_logs_spool_space(
    make_store: StoreFactory, evidence_bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    station = s3_station(tmp_path, make_store(), evidence_bucket)
    try:
        free = shutil.disk_usage(station.spool.root).free
        station.settings = replace(
            station.settings,
            ingest=replace(station.settings.ingest, min_spool_free_bytes=free * 10),
        )
        with caplog.at_level(logging.WARNING, logger="evidence_agent.services.spool_space"):
            space = watch_spool_space(station)
        assert space is not None and space.level == "critical"
        assert any(r.levelno == logging.ERROR and "spool" in r.getMessage() for r in caplog.records)
    finally:
        station.close()


def test_leftover_spool_copies_of_stored_clips_are_reclaimed_after_verification(
    make_store: StoreFactory, evidence_bucket: str, volume: Path, tmp_path: Path
) -> None:
    station = s3_station(tmp_path, make_store(), evidence_bucket)
    try:
        clips = new_clips(ingest_volume(station, volume))
        assert sorted(store_pending(station).stored) == sorted(clips.values())
        # A crash after the catalog said "stored" but before the copy was removed.
        sha256 = sorted(clips)[0]
        leftover = station.spool.path_of(sha256)
        leftover.write_bytes(b"")  # content does not matter: only the store's copy is checked
        (station.spool.root / f"{sha256}.upload.json").write_text("{}")

        retry = store_pending(station)

        assert retry.reclaimed == [sha256]
        assert spool_entries(station) == []
        with station.reading() as session:
            states = set(session.exec(select(col(Clip.state))))
        assert states == {"stored"}
    finally:
        station.close()
