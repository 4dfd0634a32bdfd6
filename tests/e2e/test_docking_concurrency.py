"""Docks at once on one data directory, as people start them: two `ingest` runs of one volume, two daemons."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from evidence_agent.services.demo_recorder import make_demo_recorder
from tests.e2e.test_docking_crash import agent_command
from tests.support import service_missing

START = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)
TIMEOUT = 60.0


def environment(data: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data),
        "EVIDENCE_AGENT__DOCK__SOURCES": '["folder"]',
        "EVIDENCE_AGENT__DOCK__METRICS_PORT": "0",
    }
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    return env


def test_two_ingests_of_one_volume_at_once_both_finish_cleanly(tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    volume = make_demo_recorder(tmp_path / "vol", start=START, clips=8).root
    data = tmp_path / "data"
    env = environment(data)
    runs = [
        subprocess.Popen(
            [*agent_command(), "ingest", str(volume), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=TIMEOUT * 2) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert "Traceback" not in stderr, stderr
        assert run.returncode in (0, 1), stderr  # 1: the demo's flagged clips
        assert json.loads(stdout)["state"] == "finished"
    with sqlite3.connect(data / "catalog.sqlite3") as db:
        assert db.execute("SELECT DISTINCT state FROM dock_sessions").fetchall() == [("finished",)]
        assert db.execute("SELECT DISTINCT state FROM clips").fetchall() == [("stored",)]
    # Nothing left in the spool: every copy read by either run is in the store.
    assert [p.name for p in (data / "spool").iterdir()] == [".incoming"]
    assert list((data / "spool" / ".incoming").iterdir()) == []


def wait_for_lock(path: Path, daemon: subprocess.Popen[str]) -> None:
    """Until the daemon's note is in the data directory's lock: it holds the lock."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert daemon.poll() is None, "the daemon exited early"
        if path.exists() and path.read_text().startswith(f"pid {daemon.pid} "):
            return
        time.sleep(0.05)
    raise AssertionError("the daemon never locked its data directory")


def stop(daemon: subprocess.Popen[str]) -> str:
    daemon.send_signal(signal.SIGTERM)
    _, stderr = daemon.communicate(timeout=TIMEOUT)
    assert daemon.returncode == 0, stderr
    return stderr


def test_a_second_daemon_on_one_data_directory_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = environment(data)
    run = [*agent_command(), "run"]
    first = subprocess.Popen(run, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lock(data / "daemon.lock", first)
        second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert second.returncode == 2, second.stderr
        assert "Traceback" not in second.stderr
        assert f"already running on the data directory {data}" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "remedy:" in second.stderr
        assert first.poll() is None  # the first one runs on
    finally:
        if first.poll() is None:
            stop(first)
        else:
            first.communicate()
    # Stopped, it leaves the directory to the next daemon.
    third = subprocess.Popen(run, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lock(data / "daemon.lock", third)
    finally:
        stop(third)
