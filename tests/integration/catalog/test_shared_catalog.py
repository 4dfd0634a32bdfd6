"""PostgreSQL 15 as the catalog: the same migrations, one station, and two stations at once on one
database and one SeaweedFS bucket."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from evidence_agent.catalog.database import migrate, open_engine, schema_is_current
from evidence_agent.catalog.models import Clip, CustodyCheckpoint, CustodyEntry, CustodyHead
from evidence_agent.catalog.queries import clip_views
from evidence_agent.custody.checkpoint import open_checkpoint
from evidence_agent.services.checkpoint_publishing import checkpoint_key
from evidence_agent.services.demo_recorder import DemoVolume, make_demo_recorder
from evidence_agent.services.ingest import ingest_volume
from evidence_agent.services.ingest_report import IngestReport
from evidence_agent.services.station import Station, open_station
from evidence_agent.services.storing import StoreReport, StoreWorker, store_pending
from tests.integration.conftest import DEMO_START, StoreFactory, station_settings
from tests.services.postgres import Database
from tests.support import service_missing

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


@pytest.fixture(scope="module")
def second_template(tmp_path_factory: pytest.TempPathFactory) -> DemoVolume:
    """Another officer's recorder, recorded the same morning."""
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed (apt-get install -y ffmpeg)")
    return make_demo_recorder(
        tmp_path_factory.mktemp("second-template") / "vol",
        serial="B765432",
        badge="100232",
        officer_name="李娜",
        unit_code="330100000002",
        unit_name="示范交警大队",
        start=DEMO_START + timedelta(minutes=20),
        clips=2,
    )


def make_station(
    tmp_path: Path, station_id: str, database: Database, store_factory: StoreFactory, bucket: str
) -> Station:
    store = store_factory()
    endpoint = store.settings.endpoint
    assert endpoint is not None
    settings = station_settings(
        tmp_path / station_id,
        station_id,
        bucket=bucket,
        endpoint=endpoint,
        catalog_url=database.config_url,
    )
    return open_station(settings, actor=f"user:clerk-{station_id}", store=store)


@pytest.fixture
def stations(
    tmp_path: Path, postgres_database: Database, make_store: StoreFactory, evidence_bucket: str
) -> Iterator[tuple[Station, Station]]:
    a = make_station(tmp_path, "station-a", postgres_database, make_store, evidence_bucket)
    b = make_station(tmp_path, "station-b", postgres_database, make_store, evidence_bucket)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_the_same_migrations_run_on_postgresql(postgres_database: Database, tmp_path: Path) -> None:
    pg = open_engine(postgres_database.url)
    lite = open_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    try:
        migrate(pg)
        migrate(pg)  # a second station starting on the same database changes nothing
        migrate(lite)
        assert schema_is_current(pg)

        def shape(engine: sa.engine.Engine) -> dict[str, set[str]]:
            inspector = sa.inspect(engine)
            return {
                table: {c["name"] for c in inspector.get_columns(table)}
                for table in inspector.get_table_names()
            }

        assert shape(pg) == shape(lite)
        assert {"clips", "custody_entries", "custody_heads", "custody_checkpoints"} <= set(
            shape(pg)
        )
        # The search index (0004) is there on both.
        for engine in (pg, lite):
            indexes = {i["name"] for i in sa.inspect(engine).get_indexes("clips")}
            assert "ix_clips_officer_start_end" in indexes
    finally:
        pg.dispose()
        lite.dispose()


def test_one_station_on_postgresql_and_seaweedfs(
    stations: tuple[Station, Station], recorder_template: DemoVolume, tmp_path: Path
) -> None:
    station, _ = stations
    volume = tmp_path / "vol"
    shutil.copytree(recorder_template.root, volume)

    worker = StoreWorker(station).start()
    report = ingest_volume(station, volume, on_clip=worker.submit)
    upload = worker.finish()

    new = {c.clip_id for c in report.clips if c.outcome == "new"}
    assert len(new) == len(recorder_template.media)
    assert set(upload.stored) == new and not upload.failed and not upload.integrity_failures
    with station.reading() as session:
        window = clip_views(
            session,
            officer="100231",
            since=DEMO_START - timedelta(minutes=1),
            until=DEMO_START + timedelta(hours=1),
            limit=50,
        )
    assert {v.clip.id for v in window} >= {
        c.clip_id for c in report.clips if c.source_path.endswith(".MP4")
    } - {c.clip_id for c in report.clips if "unreadable_media" in c.flags}
    assert all(v.clip.state == "stored" and v.clip.station_id == "station-a" for v in window)


@dataclass
class Run:
    report: IngestReport | None = None
    upload: StoreReport | None = None
    errors: list[BaseException] = field(default_factory=list)


def dock_at_once(pairs: list[tuple[Station, Path]]) -> list[Run]:
    """Each station docks its volume in its own thread, all starting together."""
    barrier = threading.Barrier(len(pairs))
    runs = [Run() for _ in pairs]

    def dock(station: Station, volume: Path, run: Run) -> None:
        try:
            worker = StoreWorker(station).start()
            barrier.wait(timeout=30)
            try:
                run.report = ingest_volume(station, volume, on_clip=worker.submit)
            finally:
                run.upload = worker.finish()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            run.errors.append(e)

    threads = [
        threading.Thread(target=dock, args=(station, volume, run), name=f"dock-{i}")
        for i, ((station, volume), run) in enumerate(zip(pairs, runs, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return runs


def test_two_stations_at_once_on_one_database_and_one_bucket(
    stations: tuple[Station, Station],
    recorder_template: DemoVolume,
    second_template: DemoVolume,
    s3_admin: Any,
    evidence_bucket: str,
    tmp_path: Path,
) -> None:
    a, b = stations
    vol_a, vol_b = tmp_path / "vol-a", tmp_path / "vol-b"
    shutil.copytree(recorder_template.root, vol_a)
    shutil.copytree(second_template.root, vol_b)
    # The same footage reaches both stations (a copy made before the recorder was docked).
    shared = recorder_template.good_videos[0].path
    copy = vol_b / "DCIM" / "100MEDIA" / "B765432_100232_20261120091000_0099.MP4"
    shutil.copy2(shared, copy)

    run_a, run_b = dock_at_once([(a, vol_a), (b, vol_b)])
    assert run_a.errors == [] and run_b.errors == []
    assert run_a.report is not None and run_b.report is not None
    # Spool copies of clips the other station was still storing are reclaimed by the retry.
    for station in (a, b, a):
        retry = store_pending(station)
        assert retry.unavailable is None and not retry.failed and not retry.integrity_failures

    # Clip identity is unique across stations: the shared footage is one clip, docked twice.
    shared_sha = next(c.sha256 for c in run_a.report.clips if c.source_path.endswith(shared.name))
    outcomes = [
        c.outcome for r in (run_a.report, run_b.report) for c in r.clips if c.sha256 == shared_sha
    ]
    assert sorted(outcomes) == ["duplicate", "new"]
    with a.reading() as session:
        clips = list(session.exec(select(Clip)))
    expected = {c.sha256 for r in (run_a.report, run_b.report) for c in r.clips}
    assert Counter(c.sha256 for c in clips) == Counter(expected)  # each content once
    assert {c.station_id for c in clips} == {"station-a", "station-b"}
    assert {c.state for c in clips} == {"stored"}  # no lost update: every clip ended stored
    assert a.spool.pending() == [] and b.spool.pending() == []

    # Every object is in the one bucket once.
    versions = s3_admin.list_object_versions(Bucket=evidence_bucket, Prefix="evidence/sha256/")
    keys = Counter(v["Key"].rsplit("/", 1)[-1] for v in versions.get("Versions", []))
    assert keys == Counter(expected)

    # Each station's custody log appended without gaps, and its checkpoints verify with its key.
    for station in (a, b):
        sid = station.settings.station_id
        with station.reading() as session:
            seqs = list(
                session.exec(
                    select(CustodyEntry.seq)
                    .where(CustodyEntry.station_id == sid)
                    .order_by(col(CustodyEntry.seq))
                )
            )
            head = session.get(CustodyHead, sid)
            checkpoints = list(
                session.exec(select(CustodyCheckpoint).where(CustodyCheckpoint.station_id == sid))
            )
        assert head is not None and seqs == list(range(head.size))
        assert checkpoints
        for row in checkpoints:
            note = open_checkpoint(
                row.note, station.custody.signer.verifier, origin=station.custody.origin
            )
            assert note.size == row.size
            # ... and each was published to the shared bucket.
            assert station.store.get_bytes(checkpoint_key(sid, row.size)).decode() == row.note  # type: ignore[attr-defined]


def test_two_stations_of_one_unit_dock_new_recorders_at_once(
    stations: tuple[Station, Station], tmp_path: Path
) -> None:
    a, b = stations
    volumes = []
    for name, serial, badge in (("vol-a", "C111111", "200001"), ("vol-b", "D222222", "200002")):
        volume = tmp_path / name
        (volume / "DCIM").mkdir(parents=True)
        (volume / "RECORDER.JSON").write_text(
            f'{{"serial": "{serial}", "badge": "{badge}", "unit_code": "330100009999"}}'
        )
        (volume / "DCIM" / f"{serial}_{badge}_20261120090000_0001.MP4").write_bytes(
            serial.encode() * 1000
        )
        volumes.append(volume)

    runs = dock_at_once([(a, volumes[0]), (b, volumes[1])])

    for run in runs:
        if run.errors:
            raise run.errors[0]
    with a.reading() as session:
        assert len(list(session.exec(select(Clip)))) == 2


def test_verify_checks_every_station_log_in_a_shared_catalog(
    stations: tuple[Station, Station],
    recorder_template: DemoVolume,
    second_template: DemoVolume,
    tmp_path: Path,
) -> None:
    from evidence_agent.services.audit.verify_station import verify_station

    a, b = stations
    for station, template in ((a, recorder_template), (b, second_template)):
        volume = tmp_path / station.settings.station_id / "vol"
        shutil.copytree(template.root, volume)
        ingest_volume(station, volume)
        assert not store_pending(station).failed

    for station in (a, b):
        report = verify_station(station)
        assert report.intact, [f.to_json() for f in report.findings]
        assert {log.station for log in report.logs} == {"station-a", "station-b"}
