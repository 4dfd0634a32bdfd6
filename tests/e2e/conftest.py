"""Fixtures of the end-to-end tests: OS accounts made with useradd, the program they run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.installed import (
    DAYS_AHEAD,
    REPO,
    SYSTEM_PYTHON,
    Accounts,
    Station,
    calendar_settings,
    installed_station,
    sh,
    tool,
)
from tests.support import service_missing


@pytest.fixture(scope="module")
def accounts() -> Iterator[Accounts]:
    if os.geteuid() != 0:
        pytest.skip("making OS accounts needs root")
    for name in ("useradd", "userdel", "groupadd", "groupdel", "runuser", "setpriv"):
        tool(name)
    run = uuid.uuid4().hex[:6]  # unique per run: two runs at once do not meet
    made = Accounts(*(f"ea{kind}{run}" for kind in ("s", "c", "p", "a", "r", "o", "g")))
    created: list[str] = []
    sh("groupadd", made.group)
    try:
        sh("useradd", "--system", "-M", "-s", "/usr/sbin/nologin", made.service)
        created.append(made.service)
        for person in (made.clerk, made.supervisor, made.auditor, made.reviewer, made.outsider):
            sh("useradd", "-M", "-s", "/usr/sbin/nologin", "-G", made.group, person)
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


@pytest.fixture(scope="module")
def station(accounts: Accounts, program: Path) -> Iterator[Station]:
    """The installed station of a module, its daemon 200 days ahead (libfaketime), so that the
    demo's clips are past retention and a deletion can be asked for and approved; its calendar
    knows the daemon's year."""
    with installed_station(
        accounts, program, faketime=f"+{DAYS_AHEAD}d", **calendar_settings()
    ) as made:
        yield made
