"""The station as a user runs it: the `evidence-agent` command, the daemon and the dock folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import service_missing

CLI = [sys.executable, "-m", "evidence_agent"]


def agent(
    data_dir: Path, *args: str, check: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data_dir)}
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr}")
    return proc


def sha256sum(path: Path) -> str:
    out = subprocess.run(
        ["sha256sum", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    root = tmp_path_factory.mktemp("demo")
    agent(root / "unused", "demo-recorder", str(root / "vol"), check=True)
    return root / "vol"


def test_daemon_ingests_a_volume_dropped_in_the_dock_folder(demo: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data),
        "EVIDENCE_AGENT__DOCK__SETTLE_SECONDS": "0.5",
    }
    env["EVIDENCE_AGENT__DOCK__SOURCES"] = '["folder"]'
    daemon = subprocess.Popen([*CLI, "run"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        dock = data / "dock"
        deadline = time.monotonic() + 30
        while not dock.is_dir() and time.monotonic() < deadline:
            time.sleep(0.2)
        staged = tmp_path / "staged"
        shutil.copytree(demo, staged)
        staged.rename(dock / "A123456")  # a volume appearing at once, as a mount does

        media = sorted(p for p in demo.rglob("*") if p.suffix in (".MP4", ".JPG", ".M4A"))
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            proc = agent(data, "clips", "list", "--json")
            rows = json.loads(proc.stdout) if proc.returncode == 0 else []
            if len(rows) == len(media) and all(r["state"] == "stored" for r in rows):
                break
            time.sleep(0.5)
        assert len(rows) == len(media), rows
        expected = {str(p.relative_to(demo)): sha256sum(p) for p in media}
        assert {r["source_path"]: r["sha256"] for r in rows} == expected
        for row in rows:
            for key in (
                "id",
                "size",
                "recorder",
                "officer",
                "unit",
                "recorded_start",
                "recorded_end",
                "ingested_at",
                "flags",
            ):
                assert key in row
            assert row["recorder"] == "A123456" and row["officer"] == "100231"
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr
    assert "recorder A123456" in stderr

    status = json.loads(agent(data, "status", "--json", check=True).stdout)
    assert status["backlog"]["spooled_clips"] == 0
    assert status["clips_total"] == len(media)


def test_a_station_started_with_the_example_file_keeps_to_its_data_dir(
    demo: Path, tmp_path: Path
) -> None:
    """The example file used as it is sets no path of its own (EVIDENCE_AGENT_DATA_DIR places
    everything) and no USB device is allowed by example values."""
    example = Path(__file__).resolve().parents[2] / "config" / "evidence-agent.toml"
    data = tmp_path / "elsewhere"
    default_dir = Path("/var/lib/evidence-agent")
    default_existed = default_dir.exists()
    env = {
        **os.environ,
        "EVIDENCE_AGENT_CONFIG": str(example),
        "EVIDENCE_AGENT_DATA_DIR": str(data),
        "EVIDENCE_AGENT__DOCK__SOURCES": '["folder"]',
        "EVIDENCE_AGENT__DOCK__SETTLE_SECONDS": "0.5",
        "EVIDENCE_AGENT__DOCK__METRICS_PORT": "0",
    }
    shown = subprocess.run(
        [*CLI, "config", "show"], env=env, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    values = json.loads(shown.stdout)
    assert values["dock"]["usb_allowlist"] == []
    for path in (
        *values["paths"].values(),
        values["store"]["local_dir"],
        values["catalog"]["url"].removeprefix("sqlite:///"),
    ):
        assert Path(path).is_relative_to(data), (path, values)

    daemon = subprocess.Popen([*CLI, "run"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (data / "dock").is_dir() and time.monotonic() < deadline:
            time.sleep(0.2)
        staged = tmp_path / "staged"
        shutil.copytree(demo, staged)
        staged.rename(data / "dock" / "A123456")
        media = [p for p in demo.rglob("*") if p.suffix in (".MP4", ".JPG", ".M4A")]
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            proc = subprocess.run(
                [*CLI, "clips", "list", "--json"], env=env, capture_output=True, text=True
            )
            rows = json.loads(proc.stdout) if proc.returncode == 0 else []
            if len(rows) == len(media) and all(r["state"] == "stored" for r in rows):
                break
            time.sleep(0.5)
        assert len(rows) == len(media) and all(r["state"] == "stored" for r in rows), rows
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, stderr
    assert (data / "catalog.sqlite3").is_file() and (data / "keys" / "station.key").is_file()
    assert (data / "spool").is_dir()
    stored = [p for p in (data / "objects" / "sha256").rglob("*") if p.is_file()]
    assert {p.name for p in stored} == {r["sha256"] for r in rows}
    assert default_dir.exists() == default_existed  # nothing made at the built-in default


def test_ingest_json_summary_and_exit_codes(demo: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = agent(data, "ingest", str(demo), "--json")
    assert proc.returncode == 1, proc.stderr  # finished with warnings: a corrupt clip is flagged
    result = json.loads(proc.stdout)
    assert result["recorder"] == "A123456"
    for clip in result["clips"]:
        assert set(clip) >= {"id", "source_path", "sha256", "state", "flags"}
        assert clip["state"] == "stored"
        assert clip["sha256"] == sha256sum(demo / clip["source_path"])
    assert any("unreadable_media" in c["flags"] for c in result["clips"])
    assert {n["reason"] for n in result["not_ingested"]} == {"identity_file", "not_media"}
    assert "INFO" not in proc.stdout  # logs never mix into JSON

    again = agent(data, "ingest", str(demo), "--json")
    assert again.returncode == 0
    assert {c["outcome"] for c in json.loads(again.stdout)["clips"]} == {"already_ingested"}


def test_bad_input_gets_a_message_and_exit_code_not_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    missing = agent(data, "ingest", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "not a directory" in missing.stderr and "Traceback" not in missing.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\nbackend = "tape"\nsurprise = 1\n[deadline]\nwarn_hours = 30\n')
    proc = agent(data, "--config", str(bad), "config", "validate")
    assert proc.returncode == 4
    for key in ("store.backend", "store.surprise", "deadline.warn_hours"):
        assert key in proc.stderr
    assert "Traceback" not in proc.stderr

    example = Path(__file__).resolve().parents[2] / "config" / "evidence-agent.toml"
    assert agent(data, "--config", str(example), "config", "validate").returncode == 0


def test_config_example_writes_the_example_file_and_show_prints_every_key(tmp_path: Path) -> None:
    from evidence_agent.config_keys import KEYS

    example = Path(__file__).resolve().parents[2] / "config" / "evidence-agent.toml"
    written = agent(tmp_path / "data", "config", "example")
    assert written.returncode == 0
    assert written.stdout == example.read_text(encoding="utf-8")

    shown = agent(tmp_path / "data", "--config", str(example), "config", "show")
    assert shown.returncode == 0, shown.stderr
    values = json.loads(shown.stdout)
    assert {(s, k) for s, body in values.items() for k in body} == {
        (k.section, k.name) for k in KEYS
    }
    assert values["retention"] == {"standard_days": 183, "important_days": 1095}
    assert values["paths"]["data_dir"] == str(tmp_path / "data")  # the variable wins


def test_configuration_that_would_fail_later_is_refused_by_validation(tmp_path: Path) -> None:
    config = tmp_path / "station.toml"
    config.write_text(
        '[catalog]\nurl = "not a url"\n'
        "[dock]\nsettle_seconds = inf\n"
        '[ingest]\nchunk_bytes = 1099511627776\nidentity_file = "../../x"\n'
        "[review]\ngap_tolerance_seconds = nan\n",
        encoding="utf-8",
    )
    for command in (["config", "validate"], ["status"]):
        proc = agent(tmp_path / "data", "--config", str(config), *command)
        assert proc.returncode == 4, (command, proc.stderr)
        for key in (
            "catalog.url",
            "dock.settle_seconds",
            "ingest.chunk_bytes",
            "ingest.identity_file",
            "review.gap_tolerance_seconds",
        ):
            assert key in proc.stderr, (key, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://evidence:s3cr3t-pw@db.example/evidence",
        "postgresql+psycopg://evidence:s3cr3t-pw@db.example:5432/evidence",
        "postgresql://evidence@db.example/evidence?sslmode=require&password=s3cr3t-pw",
    ],
)
@pytest.mark.parametrize("given_by", ["file", "environment"])
def test_a_password_in_the_catalog_url_is_refused_and_never_printed(
    tmp_path: Path, url: str, given_by: str
) -> None:
    """No credential is read from the configuration: PGPASSWORD or ~/.pgpass hold it."""
    config = tmp_path / "station.toml"
    config.write_text(f"[catalog]\nurl = {json.dumps(url)}\n", encoding="utf-8")
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")}
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    args = ["--config", str(config)]
    if given_by == "environment":
        env["EVIDENCE_AGENT__CATALOG__URL"] = url
        args = []
    for command in (["config", "validate"], ["config", "show"], ["status"]):
        proc = subprocess.run(
            [*CLI, *args, *command], env=env, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 4, (command, proc.stdout, proc.stderr)
        assert "catalog.url" in proc.stderr
        assert "PGPASSWORD" in proc.stderr and ".pgpass" in proc.stderr
        assert "s3cr3t-pw" not in proc.stdout + proc.stderr

    # Without the password the same URL is accepted, and shown as given.
    bare = url.replace(":s3cr3t-pw@", "@").replace("&password=s3cr3t-pw", "")
    config.write_text(f"[catalog]\nurl = {json.dumps(bare)}\n", encoding="utf-8")
    env.pop("EVIDENCE_AGENT__CATALOG__URL", None)
    shown = subprocess.run(
        [*CLI, "--config", str(config), "config", "show"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["catalog"]["url"] == bare


def test_two_stations_side_by_side_by_data_dir(demo: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    agent(a, "ingest", str(demo))
    assert json.loads(agent(a, "clips", "list", "--json").stdout)
    # A read-only command where no station is says so; it makes no station (nor key) there.
    nowhere = agent(b, "clips", "list", "--json")
    assert nowhere.returncode == 2 and "no station in" in nowhere.stderr
    assert not (b / "keys").exists()
    agent(b, "custody", "checkpoint")  # b's first command that writes makes station b
    assert json.loads(agent(b, "clips", "list", "--json").stdout) == []
    assert (a / "catalog.sqlite3").exists() and (a / "objects").is_dir() and (a / "spool").is_dir()
    key = a / "keys" / "station.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (
        hashlib.sha256(key.read_bytes()).hexdigest()
        != hashlib.sha256((b / "keys" / "station.key").read_bytes()).hexdigest()
    )


def test_the_station_files_are_private_to_its_account(demo: Path, tmp_path: Path) -> None:
    """Under a shell's umask 022 (the README's first command), nothing of the station is
    readable by other accounts: catalog, spool, objects, keys."""
    data = tmp_path / "data"
    old = os.umask(0o022)
    try:
        agent(data, "ingest", str(demo))
    finally:
        os.umask(old)
    loose = [
        f"{path} {stat.filemode(path.lstat().st_mode)}"
        for path in [data, *data.rglob("*")]
        if not path.is_symlink() and path.lstat().st_mode & 0o077
    ]
    assert not loose, loose
