"""S3ObjectStore against a real SeaweedFS: upload, verification, WORM and integrity refusals."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from evidence_agent.adapters.s3.checksums import composite_sha256
from evidence_agent.adapters.s3.locks import PERMANENT_RETAIN_UNTIL
from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.errors import ExitCode, IntegrityError, NotFoundError
from evidence_agent.ports import ObjectStore, StoredObject
from tests.integration.storage.conftest import TEST_PART_SIZE, StoreFactory

pytestmark = pytest.mark.s3


def spool_file(tmp_path: Path, size: int, name: str = "clip.mp4") -> tuple[Path, str]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def flip_one_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def versions(s3_admin: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    listing = s3_admin.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


def test_adapter_satisfies_the_port(s3_store: S3ObjectStore) -> None:
    store: ObjectStore = s3_store
    assert "s3://" in store.describe()
    assert s3_store.credentials.secret_access_key not in store.describe()
    assert s3_store.credentials.secret_access_key not in repr(s3_store.credentials)


def test_small_upload_is_locked_checksummed_and_verified(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    source, sha = spool_file(tmp_path, 300_000)
    until = datetime.now(UTC) + timedelta(days=30)

    stored = s3_store.put(sha, source, 300_000, until)

    assert stored == StoredObject(
        key=f"evidence/sha256/{sha[:2]}/{sha[2:4]}/{sha}", size=300_000, sha256=sha
    )
    head = s3_admin.head_object(Bucket=evidence_bucket, Key=stored.key, ChecksumMode="ENABLED")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] >= until - timedelta(seconds=1)
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == sha
    assert s3_store.verify(sha) == stored
    assert s3_store.verify(sha, read_back=True) == stored
    assert s3_store.exists(sha)
    with s3_store.open(sha) as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == sha


def test_no_date_means_kept_for_good_never_a_default_period(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    # The store never picks a period of its own: the caller gives the catalog's date, and a
    # clip kept for good (no date in the catalog) is locked until the far-future date.
    source, sha = spool_file(tmp_path, 1000)
    stored = s3_store.put(sha, source, 1000, None)
    head = s3_admin.head_object(Bucket=evidence_bucket, Key=stored.key)
    assert head["ObjectLockRetainUntilDate"] == PERMANENT_RETAIN_UNTIL


def test_multipart_upload_matches_the_local_composite_and_verifies(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    size = 2 * TEST_PART_SIZE + 12345  # above the 8 MiB threshold: three parts
    source, sha = spool_file(tmp_path, size)
    parts: list[int] = []

    stored = s3_store.put(
        sha, source, size, None, on_part=lambda p: parts.append(p.number) if not p.reused else None
    )

    assert sorted(parts) == [1, 2, 3]
    head = s3_admin.head_object(Bucket=evidence_bucket, Key=stored.key, ChecksumMode="ENABLED")
    data = source.read_bytes()
    chunks = [data[i : i + TEST_PART_SIZE] for i in range(0, size, TEST_PART_SIZE)]
    assert head["ChecksumSHA256"] == composite_sha256([hashlib.sha256(c).digest() for c in chunks])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert s3_store.verify(sha) == stored  # composite: read back and hashed whole
    assert not source.with_name(source.name + ".upload.json").exists()
    assert len(versions(s3_admin, evidence_bucket, stored.key)) == 1
    assert s3_admin.list_multipart_uploads(Bucket=evidence_bucket).get("Uploads", []) == []


def test_putting_equal_content_again_is_idempotent_and_extends_retention(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    source, sha = spool_file(tmp_path, 5000)
    first = s3_store.put(sha, source, 5000, datetime.now(UTC) + timedelta(days=1))
    later = datetime.now(UTC) + timedelta(days=400)

    again = s3_store.put(sha, source, 5000, later)

    assert again == first
    assert len(versions(s3_admin, evidence_bucket, first.key)) == 1
    head = s3_admin.head_object(Bucket=evidence_bucket, Key=first.key)
    assert head["ObjectLockRetainUntilDate"] >= later - timedelta(seconds=1)


def test_a_locked_object_cannot_be_deleted_even_with_bypass(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    source, sha = spool_file(tmp_path, 2048)
    stored = s3_store.put(sha, source, 2048, None)
    version = s3_admin.head_object(Bucket=evidence_bucket, Key=stored.key)["VersionId"]

    with pytest.raises(ClientError) as refused:
        s3_admin.delete_object(
            Bucket=evidence_bucket,
            Key=stored.key,
            VersionId=version,
            BypassGovernanceRetention=True,
        )

    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert s3_store.verify(sha) == stored


def test_a_corrupt_spool_file_is_rejected_by_the_server(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    source, sha = spool_file(tmp_path, 100_000)
    flip_one_byte(source, 4242)  # the spool copy no longer matches the hash taken at ingest

    with pytest.raises(IntegrityError) as failed:
        s3_store.put(sha, source, 100_000, None)

    assert failed.value.exit_code == ExitCode.INTEGRITY
    assert "do not hash to the SHA-256 recorded at ingest" in str(failed.value)
    assert not s3_store.exists(sha)


def test_a_corrupt_spool_file_is_refused_before_completing_a_multipart_upload(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    size = 2 * TEST_PART_SIZE
    source, sha = spool_file(tmp_path, size)
    flip_one_byte(source, size - 10)

    with pytest.raises(IntegrityError) as failed:
        s3_store.put(sha, source, size, None)

    assert failed.value.exit_code == ExitCode.INTEGRITY
    assert "not the SHA-256 recorded at ingest" in str(failed.value)
    assert not s3_store.exists(sha)
    assert s3_admin.list_multipart_uploads(Bucket=evidence_bucket).get("Uploads", []) == []
    assert not source.with_name(source.name + ".upload.json").exists()


def test_a_wrong_checksum_is_rejected(s3_store: S3ObjectStore) -> None:
    assert s3_store.probe_wrong_checksum("canary/wrong", None) is False


def test_overwriting_with_different_content_is_refused(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    source, sha = spool_file(tmp_path, 4096)
    key = s3_store.key_for(sha)
    # Something else got there first under the clip's name (a bug or an attacker).
    impostor = b"not the clip"
    s3_admin.put_object(Bucket=evidence_bucket, Key=key, Body=impostor, ChecksumAlgorithm="SHA256")

    with pytest.raises(IntegrityError) as refused:
        s3_store.put(sha, source, 4096, None)

    assert "different content is already stored" in str(refused.value)
    assert "not overwritten" in str(refused.value)
    assert [v["Size"] for v in versions(s3_admin, evidence_bucket, key)] == [len(impostor)]
    with pytest.raises(IntegrityError):
        s3_store.verify(sha)


def test_the_server_refuses_a_conditional_overwrite(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    s3_store.put_bytes("canary/overwrite", b"first", None)
    assert s3_store.probe_overwrite("canary/overwrite", None) is False
    assert s3_store.get_bytes("canary/overwrite") == b"first"


def test_verify_reads_back_a_multipart_object_that_is_not_the_clip(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    size = 2 * TEST_PART_SIZE
    source, sha = spool_file(tmp_path, size)
    key = s3_store.key_for(sha)
    data = bytearray(source.read_bytes())
    data[7] ^= 0xFF
    upload = s3_admin.create_multipart_upload(
        Bucket=evidence_bucket, Key=key, ChecksumAlgorithm="SHA256"
    )
    parts = []
    for number, start in enumerate(range(0, size, TEST_PART_SIZE), 1):
        body = bytes(data[start : start + TEST_PART_SIZE])
        answer = s3_admin.upload_part(
            Bucket=evidence_bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm="SHA256",
        )
        parts.append(
            {
                "PartNumber": number,
                "ETag": answer["ETag"],
                "ChecksumSHA256": answer["ChecksumSHA256"],
            }
        )
    s3_admin.complete_multipart_upload(
        Bucket=evidence_bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )

    with pytest.raises(IntegrityError) as failed:
        s3_store.verify(sha)

    assert f"not {sha}" in str(failed.value)


def test_verify_of_a_missing_object_is_an_integrity_failure(s3_store: S3ObjectStore) -> None:
    sha = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(IntegrityError, match="no object is stored"):
        s3_store.verify(sha)
    with pytest.raises(NotFoundError):
        s3_store.open(sha)
    assert not s3_store.exists(sha)


def test_iter_keys_lists_the_stored_hashes_only(s3_store: S3ObjectStore, tmp_path: Path) -> None:
    hashes = set()
    for n in range(3):
        source, sha = spool_file(tmp_path, 100 + n, name=f"c{n}.mp4")
        s3_store.put(sha, source, 100 + n, None)
        hashes.add(sha)
    s3_store.put_bytes("checkpoints/station-1/000001.json", b"{}", None)

    assert set(s3_store.iter_keys()) == hashes


def test_put_bytes_is_write_once(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str
) -> None:
    first = s3_store.put_bytes("checkpoints/station-1/000001.json", b'{"size":1}', None)
    assert first.key == "evidence/checkpoints/station-1/000001.json"
    assert s3_store.put_bytes("checkpoints/station-1/000001.json", b'{"size":1}', None) == first

    with pytest.raises(IntegrityError, match="different content"):
        s3_store.put_bytes("checkpoints/station-1/000001.json", b'{"size":2}', None)

    assert s3_store.get_bytes("checkpoints/station-1/000001.json") == b'{"size":1}'
    head = s3_admin.head_object(Bucket=evidence_bucket, Key=first.key)
    assert head["ObjectLockMode"] == "COMPLIANCE"


def test_when_required_mode_uses_content_md5_and_reads_back(
    make_store: StoreFactory, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    """The mode for servers without flexible checksums (older Ceph RGW)."""
    store = make_store(checksum_mode="when_required")
    small, small_sha = spool_file(tmp_path, 70_000, name="small.mp4")
    big, big_sha = spool_file(tmp_path, 2 * TEST_PART_SIZE + 1, name="big.mp4")

    assert store.put(small_sha, small, 70_000, None).sha256 == small_sha
    assert store.put(big_sha, big, 2 * TEST_PART_SIZE + 1, None).sha256 == big_sha
    assert store.verify(small_sha).sha256 == small_sha
    assert store.verify(big_sha).sha256 == big_sha
    assert store.probe_wrong_checksum("canary/md5", None) is False

    changed, changed_sha = spool_file(tmp_path, 70_000, name="changed.mp4")
    flip_one_byte(changed, 5)
    with pytest.raises(IntegrityError, match="not the SHA-256 recorded at ingest"):
        store.put(changed_sha, changed, 70_000, None)
    assert not store.exists(changed_sha)
