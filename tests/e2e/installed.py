"""A station installed as a service, for the end-to-end tests of the local API.

Real accounts (useradd, removed afterwards): the service's, a clerk, a supervisor, an auditor,
a legal reviewer and an outsider, the last five in the station's socket group. The data directory is the service
account's alone (0700), the daemon runs as that account with the socket group as its group, and
each person runs the ordinary `evidence-agent` commands, which reach the station through the
daemon's local API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.domain.working_days import WorkingDayCalendar
from tests.support import service_missing

EA = Path(sys.executable).with_name("evidence-agent")
REPO = Path(__file__).resolve().parents[2]
FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)
SYSTEM_PYTHON = Path("/usr/bin/python3.11")
DAYS_AHEAD = 200  # the daemon's clock in the modules' stations (tests/e2e/conftest.py)


def daemon_today() -> datetime:
    return datetime.now(UTC) + timedelta(days=DAYS_AHEAD)


def calendar_settings() -> dict[str, str]:
    """Past the working-day library's last year the station needs that year's arrangement
    configured; New Year's Day stands in for it here, which the tests' clocks do not cross."""
    year = daemon_today().year
    if WorkingDayCalendar().knows(year):
        return {}
    return {"EVIDENCE_AGENT__CALENDAR__HOLIDAYS": json.dumps([f"{year}-01-01"])}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        service_missing(f"{name} is not installed (passwd / util-linux)")
    return found


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Accounts:
    service: str
    clerk: str
    supervisor: str
    auditor: str
    reviewer: str  # the legal department's
    outsider: str
    group: str  # the socket's group: who may connect


def faketime_library() -> str:
    found = [p for p in FAKETIME_LIBRARIES if Path(p).exists()]
    if not found:
        service_missing("libfaketime is not installed: scripts/setup.sh --dev installs it")
    return found[0]


@dataclass
class Station:
    base: Path
    data: Path
    socket: Path
    accounts: Accounts
    program: Path
    videos: list[dict[str, Any]]

    def env(self, **extra: str) -> dict[str, str]:
        """What a station's configuration file says to everyone: where the data and socket are."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "EVIDENCE_AGENT_DATA_DIR": str(self.data),
            "EVIDENCE_AGENT__PATHS__API_SOCKET": str(self.socket),
            "EVIDENCE_AGENT__STATION__TIMEZONE": "Asia/Shanghai",
            **extra,
        }
        return env

    def as_user(self, user: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", user, "--", str(self.program), *args],
            env=self.env(**extra),
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def json_as(self, user: str, *args: str) -> Any:
        done = self.as_user(user, *args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def access_log(self, *args: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.json_as(self.accounts.supervisor, "access-log", *args)
        return rows


def _ready(socket_path: Path, daemon: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 90
    while not socket_path.exists():
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            daemon.wait(timeout=30)
            pytest.fail(f"the daemon did not serve its socket:\n{log.read_text()}")
        time.sleep(0.1)


@contextmanager
def installed_station(
    accounts: Accounts,
    program: Path,
    *,
    faketime: str | None = None,
    docked_at_start: Callable[[Path], None] | None = None,
    **daemon_env: str,
) -> Iterator[Station]:
    """A station installed as a service: docked once as root (the demo recorder), handed to the
    service account (data directory 0700), the clerk, supervisor, auditor and reviewer given
    their roles in the roles file, the daemon run as the service account with the socket group
    as its group (`faketime`: that far from now, e.g. "+200d"; `docked_at_start(dock_dir)`: puts
    volumes in the dock folder, which the daemon docks as it starts; `daemon_env`: more of its
    settings)."""
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed: scripts/setup.sh installs it")
    base = Path(tempfile.mkdtemp(prefix="ea-installed-"))
    base.chmod(0o755)
    data = base / "data"
    run_dir = base / "run"
    run_dir.mkdir()
    sock = run_dir / "api.sock"
    root_env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data)}
    root_env.pop("EVIDENCE_AGENT_CONFIG", None)
    # Installed and docked once, then handed to the service account as the unit would have it.
    for args in (["demo-recorder", str(base / "volume")], ["ingest", str(base / "volume")]):
        done = subprocess.run(
            [str(EA), *args], env=root_env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode in (0, 1), done.stderr  # 1: the demo's cut-off clip is flagged
    if docked_at_start is not None:
        (data / "dock").mkdir(exist_ok=True)
        docked_at_start(data / "dock")
    sh("chown", "-R", f"{accounts.service}:", str(data), str(run_dir))
    data.chmod(0o700)
    roles = data / "roles.toml"  # an administrator's file: root's, read by everyone
    roles.write_text(
        f'[roles.users]\n{accounts.clerk} = ["clerk"]\n{accounts.supervisor} = ["supervisor"]\n'
        f'{accounts.auditor} = ["auditor"]\n{accounts.reviewer} = ["reviewer"]\n'
    )
    os.chown(roles, 0, 0)
    roles.chmod(0o644)
    made = Station(base, data, sock, accounts, program, [])
    env = made.env(
        EVIDENCE_AGENT__DOCK__METRICS_PORT="0",
        EVIDENCE_AGENT__DOCK__SOURCES='["folder"]',
        **daemon_env,
    )
    # libfaketime preloaded only once the account is the service's (env runs after setpriv):
    # loaded into root's setpriv, it would make shared memory the service cannot open.
    preload = [f"LD_PRELOAD={faketime_library()}", f"FAKETIME={faketime}"] if faketime else []
    log = base / "daemon.log"  # a file, not a pipe: a daemon logging under load never blocks
    with log.open("w") as sink:
        daemon = subprocess.Popen(
            ["setpriv", f"--reuid={accounts.service}", f"--regid={accounts.group}",
             "--clear-groups", "--", "env", *preload, str(program), "run"],
            env=env,
            cwd=base,
            stderr=sink,
            text=True,
        )  # fmt: skip
    try:
        _ready(sock, daemon, log)
        clips = made.json_as(accounts.clerk, "clips", "search", "--officer", "100231")
        made.videos = sorted(
            (c for c in clips if c["media_kind"] == "video" and c["duration_seconds"]),
            key=lambda c: c["recorded_start"],
        )
        yield made
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
