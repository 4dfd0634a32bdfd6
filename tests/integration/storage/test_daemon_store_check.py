"""The daemon's start: the store's self-test refuses a bucket unfit for evidence, an unreachable
store only delays uploads (docks go on into the spool), and a pass is remembered."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from evidence_agent.adapters.folder_source import FolderDockSource
from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.catalog.models import Clip, DockSession
from evidence_agent.config import build_settings
from evidence_agent.services.daemon import Daemon
from evidence_agent.services.demo_recorder import DemoVolume
from evidence_agent.services.station import Station, open_station, service_actor
from evidence_agent.services.storage_check import (
    CHECK_CACHE_FILE,
    OBJECT_LOCK,
    EvidenceBucketRefused,
)
from tests.integration.conftest import StoreFactory
from tests.integration.storage.outage import StoreOutage
from tests.services.seaweedfs import SeaweedFS

pytestmark = pytest.mark.s3

STATION = "st-daemon-check"
TIMEOUT = 60.0


def s3_station(tmp_path: Path, store: S3ObjectStore) -> Station:
    settings = build_settings(
        {
            "station": {"id": STATION},
            "store": {
                "backend": "s3",
                "bucket": store.settings.bucket,
                "endpoint": store.settings.endpoint,
            },
            "dock": {"settle_seconds": 0, "metrics_port": 0},
        },
        {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")},
    )
    return open_station(settings, actor=service_actor(STATION), store=store)


@contextmanager
def running(daemon: Daemon) -> Iterator[Daemon]:
    daemon.start()
    thread = threading.Thread(target=daemon.serve, name="serve")
    thread.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_the_daemon_refuses_to_start_on_a_bucket_without_object_lock(
    make_store: StoreFactory, unlocked_bucket: str, tmp_path: Path
) -> None:
    station = s3_station(tmp_path, make_store(bucket=unlocked_bucket))
    source = FolderDockSource(station.settings.dock_dir)
    try:
        daemon = Daemon(station, [source])
        with pytest.raises(EvidenceBucketRefused) as refused:
            daemon.start()
        assert "is not fit for evidence" in str(refused.value)
        assert f"{OBJECT_LOCK}: " in str(refused.value)
        assert "--object-lock-enabled-for-bucket" in str(refused.value)  # the remedy
        assert not (station.settings.data_dir / CHECK_CACHE_FILE).exists()
        daemon.pool.shutdown()
    finally:
        station.close()


def test_the_daemon_starts_on_an_evidence_bucket_and_remembers_the_pass(
    make_store: StoreFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store()
    station = s3_station(tmp_path, store)
    try:
        with (
            caplog.at_level(logging.INFO, logger="evidence_agent.services.storage_check"),
            running(Daemon(station, [FolderDockSource(station.settings.dock_dir)])),
        ):
            pass
        assert "object store self-test passed" in caplog.text
        # The upload queue trusts this record instead of probing the bucket again.
        record = json.loads((station.settings.data_dir / CHECK_CACHE_FILE).read_text())
        assert record["store"] == store.describe()
    finally:
        station.close()


def test_an_unreachable_store_at_start_is_a_warning_and_docks_go_into_the_spool(
    make_store: StoreFactory,
    seaweedfs: SeaweedFS,
    recorder_template: DemoVolume,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with StoreOutage(seaweedfs.s3_port) as outage:
        outage.down()
        station = s3_station(tmp_path, make_store(endpoint=outage.endpoint))
        try:
            with (
                caplog.at_level(logging.WARNING, logger="evidence_agent.services.storage_check"),
                running(Daemon(station, [FolderDockSource(station.settings.dock_dir)])),
            ):
                assert "the object store self-test could not run" in caplog.text
                shutil.copytree(recorder_template.root, tmp_path / "staged")
                (tmp_path / "staged").rename(station.settings.dock_dir / "A123456")

                def finished() -> list[DockSession]:
                    with station.reading() as session:
                        query = select(DockSession).where(DockSession.state == "finished")
                        return list(session.exec(query))

                wait_for("the dock to finish", finished)
            with station.reading() as session:
                clips = list(session.exec(select(Clip)))
            assert len(clips) == len(recorder_template.media)
            assert {c.state for c in clips} == {"spooled"}
            assert set(station.spool.pending()) == {c.sha256 for c in clips}
            assert not (station.settings.data_dir / CHECK_CACHE_FILE).exists()
        finally:
            station.close()
