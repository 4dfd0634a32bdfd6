"""The shipped systemd unit, udev rule and sysusers file, checked by systemd's own tools."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from evidence_agent.domain.roles import DEFAULT_GROUPS
from tests.support import service_missing

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "evidence-agent.service"
EXEC_START = "ExecStart=/opt/evidence-agent/bin/evidence-agent run"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        service_missing(f"{name} not found: apt-get install -y systemd")
    return found


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    text = UNIT.read_text(encoding="utf-8")
    assert EXEC_START in text
    # verify insists that ExecStart's binary exists; the venv is not installed here.
    true = shutil.which("true")
    assert true is not None
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(EXEC_START, f"ExecStart={true} run"), encoding="utf-8")

    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )

    ours = [line for line in (done.stdout + done.stderr).splitlines() if UNIT.name in line]
    assert done.returncode == 0, done.stderr
    assert ours == [], "\n".join(ours)


def test_every_directive_is_commented() -> None:
    previous = ""
    uncommented: list[str] = []
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith(("#", "[")) and not previous.startswith("#"):
            uncommented.append(line)
        previous = line
    assert uncommented == []


def test_unit_is_a_hardened_notify_service() -> None:
    found = directives(UNIT.read_text(encoding="utf-8"))
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "Restart": ["on-failure"],
        "User": ["evidence-agent"],
        "ProtectSystem": ["strict"],
        "NoNewPrivileges": ["yes"],
        "PrivateTmp": ["yes"],
        "ProtectHome": ["yes"],
        "CapabilityBoundingSet": ["CAP_SYS_ADMIN"],
        "AmbientCapabilities": ["CAP_SYS_ADMIN"],
        "DevicePolicy": ["closed"],
        "DeviceAllow": ["block-sd r"],
        "StateDirectory": ["evidence-agent"],
        "RestrictAddressFamilies": ["AF_UNIX AF_NETLINK AF_INET AF_INET6"],
    }
    for key, value in expected.items():
        assert found.get(key) == value, key
    assert "WatchdogSec" in found
    assert "LoadCredential" in found
    assert found["ReadWritePaths"] == ["/var/lib/evidence-agent /run/evidence-agent"]


def test_unit_parses_as_ini() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    assert parser.sections() == ["Unit", "Service", "Install"]


def test_sysusers_creates_the_service_user_and_a_group_for_every_role(tmp_path: Path) -> None:
    sysusers = tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        [
            sysusers,
            "--dry-run",
            f"--root={tmp_path}",
            str(SYSTEMD / "sysusers.d-evidence-agent.conf"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Creating user 'evidence-agent'" in done.stdout + done.stderr
    assert "Creating group 'evidence-agent-users'" in done.stdout + done.stderr
    for group in DEFAULT_GROUPS:  # usermod -aG evidence-clerk NAME needs the group to exist
        assert f"Creating group '{group}'" in done.stdout + done.stderr


def test_the_socket_unit_verifies_and_is_for_the_group_only() -> None:
    analyze = tool("systemd-analyze")
    socket_unit = SYSTEMD / "evidence-agent.socket"
    done = subprocess.run(
        [analyze, "verify", str(socket_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ours = [line for line in (done.stdout + done.stderr).splitlines() if socket_unit.name in line]
    assert ours == [], "\n".join(ours)
    found = directives(socket_unit.read_text(encoding="utf-8"))
    assert found["ListenStream"] == ["/run/evidence-agent.sock"]  # paths.api_socket's default
    assert found["SocketGroup"] == ["evidence-agent-users"] and found["SocketMode"] == ["0660"]


@pytest.mark.parametrize(
    "needle", ['ENV{UDISKS_IGNORE}="1"', 'ENV{ID_BUS}!="usb"', "u:evidence-agent:r"]
)
def test_udev_rule_keeps_automounters_away_and_grants_read(needle: str) -> None:
    assert needle in (SYSTEMD / "99-evidence-agent.rules").read_text(encoding="utf-8")
