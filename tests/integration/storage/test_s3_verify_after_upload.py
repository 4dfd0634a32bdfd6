"""Verification right after a multipart upload rests on the composite the adapter just checked;
any other verification of a multipart object reads it back."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.adapters.s3.store import S3ObjectStore
from tests.integration.conftest import TEST_PART_SIZE, StoreFactory

pytestmark = pytest.mark.s3


def count_reads(store: S3ObjectStore) -> list[str]:
    """The keys of every GetObject the adapter sends."""
    reads: list[str] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        reads.append(str(params.get("Key")))

    store.s3.client.meta.events.register("provide-client-params.s3.GetObject", note)
    return reads


def test_a_fresh_multipart_upload_verifies_without_reading_it_back(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    data = os.urandom(3 * TEST_PART_SIZE + 1234)
    sha256 = hashlib.sha256(data).hexdigest()
    source = tmp_path / "clip.mp4"
    source.write_bytes(data)
    uploader = make_store()
    reads = count_reads(uploader)

    stored = uploader.put(sha256, source, len(data), None)
    assert uploader.verify(sha256) == stored
    assert reads == []  # the server's composite equals the one checked during the upload

    # Used once: the next verification by the same adapter reads the object back.
    assert uploader.verify(sha256) == stored
    assert reads == [stored.key]

    # Another adapter (another process, an audit) has no upload to rest on: it reads back.
    auditor = make_store()
    audit_reads = count_reads(auditor)
    assert auditor.verify(sha256) == stored
    assert audit_reads == [stored.key]


def test_a_single_part_upload_is_verified_by_the_servers_sha256(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    sha256 = hashlib.sha256(data).hexdigest()
    source = tmp_path / "photo.jpg"
    source.write_bytes(data)
    store = make_store()
    reads = count_reads(store)

    store.put(sha256, source, len(data), None)
    store.verify(sha256)
    assert reads == []
    store.verify(sha256, read_back=True)
    assert len(reads) == 1
