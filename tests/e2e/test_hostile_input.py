"""Hostile or broken input reaches the CLI as a report and an exit code, never a crash: odd
identity files, volume names that are not UTF-8, volumes nested thousands deep, bad arguments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import service_missing

CLI = [sys.executable, "-m", "evidence_agent"]


def agent(
    data_dir: Path, *args: str | bytes, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data_dir)}
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    proc = subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    root = tmp_path_factory.mktemp("demo")
    proc = agent(root / "unused", "demo-recorder", str(root / "vol"))
    assert proc.returncode == 0, proc.stderr
    return root / "vol"


def _media_count(demo: Path) -> int:
    return len(list((demo / "DCIM" / "100MEDIA").iterdir()))


def _with_identity(demo: Path, target: Path, **changes: str) -> Path:
    shutil.copytree(demo, target)
    identity = target / "RECORDER.JSON"
    doc = json.loads(identity.read_text(encoding="utf-8"))
    doc.update(changes)
    # ensure_ascii keeps a lone surrogate as the \ud800 escape JSON allows
    identity.write_text(json.dumps(doc), encoding="utf-8")
    return target


@pytest.mark.parametrize("device_time", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00"])
def test_a_device_time_far_out_is_reported_and_the_clips_are_taken(
    demo: Path, tmp_path: Path, device_time: str
) -> None:
    volume = _with_identity(demo, tmp_path / "vol", device_time=device_time)
    proc = agent(tmp_path / "data", "ingest", str(volume), "--json")
    result = json.loads(proc.stdout)
    assert len(result["clips"]) == _media_count(demo)
    assert result["recorder"] == "A123456"  # from the file names
    assert any("device_time" in w for w in result["warnings"])


@pytest.mark.parametrize("name", ["\ud800张伟", "张伟\n2026-12-05 forged line", "\x1b[2K张伟"])
def test_an_identity_text_that_is_not_text_is_reported_and_the_clips_are_taken(
    demo: Path, tmp_path: Path, name: str
) -> None:
    volume = _with_identity(demo, tmp_path / "vol", officer_name=name)
    proc = agent(tmp_path / "data", "ingest", str(volume), "--json")
    result = json.loads(proc.stdout)
    assert len(result["clips"]) == _media_count(demo)
    assert any("officer_name" in w for w in result["warnings"])


def test_a_volume_whose_name_is_not_utf8_is_ingested_under_its_escaped_name(
    demo: Path, tmp_path: Path
) -> None:
    volume = os.path.join(os.fsencode(tmp_path), b"A123456-\xff\xfe")
    shutil.copytree(os.fsencode(demo), volume)
    proc = agent(tmp_path / "data", "ingest", os.fsdecode(volume), "--json")
    result = json.loads(proc.stdout)
    assert len(result["clips"]) == _media_count(demo)
    assert result["volume"].endswith("A123456-\\xff\\xfe")
    listed = agent(tmp_path / "data", "clips", "list", "--json")
    assert listed.returncode == 0
    assert len(json.loads(listed.stdout)) == _media_count(demo)


def test_a_volume_nested_1200_deep_is_listed_and_the_depth_reported(
    demo: Path, tmp_path: Path
) -> None:
    volume = tmp_path / "vol"
    shutil.copytree(demo, volume)
    fd = os.open(volume, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1200):  # deeper than Python's recursion limit, and than PATH_MAX allows
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    try:
        proc = agent(tmp_path / "data", "ingest", str(volume), "--json")
        result = json.loads(proc.stdout)
        assert len(result["clips"]) == _media_count(demo)
        too_deep = [n for n in result["not_ingested"] if n["reason"] == "too_deep"]
        assert len(too_deep) == 1
    finally:
        _flatten(volume / "d")


def _flatten(top: Path) -> None:
    """Remove a chain of nested `d` directories one level at a time: shutil.rmtree (and so
    pytest's clean-up of old temporary directories) recurses and fails on 1,200 levels."""
    spare = top.with_name("d-spare")
    while top.exists():
        if (top / "d").exists():
            (top / "d").rename(spare)
            top.rmdir()
            spare.rename(top)
        else:
            top.rmdir()


def test_an_empty_volume_argument_is_refused_not_the_current_directory(
    demo: Path, tmp_path: Path
) -> None:
    proc = agent(tmp_path / "data", "ingest", "", cwd=demo)
    assert proc.returncode == 2
    assert "empty" in proc.stderr
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").rglob("*.MP4"))


@pytest.mark.parametrize("serial", ["A12\nforged", "../../x", "A" * 5000, ""])
def test_a_recorder_serial_that_is_not_one_is_refused_before_anything_is_written(
    demo: Path, tmp_path: Path, serial: str
) -> None:
    data = tmp_path / "data"
    proc = agent(data, "ingest", str(demo), "--recorder", serial)
    assert proc.returncode == 2
    assert "not a serial" in proc.stderr
    assert len(proc.stderr) < 1000  # a 5,000-character serial is not echoed whole
    assert not data.exists()
