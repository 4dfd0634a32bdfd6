"""The three systems' clocks from the command line: legal review (with the incomplete-case
override), a notice past due, the annual statistics, and `status` showing what is due."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evidence_agent.domain.working_days import WorkingDayCalendar

USER = pwd.getpwuid(os.getuid()).pw_name
CLI = [sys.executable, "-m", "evidence_agent"]


def agent(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `evidence-agent` as the test user: clerk, reviewer and auditor by the roles file."""
    data_dir.mkdir(mode=0o700, exist_ok=True)
    roles = data_dir / "roles.toml"
    roles.write_text(f'[roles.users]\n{USER} = ["clerk", "reviewer", "auditor"]\n')
    roles.chmod(0o644)
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data_dir),
        "EVIDENCE_AGENT__STATION__TIMEZONE": "Asia/Shanghai",
    }
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    year = datetime.now(UTC).year
    if not WorkingDayCalendar().knows(year):
        # Past the library's last year the station needs that year's arrangement configured;
        # New Year's Day stands in for it here, which this test's clocks do not cross.
        env["EVIDENCE_AGENT__CALENDAR__HOLIDAYS"] = f'["{year}-01-01"]'

    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def ok(data: Path, *args: str) -> Any:
    result = agent(data, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_reviews_notices_and_statistics_show_in_status(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok(data, "case", "create", "L-1", "--type", "licensing")
    sent = ok(data, "legal-review", "request", "L-1", "--reason", "a major licence")
    assert sent["state"] == "due" and sent["working_days"] == 7

    start = datetime.now(UTC) - timedelta(days=3)
    window = ["--start", start.isoformat(), "--end", (start + timedelta(hours=1)).isoformat()]
    ok(data, "case", "create", "S-1", "--type", "seizure", "--officer", "100231", *window)
    refused = agent(data, "legal-review", "request", "S-1", "--reason", "seizure decision")
    assert refused.returncode == 6, refused.stderr
    assert "not sent for legal review" in refused.stderr
    overridden = ok(
        data, "legal-review", "request", "S-1", "--reason", "the recorder was destroyed",
        "--override-incomplete",
    )  # fmt: skip
    assert overridden["incomplete_override"] is True

    text = tmp_path / "decision.txt"
    text.write_text("当事人张三，电话13812345678，决定：责令改正。", encoding="utf-8")
    ok(
        data, "notice", "add", "N-1", "--kind", "other", "--title", "责令改正决定",
        "--text-file", str(text), "--decided", "2026-09-18", "--person", "张三",
    )  # fmt: skip

    status = ok(data, "status")
    clocks = status["clocks"]
    assert {r["case"] for r in clocks["legal_reviews"]} == {"L-1", "S-1"}
    [notice] = clocks["notices"]
    assert notice["number"] == "N-1" and notice["due"] == "2026-10-22" and notice["overdue"]
    last_year = clocks["annual_statistics"]["year"]
    assert clocks["annual_statistics"]["produced"] is False
    # everything here was catalogued this year: last year's report is not owed
    assert clocks["annual_statistics"]["owed"] is False
    assert clocks["annual_statistics"]["overdue"] is False
    plain = agent(data, "status")
    assert "OVERDUE notice N-1" in plain.stdout
    assert f"annual statistics {last_year}: not owed" in plain.stdout

    report = ok(
        data, "statistics", "report", "--year", str(last_year), "--out", str(tmp_path / "r")
    )
    assert set(report["files"]) == {"statistics.html", "statistics.csv", "statistics.json"}
    assert ok(data, "status")["clocks"]["annual_statistics"]["produced"] is True

    given = ok(data, "legal-review", "opinion", "L-1", "--opinion", "agree", "--reason", "lawful")
    assert given["opinion"] == "agree"
    assert [r["case"] for r in ok(data, "legal-review", "list", "--pending")] == ["S-1"]
    published = ok(data, "notice", "publish", "N-1", "--reason", "late, but published")
    assert published["publication"] == "late"
