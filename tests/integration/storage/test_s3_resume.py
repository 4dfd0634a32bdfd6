"""Interrupted multipart uploads resume from the state file and end verified, stored once."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.adapters.s3.credentials import S3Credentials
from evidence_agent.adapters.s3.errors import StoreUnavailableError
from evidence_agent.adapters.s3.multipart import PartProgress
from tests.integration.storage.conftest import (
    TEST_PART_SIZE,
    StoreFactory,
    new_seaweedfs,
)
from tests.services.seaweedfs import SeaweedFS

pytestmark = pytest.mark.s3

PARTS = 4
SIZE = PARTS * TEST_PART_SIZE - 777


class Interrupted(Exception):
    """Stands for the station stopping (power cut, restart) in the middle of an upload."""


def spool_file(tmp_path: Path) -> tuple[Path, str]:
    data = os.urandom(SIZE)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def assert_stored_once(admin: Any, bucket: str, key: str) -> None:
    listing = admin.list_object_versions(Bucket=bucket, Prefix=key)
    assert [v["Size"] for v in listing.get("Versions", []) if v["Key"] == key] == [SIZE]
    assert listing.get("DeleteMarkers", []) == []
    assert admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_an_interrupted_upload_resumes_from_its_state_file(
    make_store: StoreFactory, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    source, sha = spool_file(tmp_path)
    state_file = tmp_path / "clip.mp4.upload.json"

    def stop_after_two(progress: PartProgress) -> None:
        if progress.number == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        make_store(max_concurrency=1).put(sha, source, SIZE, None, on_part=stop_after_two)

    state = json.loads(state_file.read_text())
    assert sorted(state["parts"]) == ["1", "2"]
    upload_id = state["upload_id"]

    progress: list[PartProgress] = []
    stored = make_store().put(sha, source, SIZE, None, on_part=progress.append)

    assert sorted((p.number, p.reused) for p in progress) == [
        (1, True),
        (2, True),
        (3, False),
        (4, False),
    ]
    assert not state_file.exists()
    assert make_store().verify(sha) == stored
    assert_stored_once(s3_admin, evidence_bucket, stored.key)
    assert upload_id not in str(s3_admin.list_multipart_uploads(Bucket=evidence_bucket))


def test_a_state_file_for_other_content_is_not_reused(
    make_store: StoreFactory, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    """The spool file was replaced after an interruption: nothing of the old upload is kept."""
    source, sha = spool_file(tmp_path)

    def stop_after_one(progress: PartProgress) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        make_store(max_concurrency=1).put(sha, source, SIZE, None, on_part=stop_after_one)
    replacement, new_sha = spool_file(tmp_path)

    progress: list[PartProgress] = []
    make_store().put(new_sha, replacement, SIZE, None, on_part=progress.append)

    assert not any(p.reused for p in progress)
    assert make_store().verify(new_sha).sha256 == new_sha
    assert not make_store().exists(sha)
    assert s3_admin.list_multipart_uploads(Bucket=evidence_bucket).get("Uploads", []) == []


@pytest.mark.slow
def test_server_stopped_mid_upload_and_restarted(
    make_store: StoreFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SeaweedFS dies after two parts; restarted on the same data and ports, the upload resumes."""
    server: SeaweedFS = new_seaweedfs(tmp_path_factory.mktemp("seaweedfs-restart"))
    try:
        server.create_bucket("evidence", object_lock=True)
        admin = server.client()
        credentials = S3Credentials(
            server.identity.access_key, server.identity.secret_key, source="test identity"
        )
        spool = tmp_path_factory.mktemp("spool")
        source, sha = spool_file(spool)

        def stop_server_after_two(progress: PartProgress) -> None:
            if progress.number == 2:
                server.stop()

        store = make_store(
            bucket="evidence",
            endpoint=server.endpoint,
            credentials=credentials,
            max_concurrency=1,
            max_attempts=2,
            resume_attempts=1,
        )
        with pytest.raises(StoreUnavailableError, match="cannot connect to the object store"):
            store.put(sha, source, SIZE, None, on_part=stop_server_after_two)
        assert source.exists()
        assert sorted(json.loads((spool / "clip.mp4.upload.json").read_text())["parts"]) == [
            "1",
            "2",
        ]

        server.start()
        progress: list[PartProgress] = []
        resumed = make_store(bucket="evidence", endpoint=server.endpoint, credentials=credentials)
        stored = resumed.put(sha, source, SIZE, None, on_part=progress.append)

        assert [p.number for p in progress if p.reused] == [1, 2]
        assert sorted(p.number for p in progress if not p.reused) == [3, 4]
        assert resumed.verify(sha) == stored
        assert_stored_once(admin, "evidence", stored.key)
    finally:
        server.stop()
