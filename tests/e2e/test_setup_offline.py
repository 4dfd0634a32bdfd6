"""The README's first command restarts a station without network: setup installs nothing that
is already installed, so a docking workstation on an isolated network comes back after a reboot."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_setup_after_an_install_needs_no_package_index() -> None:
    assert (ROOT / ".venv" / "bin" / "evidence-agent").exists(), "run scripts/setup.sh first"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}
    # The runtime setup of scripts/run-station.sh, then the development one of scripts/test.sh.
    for args in ([], ["--dev"]):
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "setup.sh"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
