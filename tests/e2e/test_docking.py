"""The recorder registry as a supervisor uses it: `evidence-agent recorders ...` and `status`."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from evidence_agent.services.demo_recorder import make_demo_recorder
from tests.e2e.test_docking_crash import agent_command, query
from tests.integration.test_docking_daemon import anonymous_copy
from tests.support import service_missing

START = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)
USER = pwd.getpwuid(os.getuid()).pw_name


def agent_env(data: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data),
        "USER": "sergeant",
        "EVIDENCE_AGENT__DOCK__METRICS_PORT": "0",
    }
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    return env


def agent(
    data: Path, *args: str, roles: tuple[str, ...] = ("supervisor",)
) -> subprocess.CompletedProcess[str]:
    """`evidence-agent` as the test's OS user holding `roles` (the registry and naming a dock's
    recorder are a supervisor's acts; $USER, set to someone else, counts for nothing)."""
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    roles_file = data / "roles.toml"
    roles_file.write_text(f"[roles.users]\n{USER} = {json.dumps(list(roles))}\n")
    roles_file.chmod(0o644)
    return subprocess.run(
        [*agent_command(), *args], env=agent_env(data), capture_output=True, text=True, timeout=120
    )


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

    # Saying who holds a recorder is a supervisor's act: an auditor is refused, logged by name.
    refused = agent(
        data, "recorders", "assign", "A123456", "100232", "--reason", "x", roles=("auditor",)
    )
    assert refused.returncode == 5 and "recorder_register" in refused.stderr
    log = agent(data, "access-log", "--type", "access.refused", "--json", roles=("auditor",))
    last = json.loads(log.stdout)[-1]
    assert last["actor"] == f"user:{USER}" and last["subject"] == {
        "kind": "recorder",
        "id": "A123456",
    }

    listing = agent(data, "recorders", "list")
    assert listing.returncode == 0 and "A123456" in listing.stdout and "BWC0001" in listing.stdout

    status = json.loads(agent(data, "status", "--json").stdout)
    for key in ("refused_devices", "clock_skew", "undocked_recorders", "docks_running"):
        assert key in status


def test_a_dock_no_recorder_is_named_for_is_shown_and_identified_by_an_operator(
    tmp_path: Path,
) -> None:
    """The daemon keeps a volume it cannot identify as a dock in `status`; a supervisor names
    its recorder with a reason, and it is ingested as that recorder's, in that dock."""
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    data = tmp_path / "data"
    demo = make_demo_recorder(tmp_path / "demo", start=START, clips=1)
    volume = data / "dock" / "unlabelled"
    volume.parent.mkdir(parents=True)
    anonymous_copy(demo, volume)
    db = data / "catalog.sqlite3"

    daemon = subprocess.Popen(
        [*agent_command(), "run"],
        env={**agent_env(data), "EVIDENCE_AGENT__DOCK__SOURCES": '["folder"]'},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not query(db, "SELECT id FROM dock_sessions WHERE state = 'unidentified'"):
            assert time.monotonic() < deadline and daemon.poll() is None, "no unidentified dock"
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, log = daemon.communicate(timeout=60)
    ((dock_id,),) = query(db, "SELECT id FROM dock_sessions WHERE state = 'unidentified'")
    assert f"dock identify {dock_id}" in log

    status = json.loads(agent(data, "status", "--json").stdout)
    (waiting,) = status["unidentified_docks"]
    assert waiting["dock_session"] == dock_id and waiting["files"] == len(demo.media)
    assert waiting["deadline"] == "breached"
    assert dock_id in agent(data, "status").stdout

    no_role = agent(
        data, "dock", "identify", dock_id, "--recorder", "B765432", "--reason", "x",
        roles=("auditor",),
    )  # fmt: skip
    assert no_role.returncode == 5 and "recorder_name" in no_role.stderr
    unreasoned = agent(data, "dock", "identify", dock_id, "--recorder", "B765432")
    assert unreasoned.returncode == 2 and "--reason" in unreasoned.stderr
    identified = agent(
        data, "dock", "identify", dock_id, "--recorder", "B765432",
        "--reason", "label fell off; serial read from the case", "--json",
    )  # fmt: skip
    assert identified.returncode in (0, 1), identified.stderr  # 1: the demo's flagged clips
    report = json.loads(identified.stdout)
    assert (report["dock_session"], report["state"], report["recorder"]) == (
        dock_id,
        "finished",
        "B765432",
    )
    assert [c["outcome"] for c in report["clips"]] == ["new"] * len(demo.media)
    assert {c["state"] for c in report["clips"]} == {"stored"}
    (entry,) = query(db, "SELECT entry FROM custody_entries WHERE event_type = 'dock.identified'")
    event = json.loads(bytes(entry[0]))  # type: ignore[arg-type]
    assert event["actor"].startswith("user:")
    assert event["reason"] == "label fell off; serial read from the case"
    assert event["data"]["recorder"] == "B765432"
    assert json.loads(agent(data, "status", "--json").stdout)["unidentified_docks"] == []

    again = agent(data, "dock", "identify", dock_id, "--recorder", "B765432", "--reason", "x")
    assert again.returncode == 2 and "not waiting for identification" in again.stderr
    assert "Traceback" not in again.stderr
    verify = agent(data, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
