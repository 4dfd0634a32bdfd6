"""The recorder registry as a supervisor uses it: `evidence-agent recorders ...` and `status`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLI_SCRIPT = Path(sys.executable).parent / "evidence-agent"


def agent(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(CLI_SCRIPT)] if CLI_SCRIPT.exists() else [sys.executable, "-m", "evidence_agent"]
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data), "USER": "sergeant"}
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=120)


def test_enrol_assign_show_unassign_with_reasons_and_refusals(tmp_path: Path) -> None:
    data = tmp_path / "data"
    missing = agent(data, "recorders", "enroll", "A123456", "--usb-serial", "BWC0001")
    assert missing.returncode == 2 and "--reason" in missing.stderr

    enrolled = agent(
        data, "recorders", "enroll", "A123456", "--usb-serial", "BWC0001",
        "--vendor-id", "2a4b", "--model-id", "0c01", "--reason", "issued to unit 3", "--json",
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout)["usb_serial"] == "BWC0001"

    twin = agent(data, "recorders", "enroll", "B765432", "--usb-serial", "bwc0001", "--reason", "x")
    assert twin.returncode == 2
    assert "already enrolled for recorder A123456" in twin.stderr and "remedy" in twin.stderr
    assert "Traceback" not in twin.stderr

    assigned = agent(
        data, "recorders", "assign", "A123456", "100231", "--name", "Zhang Wei",
        "--at", "2026-11-20T08:00+08:00", "--reason", "day shift",
    )  # fmt: skip
    assert assigned.returncode == 0, assigned.stderr
    assert "officer 100231" in assigned.stdout

    unassigned = agent(data, "recorders", "unassign", "A123456", "--reason", "shift over")
    assert unassigned.returncode == 0, unassigned.stderr

    shown = json.loads(agent(data, "recorders", "show", "A123456", "--json").stdout)
    assert [(a["officer"], a["start"], a["reason"]) for a in shown["history"]] == [
        ("100231", "2026-11-20T00:00:00.000000Z", "day shift")
    ]
    assert shown["history"][0]["actor"].startswith("user:")
    assert shown["history"][0]["end"] is not None

    listing = agent(data, "recorders", "list")
    assert listing.returncode == 0 and "A123456" in listing.stdout and "BWC0001" in listing.stdout

    status = json.loads(agent(data, "status", "--json").stdout)
    for key in ("refused_devices", "clock_skew", "undocked_recorders", "docks_running"):
        assert key in status
