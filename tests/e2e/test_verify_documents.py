"""A case's attached documents are known to `verify`: stored by content like clips, re-hashed
against the hash their case.document_added event recorded, never reported as unknown objects."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

USER = pwd.getpwuid(os.getuid()).pw_name
CLI = [sys.executable, "-m", "evidence_agent"]
INTEGRITY = 3


def agent(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    data.mkdir(mode=0o700, exist_ok=True)
    roles = data / "roles.toml"
    roles.write_text(f'[roles.users]\n{USER} = ["clerk"]\n')
    roles.chmod(0o644)
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data)}
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_an_attached_document_verifies_and_its_corruption_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = agent(data, "case", "create", "C-1", "--type", "seizure", "--reason", "opened")
    assert made.returncode == 0, made.stderr
    document = tmp_path / "decision.pdf"
    document.write_bytes(b"%PDF-1.4 penalty decision\n")
    attached = agent(data, "case", "attach", "C-1", str(document), "--reason", "the decision")
    assert attached.returncode == 0, attached.stderr

    intact = agent(data, "verify", "--json")
    assert intact.returncode == 0, intact.stdout
    assert json.loads(intact.stdout)["intact"] is True

    sha = hashlib.sha256(document.read_bytes()).hexdigest()
    (stored,) = (data / "objects").rglob(sha)
    stored.chmod(0o600)
    stored.write_bytes(b"%PDF-1.4 penalty decisioN\n")
    broken = agent(data, "verify", "--json")
    assert broken.returncode == INTEGRITY
    findings = json.loads(broken.stdout)["findings"]
    assert any(f["step"] == 3 and "case C-1 document" in f["message"] for f in findings), findings
