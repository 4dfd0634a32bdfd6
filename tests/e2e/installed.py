"""An installed station for end-to-end tests: real OS accounts, the daemon as the service account.

Real accounts (useradd, removed afterwards): the service's, a clerk, a supervisor, an auditor
and an outsider, the last four in the station's socket group. The data directory is the service
account's alone (0700), the daemon runs as that account with the socket group as its group,
and each person runs the ordinary `evidence-agent` commands, which reach the station through
the daemon's local API. The daemon runs 200 days ahead (libfaketime), so that the demo's clips
are past retention and a deletion can be asked for and approved, unless the module says
`DAEMON_DAYS_AHEAD = 0` (under libfaketime the daemon was not seen to dock a folder's volume).
Each test module that asks for `station` gets its own, with the volumes its `docked_at_start`
puts in the dock folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import service_missing

EA = Path(sys.executable).with_name("evidence-agent")
REPO = Path(__file__).resolve().parents[2]
FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)
SYSTEM_PYTHON = Path("/usr/bin/python3.11")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        service_missing(f"{name} is not installed (passwd / util-linux)")
    return found


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Accounts:
    service: str
    clerk: str
    supervisor: str
    auditor: str
    outsider: str
    group: str  # the socket's group: who may connect


@pytest.fixture(scope="module")
def accounts() -> Iterator[Accounts]:
    if os.geteuid() != 0:
        pytest.skip("making OS accounts needs root")
    for name in ("useradd", "userdel", "groupadd", "groupdel", "runuser", "setpriv"):
        _tool(name)
    run = uuid.uuid4().hex[:6]  # unique per run: two runs at once do not meet
    made = Accounts(f"eas{run}", f"eac{run}", f"eap{run}", f"eaa{run}", f"eao{run}", f"eag{run}")
    created: list[str] = []
    _sh("groupadd", made.group)
    try:
        _sh("useradd", "--system", "-M", "-s", "/usr/sbin/nologin", made.service)
        created.append(made.service)
        for person in (made.clerk, made.supervisor, made.auditor, made.outsider):
            _sh("useradd", "-M", "-s", "/usr/sbin/nologin", "-G", made.group, person)
            created.append(person)
        yield made
    finally:
        for name in created:
            subprocess.run(["userdel", name], capture_output=True, timeout=60, check=False)
        subprocess.run(["groupdel", made.group], capture_output=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def program() -> Iterator[Path]:
    """`evidence-agent` as other accounts can run it: a venv of the system's Python 3.11 in a
    world-readable temporary directory, reading this checkout and its installed packages
    through a bind mount of the checkout there (the checkout may lie under a directory only
    root may enter, as root's home is)."""
    if not SYSTEM_PYTHON.exists():
        service_missing(f"{SYSTEM_PYTHON} is not installed: apt-get install -y python3")
    if shutil.which("mount") is None:
        service_missing("mount is not installed (util-linux)")
    prefix = Path(sys.prefix).resolve()
    if not prefix.is_relative_to(REPO):
        service_missing(f"the tests' virtualenv {prefix} is not inside the checkout {REPO}")
    base = Path(tempfile.mkdtemp(prefix="ea-program-"))
    repo = base / "repo"
    repo.mkdir()
    mounted = False
    try:
        base.chmod(0o755)
        subprocess.run(["mount", "--bind", str(REPO), str(repo)], check=True, timeout=60)
        mounted = True
        site = repo / prefix.relative_to(REPO) / "lib" / "python3.11" / "site-packages"
        subprocess.run(
            [str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(base / "venv")],
            check=True,
            timeout=120,
        )
        pth = base / "venv" / "lib" / "python3.11" / "site-packages" / "evidence_agent_test.pth"
        pth.write_text(f"import site; site.addsitedir({str(site)!r})\n{repo}\n")
        script = base / "venv" / "bin" / "evidence-agent"
        script.write_text(
            f"#!{base / 'venv' / 'bin' / 'python'}\nfrom evidence_agent.cli.app import main\nmain()\n"
        )
        script.chmod(0o755)
        yield script
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(repo)], check=False, timeout=60)
        # Never delete through a mount that is still there: it is the checkout itself.
        if not os.path.ismount(repo):
            shutil.rmtree(base, ignore_errors=True)


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


def _ready(socket_path: Path, daemon: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while not socket_path.exists():
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            _, log = daemon.communicate(timeout=30)
            pytest.fail(f"the daemon did not serve its socket:\n{log}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def station(request: pytest.FixtureRequest, accounts: Accounts, program: Path) -> Iterator[Station]:
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
    # A module's `docked_at_start(dock_dir)` puts volumes in the dock folder, which the daemon
    # docks as it starts.
    docked = getattr(request.module, "docked_at_start", None)
    if docked is not None:
        (data / "dock").mkdir(exist_ok=True)
        docked(data / "dock")
    _sh("chown", "-R", f"{accounts.service}:", str(data), str(run_dir))
    data.chmod(0o700)
    roles = data / "roles.toml"  # an administrator's file: root's, read by everyone
    roles.write_text(
        f'[roles.users]\n{accounts.clerk} = ["clerk"]\n{accounts.supervisor} = ["supervisor"]\n'
        f'{accounts.auditor} = ["auditor"]\n'
    )
    os.chown(roles, 0, 0)
    roles.chmod(0o644)
    made = Station(base, data, sock, accounts, program, [])
    daemon_env = made.env(
        EVIDENCE_AGENT__DOCK__METRICS_PORT="0",
        EVIDENCE_AGENT__DOCK__SOURCES='["folder"]',
    )
    days = getattr(request.module, "DAEMON_DAYS_AHEAD", 200)
    ahead = [f"LD_PRELOAD={faketime_library()}", f"FAKETIME=+{days}d"] if days else []
    # libfaketime preloaded only once the account is the service's (env runs after setpriv):
    # loaded into root's setpriv, it would make shared memory the service cannot open.
    daemon = subprocess.Popen(
        ["setpriv", f"--reuid={accounts.service}", f"--regid={accounts.group}", "--clear-groups",
         "--", "env", *ahead, str(program), "run"],
        env=daemon_env,
        cwd=base,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _ready(sock, daemon)
        clips = made.json_as(accounts.clerk, "clips", "search", "--officer", "100231")
        made.videos = sorted(
            (c for c in clips if c["media_kind"] == "video" and c["duration_seconds"]),
            key=lambda c: c["recorded_start"],
        )
        yield made
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.communicate(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
