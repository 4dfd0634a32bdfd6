"""`evidence-agent status` shows the case-file clock of each open case whose action has ended."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

USER = pwd.getpwuid(os.getuid()).pw_name
CLI = [sys.executable, "-m", "evidence_agent"]


def agent(
    data_dir: Path, roles_file: Path, *args: str, case_file_days: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `evidence-agent` as the test user, a clerk by the roles file."""
    data_dir.mkdir(mode=0o700, exist_ok=True)
    roles_file.write_text(f'[roles.users]\n{USER} = ["clerk"]\n')
    roles_file.chmod(0o644)
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data_dir),
        "EVIDENCE_AGENT__STATION__TIMEZONE": "Asia/Shanghai",
    }
    if case_file_days is not None:
        env["EVIDENCE_AGENT__REVIEW__CASE_FILE_DAYS"] = str(case_file_days)
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def create_case(data: Path, roles: Path, number: str, end: datetime | None) -> None:
    times = [] if end is None else ["--start", (end - timedelta(hours=1)).isoformat()]
    times += [] if end is None else ["--end", end.isoformat()]
    made = agent(
        data, roles, "case", "create", number, "--type", "seizure", "--unit", "3301", *times
    )
    assert made.returncode == 0, made.stderr


def test_status_json_counts_down_to_each_case_file_and_names_the_overdue(tmp_path: Path) -> None:
    data = tmp_path / "data"
    roles = data / "roles.toml"
    now = datetime.now(UTC)
    create_case(data, roles, "2026-0001", now - timedelta(days=40))  # due 10 days ago
    create_case(data, roles, "2026-0002", now - timedelta(days=10, hours=-1))  # 20 days left
    create_case(data, roles, "2026-0003", now + timedelta(days=1))  # the action is not over
    create_case(data, roles, "2026-0004", None)  # no end: no clock
    create_case(data, roles, "2026-0005", now - timedelta(days=50))
    closed = agent(
        data, roles, "case", "close", "2026-0005", "--reason", "no footage was ever made",
        "--override-incomplete",
    )  # fmt: skip
    assert closed.returncode == 0, closed.stderr

    result = agent(data, roles, "status", "--json")

    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    files = status["case_files"]
    assert (files["days"], files["open"], files["overdue"]) == (30, 2, 1)
    cases = {c["number"]: c for c in files["cases"]}
    assert list(cases) == ["2026-0001", "2026-0002"]  # soonest due first
    overdue, running = cases["2026-0001"], cases["2026-0002"]
    assert overdue["overdue"] is True and overdue["days_overdue"] == 10
    assert overdue["case_file_days_left"] == -11  # rounded down, as `case show` counts
    assert running["overdue"] is False and running["days_overdue"] == 0
    assert running["case_file_days_left"] == 20
    assert running["unit"] == "3301"
    due = datetime.fromisoformat(running["case_file_due"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(running["action_end"].replace("Z", "+00:00"))
    assert due - end == timedelta(days=30)

    # `case show` counts the same days from the same function.
    shown = agent(data, roles, "case", "show", "2026-0002", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["case_file_days_left"] == 20

    # The period is the station configuration's, and the text form says the same.
    text = agent(data, roles, "status", case_file_days=60)
    assert text.returncode == 0, text.stderr
    assert (
        "case files due (60 days after the action ends): 2 open case(s), 0 overdue" in text.stdout
    )
    assert "case 2026-0001  unit 3301: due " in text.stdout and "(19 day(s) left)" in text.stdout


def test_status_does_not_depend_on_the_roles_file(tmp_path: Path) -> None:
    # The case-file period is station configuration: a roles file that is refused (writable by
    # others) takes neither the 24-hour watch nor the case-file clock down with it.
    data = tmp_path / "data"
    roles = data / "roles.toml"
    create_case(data, roles, "2026-0001", datetime.now(UTC) - timedelta(days=40))
    roles.chmod(0o666)  # writable by others: refused
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data),
    }
    env.pop("EVIDENCE_AGENT_CONFIG", None)

    result = subprocess.run(
        [*CLI, "status", "--json"], env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["case_files"]["overdue"] == 1
