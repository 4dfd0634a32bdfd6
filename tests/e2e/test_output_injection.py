"""What people typed or recorders wrote cannot forge a line or drive the terminal: control
characters are refused where they make no sense (reasons, case fields) and escaped on output
(file names from a recorder, in tables and logs); --json keeps the exact value."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import service_missing

USER = pwd.getpwuid(os.getuid()).pw_name
CLI = [sys.executable, "-m", "evidence_agent"]
FORGED = "A123456_100231_20261120100000_0009\n2026-12-05 12:00  user:boss  retrieval.done.MP4"


def agent(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    data.mkdir(mode=0o700, exist_ok=True)
    roles = data / "roles.toml"
    roles.write_text(f'[roles.users]\n{USER} = ["clerk", "supervisor"]\n')
    roles.chmod(0o644)
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data)}
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A station that ingested a volume holding a file whose name carries a forged log line."""
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    root = tmp_path_factory.mktemp("inject")
    volume = root / "vol"
    assert agent(root / "unused", "demo-recorder", str(volume)).returncode == 0
    media = volume / "DCIM" / "100MEDIA"
    shutil.copy(next(media.glob("*_0001.MP4")), media / FORGED)
    (media / FORGED).write_bytes((media / FORGED).read_bytes() + b"\0")  # content of its own
    proc = agent(root / "data", "-v", "ingest", str(volume))
    assert proc.returncode in (0, 1), proc.stderr
    assert "\n2026-12-05 12:00  user:boss" not in proc.stdout + proc.stderr
    assert "\\n2026-12-05 12:00  user:boss" in proc.stdout
    return root / "data"


def test_a_file_name_with_a_newline_stays_on_its_row(station: Path) -> None:
    listed = agent(station, "clips", "list")
    assert listed.returncode == 0, listed.stderr
    clips = json.loads(agent(station, "clips", "list", "--json").stdout)
    assert FORGED.replace("DCIM", "") in "".join(c["source_path"] for c in clips)  # exact in JSON
    assert len(listed.stdout.splitlines()) == len(clips) + 1  # a header and one row a clip
    assert "\\n2026-12-05 12:00  user:boss  retrieval.done.MP4" in listed.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["case", "create", "C-1\n2026-12-05 forged", "--type", "seizure"],
        ["case", "create", "C-2", "--type", "seizure", "--title", "\x1b[2Khidden"],
        ["case", "create", "C-3", "--type", "seizure", "--reason", "why\nforged row"],
        ["clips", "search", "--case", "C\r-1"],
    ],
)
def test_control_characters_in_what_people_type_are_refused(station: Path, args: list[str]) -> None:
    proc = agent(station, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "control characters" in proc.stderr
    assert "\x1b" not in proc.stderr and "\nforged" not in proc.stderr
