"""`evidence-agent storage check`, and ingest/store with the object store away, as a user runs them."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import new_seaweedfs
from tests.services.ports import free_port
from tests.services.seaweedfs import SeaweedFS
from tests.support import service_missing

# The console script, as installed: what an operator types.
AGENT = str(Path(sys.executable).parent / "evidence-agent")


def agent(
    data_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data_dir), **(env or {})}
    full.pop("EVIDENCE_AGENT_CONFIG", None)
    return subprocess.run(
        [AGENT, *args], env=full, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    weed = new_seaweedfs(tmp_path_factory.mktemp("seaweedfs-e2e"))
    try:
        yield weed
    finally:
        weed.stop()


def s3_env(server: SeaweedFS, bucket: str, endpoint: str | None = None) -> dict[str, str]:
    """Configuration by environment; the credentials in the AWS variables, never in the config."""
    return {
        "EVIDENCE_AGENT__STORE__BACKEND": "s3",
        "EVIDENCE_AGENT__STORE__BUCKET": bucket,
        "EVIDENCE_AGENT__STORE__ENDPOINT": endpoint or server.endpoint,
        "AWS_ACCESS_KEY_ID": server.identity.access_key,
        "AWS_SECRET_ACCESS_KEY": server.identity.secret_key,
    }


def bucket(server: SeaweedFS, *, locked: bool) -> str:
    name = f"e2e-{secrets.token_hex(5)}"
    server.create_bucket(name, object_lock=locked)
    return name


def test_storage_check_describes_the_local_store(tmp_path: Path) -> None:
    proc = agent(tmp_path / "data", "storage", "check", "--json")

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["backend"] == "local" and result["worm"] is False
    assert any("written once" in g for g in result["guarantees"])
    assert any("can delete or replace" in limit for limit in result["limits"])
    human = agent(tmp_path / "data", "storage", "check")
    assert "does NOT guarantee" in human.stdout


@pytest.mark.s3
def test_storage_check_passes_an_object_lock_bucket(server: SeaweedFS, tmp_path: Path) -> None:
    env = s3_env(server, bucket(server, locked=True))

    proc = agent(tmp_path / "data", "storage", "check", "--json", env=env)

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is True and result["worm"] is True
    assert {f["check"] for f in result["findings"] if f["ok"]} == {
        "object-lock",
        "compliance-retention",
        "delete-refused",
        "checksum-validated",
        "overwrite-refused",
    }
    assert server.identity.secret_key not in proc.stdout + proc.stderr


@pytest.mark.s3
def test_storage_check_refuses_a_bucket_without_object_lock(
    server: SeaweedFS, tmp_path: Path
) -> None:
    name = bucket(server, locked=False)

    proc = agent(tmp_path / "data", "storage", "check", env=s3_env(server, name))

    assert proc.returncode == 2
    assert f"s3://{name}/evidence/" in proc.stdout
    assert "FAILED object-lock" in proc.stdout
    assert "--object-lock-enabled-for-bucket" in proc.stdout
    assert "NOT fit for evidence" in proc.stdout


@pytest.mark.s3
def test_storage_check_names_wrong_credentials(server: SeaweedFS, tmp_path: Path) -> None:
    env = {**s3_env(server, bucket(server, locked=True)), "AWS_SECRET_ACCESS_KEY": "wrong-secret"}

    proc = agent(tmp_path / "data", "storage", "check", env=env)

    assert proc.returncode == 2
    assert "rejected the credentials" in proc.stderr
    assert "Traceback" not in proc.stderr and "wrong-secret" not in proc.stderr


@pytest.mark.s3
@pytest.mark.slow
def test_ingest_with_the_store_away_then_store_when_it_is_back(
    server: SeaweedFS, tmp_path: Path
) -> None:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    data = tmp_path / "data"
    volume = tmp_path / "vol"
    made = agent(tmp_path / "unused", "demo-recorder", str(volume), "--clips", "1")
    assert made.returncode == 0, made.stderr
    name = bucket(server, locked=True)
    away = s3_env(server, name, endpoint=f"http://127.0.0.1:{free_port()}")

    ingest = agent(data, "ingest", str(volume), "--json", env=away)

    assert ingest.returncode == 1, ingest.stderr  # a warning: finished, storing still to do
    result = json.loads(ingest.stdout)
    assert result["clips"] and {c["state"] for c in result["clips"]} == {"spooled"}
    assert any("stay in the spool" in w for w in result["warnings"])
    assert "Traceback" not in ingest.stderr

    waiting = agent(data, "store", "--json", env=away)
    assert waiting.returncode == 1
    assert "cannot connect to the object store" in json.loads(waiting.stdout)["unavailable"]

    stored = agent(data, "store", "--json", env=s3_env(server, name))
    assert stored.returncode == 0, stored.stderr
    report = json.loads(stored.stdout)
    assert len(report["stored"]) == len(result["clips"])
    assert report["waiting"] == 0 and report["checkpoints"]["published"]
    listing = agent(data, "clips", "list", "--json", env=s3_env(server, name))
    assert {c["state"] for c in json.loads(listing.stdout)} == {"stored"}
    status = agent(data, "status", env=s3_env(server, name))
    assert "spool:" in status.stdout
