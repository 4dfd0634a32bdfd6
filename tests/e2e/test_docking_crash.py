"""Docks killed with SIGKILL (the daemon copying several recorders, an `ingest` run), then run again.

Every clip must end up catalogued and stored exactly once, the spool must hold no partial copy,
and the custody log must verify.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import select

from evidence_agent.catalog.models import Clip
from evidence_agent.config import build_settings
from evidence_agent.services.demo_recorder import DemoVolume, generate_clip, make_demo_recorder
from evidence_agent.services.ingest import ingest_volume
from evidence_agent.services.station import open_station
from tests.support import service_missing

START = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)
RECORDERS = (("A000001", "100001"), ("A000002", "100002"), ("A000003", "100003"))
LARGE_CLIPS = 2  # per recorder, ~75 MB each: long enough copies to be killed in the middle of
LARGE_BITRATE = 150_000_000
TIMEOUT = 40.0


def agent_command() -> list[str]:
    """The installed `evidence-agent` command (as systemd runs it), else the module."""
    script = Path(sys.executable).parent / "evidence-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "evidence_agent"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def make_volume(root: Path, serial: str, badge: str, index: int) -> list[Path]:
    """A demo recorder plus a few large clips; returns its media files."""
    demo: DemoVolume = make_demo_recorder(
        root, serial=serial, badge=badge, clips=1, start=START + timedelta(hours=index)
    )
    media = [f.path for f in demo.media]
    tz = ZoneInfo("Asia/Shanghai")
    for k in range(LARGE_CLIPS):
        moment = START + timedelta(hours=index, minutes=10 + k)
        local = moment.astimezone(tz).strftime("%Y%m%d%H%M%S")
        path = root / "DCIM" / "100MEDIA" / f"{serial}_{badge}_{local}_{10 + k:04d}.MP4"
        generate_clip(path, seconds=4, creation_time=moment, bitrate=LARGE_BITRATE)
        media.append(path)
    return media


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return []  # being created
    try:
        return list(conn.execute(sql))
    except sqlite3.OperationalError:
        return []  # the schema is being created
    finally:
        conn.close()


def test_sigkill_mid_copy_then_restart_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    data = tmp_path / "data"
    dock = data / "dock"
    originals: dict[tuple[str, str], str] = {}  # (recorder, source path) -> sha256
    for index, (serial, badge) in enumerate(RECORDERS):
        volume = dock / serial
        for path in make_volume(volume, serial, badge, index):
            originals[(serial, str(path.relative_to(volume)))] = sha256_of(path)
    total = len(originals)
    # Equal content on two recorders (the demo's photo is the same picture) is one clip, seen twice.
    unique = len(set(originals.values()))
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data),
        "EVIDENCE_AGENT__DOCK__SOURCES": '["folder"]',
        "EVIDENCE_AGENT__DOCK__SETTLE_SECONDS": "0.2",
        "EVIDENCE_AGENT__DOCK__METRICS_PORT": "0",
        "EVIDENCE_AGENT__STATION__ID": "crash-station",
        "EVIDENCE_AGENT__STATION__TIMEZONE": "Asia/Shanghai",
    }
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    db = data / "catalog.sqlite3"
    incoming = data / "spool" / ".incoming"

    # 1. Start, and kill -9 while a large clip is half copied and some clips are catalogued.
    first = subprocess.Popen([*agent_command(), "run"], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert time.monotonic() < deadline, "the daemon never got to copying"
            assert first.poll() is None, "the daemon exited early"
            catalogued = query(db, "SELECT count(*) FROM clips")
            partial = (
                [p for p in incoming.glob("*.part") if _size(p) > 0] if incoming.is_dir() else []
            )
            if partial and catalogued and int(str(catalogued[0][0])) >= len(RECORDERS):
                first.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
    finally:
        if first.poll() is None:
            first.kill()
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    killed_at = int(str(query(db, "SELECT count(*) FROM clips")[0][0]))
    assert 0 < killed_at < total
    assert list(incoming.glob("*.part")), "the kill left no partial copy: it was not mid-copy"

    # 2. Restart: the partial copy is dropped, the interrupted docks resume.
    second = subprocess.Popen([*agent_command(), "run"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            rows = query(db, "SELECT state FROM clips")
            finished = query(db, "SELECT count(*) FROM dock_sessions WHERE state = 'finished'")
            if (
                len(rows) >= unique
                and all(r[0] == "stored" for r in rows)
                and finished
                and finished[0][0] == len(RECORDERS)
            ):
                break
            time.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr

    # 3. Every clip exactly once, with the original's hash, and stored.
    clips = query(db, "SELECT sha256, state FROM clips")
    assert len(clips) == unique, stderr
    assert {str(sha) for sha, _ in clips} == set(originals.values())
    assert {state for _, state in clips} == {"stored"}
    # Each file of each recorder was taken exactly once, and is the clip with its hash.
    sightings = query(
        db,
        "SELECT r.serial, s.source_path_bytes, c.sha256 FROM clip_sources s "
        "JOIN recorders r ON r.id = s.recorder_id JOIN clips c ON c.id = s.clip_id",
    )
    assert len(sightings) == total
    found = {(str(serial), bytes(path).decode()): str(sha) for serial, path, sha in sightings}  # type: ignore[arg-type]
    assert found == originals
    ingested = query(db, "SELECT count(*) FROM custody_entries WHERE event_type = 'clip.ingested'")
    assert ingested[0][0] == unique
    states = dict(query(db, "SELECT state, count(*) FROM dock_sessions GROUP BY state"))
    assert states.get("interrupted", 0) >= 1
    assert "interrupted by the last stop" in stderr

    # 4. No partial or orphan copies in the spool: everything went to the store.
    assert list(incoming.iterdir()) == []
    assert [p.name for p in (data / "spool").iterdir() if p.name != ".incoming"] == []

    # 5. The custody log verifies.
    verify = subprocess.run(
        [*agent_command(), "verify"], env=env, capture_output=True, text=True, timeout=120
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _size(path: Path) -> int:
    """0 for a partial copy that was renamed into place between listing and stat."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def cli_env(data: Path) -> dict[str, str]:
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data)}
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    return env


def test_an_ingest_killed_mid_dock_is_marked_interrupted_by_the_next(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    volume = tmp_path / "vol"
    make_volume(volume, *RECORDERS[0], 0)
    data = tmp_path / "data"
    db = data / "catalog.sqlite3"
    env = cli_env(data)
    command = [*agent_command(), "ingest", str(volume), "--json"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not query(db, "SELECT 1 FROM clips"):
            assert time.monotonic() < deadline, "the ingest never catalogued a clip"
            assert first.poll() is None, "the ingest ended before it could be killed"
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    ((killed,),) = query(db, "SELECT id FROM dock_sessions WHERE state = 'running'")

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode in (0, 1), second.stderr  # 1: the demo's flagged clips
    assert json.loads(second.stdout)["state"] == "finished"
    states = dict(query(db, "SELECT id, state FROM dock_sessions"))
    assert states.pop(killed) == "interrupted"
    assert set(states.values()) == {"finished"}
    recovered = query(
        db,
        "SELECT entry FROM custody_entries WHERE event_type = 'dock.finished' "
        f"AND subject_id = '{killed}'",
    )
    assert json.loads(bytes(recovered[0][0]))["data"]["recovered"] is True  # type: ignore[arg-type]
    assert list((data / "running-docks").iterdir()) == []
    status = subprocess.run(
        [*agent_command(), "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert json.loads(status.stdout)["docks_running"] == []


def test_a_reingest_stores_the_clips_an_earlier_run_left_in_the_spool(tmp_path: Path) -> None:
    """Killed between the store's write and the catalog's "stored": the clip waits in the spool,
    and the next ingest of its recorder, which reads nothing new, still stores it."""
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    volume = make_demo_recorder(tmp_path / "vol", start=START, clips=1).root
    data = tmp_path / "data"
    station = open_station(build_settings({}, {"EVIDENCE_AGENT_DATA_DIR": str(data)}))
    try:
        report = ingest_volume(station, volume)  # catalogued; the store never ran
        clip = report.clips[0]
        with station.reading() as session:
            row = session.exec(select(Clip).where(Clip.id == clip.clip_id)).one()
        station.store.put(
            row.sha256, station.spool.path_of(row.sha256), row.size, row.retention_until
        )
    finally:
        station.close()

    again = subprocess.run(
        [*agent_command(), "ingest", str(volume), "--json"],
        env=cli_env(data),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert {c["outcome"] for c in result["clips"]} == {"already_ingested"}
    assert {c["state"] for c in result["clips"]} == {"stored"}
    assert len(result["store"]["stored"]) == len(result["clips"])
    assert query(data / "catalog.sqlite3", "SELECT DISTINCT state FROM clips") == [("stored",)]
    assert [p.name for p in (data / "spool").iterdir()] == [".incoming"]
