"""The OpenSSL-only recipe of the README, run exactly as written on a checkpoint the agent made."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_audit import grant_auditor
from tests.support import service_missing

DOC = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- openssl-recipe:"
VKEY = "stations/st-openssl/station.vkey"
_SCRIPT = Path(sys.executable).with_name("evidence-agent")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "evidence_agent"]


def documented_recipe() -> str:
    """The shell block that follows the marker in the README, character for character."""
    text = DOC.read_text(encoding="utf-8")
    after = text[text.index(MARKER) :]
    match = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert match is not None, "the README lost its openssl recipe"
    return match.group(1)


@pytest.fixture(scope="module")
def tools() -> None:
    for tool in ("bash", "openssl", "base64", "sed", "cut", "head", "tail", "od"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} is not installed")
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
    if not re.match(r"OpenSSL [3-9]\.", version):
        service_missing(f"the recipe needs OpenSSL 3 (pkeyutl -rawin), found {version.strip()!r}")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("openssl")
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(root / "data")}
    env["EVIDENCE_AGENT__STATION__ID"] = "st-openssl"
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    for command in (["custody", "checkpoint"], ["audit", "export", str(root / "bundle")]):
        proc = subprocess.run([*CLI, *command], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        grant_auditor(root / "data")
    return root / "bundle"


def run_recipe(bundle: Path, checkpoint: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CP": str(checkpoint), "PEM": "stations/st-openssl/station.pub.pem"}
    return subprocess.run(
        ["bash", "-c", documented_recipe()], cwd=bundle, env=env, capture_output=True, text=True
    )


def latest(bundle: Path) -> Path:
    checkpoints = bundle / "stations" / "st-openssl" / "checkpoints"
    return max(checkpoints.iterdir(), key=lambda p: int(p.name))


def test_recipe_verifies_a_real_checkpoint(tools: None, bundle: Path) -> None:
    proc = run_recipe(bundle, latest(bundle))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Signature Verified Successfully" in proc.stdout
    key_id = (bundle / VKEY).read_text().split("+")[1]
    assert "".join(proc.stdout.split("\n")[0].split()) == key_id  # what `od` printed


def test_recipe_leaves_the_bundle_as_exported(tools: None, bundle: Path) -> None:
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    assert run_recipe(bundle, latest(bundle)).returncode == 0
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before
    proc = subprocess.run(
        [*CLI, "verify", "--bundle", str(bundle), "--trusted-key", str(bundle / VKEY)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_recipe_rejects_an_altered_checkpoint(tools: None, bundle: Path, tmp_path: Path) -> None:
    lines = latest(bundle).read_text(encoding="utf-8").split("\n")
    lines[1] = str(int(lines[1]) + 1)  # claim a larger tree
    forged = tmp_path / "forged"
    forged.write_text("\n".join(lines), encoding="utf-8")
    proc = run_recipe(bundle, forged)
    assert proc.returncode != 0
    assert "Signature Verification Failure" in proc.stdout + proc.stderr
