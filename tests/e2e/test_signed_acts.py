"""Every act of a person ends with a signed checkpoint that covers it: an auditor holding the
newest checkpoint holds every act, not only those up to the last dock."""

from __future__ import annotations

import os
import pwd
import sqlite3
import subprocess
import sys
from pathlib import Path

USER = pwd.getpwuid(os.getuid()).pw_name
CLI = [sys.executable, "-m", "evidence_agent"]


def agent(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    data.mkdir(mode=0o700, exist_ok=True)
    roles = data / "roles.toml"
    roles.write_text(f'[roles.users]\n{USER} = ["clerk"]\n')
    roles.chmod(0o644)
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data)}
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def entries_and_signed(data: Path) -> tuple[int, int]:
    with sqlite3.connect(data / "catalog.sqlite3") as db:
        entries = db.execute("SELECT count(*) FROM custody_entries").fetchone()[0]
        signed = db.execute("SELECT max(size) FROM custody_checkpoints").fetchone()[0]
    return int(entries), int(signed or 0)


def test_each_act_is_covered_by_a_checkpoint_when_it_ends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    acts = [
        ["case", "create", "C-1", "--type", "seizure", "--reason", "opened"],  # a change
        ["clips", "search", "--officer", "100231"],  # a view, logged
        ["case", "show", "C-404"],  # a refusal (no such case), logged
        ["retention", "delete", "1", "--reason", "x"],  # refused for want of a role, logged
        ["access-log"],  # refused for want of a role, logged
    ]
    for args in acts:
        agent(data, *args)
        entries, signed = entries_and_signed(data)
        assert signed == entries, (args, entries, signed)
