"""Retention on SeaweedFS: locks extended (never shortened), legal hold, and deletion of every
version once the lock has passed (refused, with the lock named, before)."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from evidence_agent.adapters.s3.errors import ObjectLockedError
from evidence_agent.adapters.s3.locks import PERMANENT_RETAIN_UNTIL
from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.errors import ExitCode, NotFoundError, StorageError
from evidence_agent.ports import LegalHolding, LockExtending, ObjectDeleting
from tests.integration.storage.conftest import StoreFactory

pytestmark = pytest.mark.s3

SHORT = timedelta(seconds=4)  # a lock that runs out within the test (SeaweedFS takes seconds)


class Later:
    """A clock some time ahead of the real one (the store's own clock stays real)."""

    def __init__(self, ahead: timedelta) -> None:
        self.ahead = ahead

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead


def stored_clip(
    store: S3ObjectStore, tmp_path: Path, until: datetime | None, size: int = 2048
) -> str:
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / sha
    path.write_bytes(data)
    store.put(sha, path, size, until)
    return sha


def version_ids(s3_admin: Any, bucket: str, key: str) -> list[str]:
    listing = s3_admin.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


def retention(s3_admin: Any, bucket: str, key: str) -> tuple[str, datetime]:
    got = s3_admin.get_object_retention(Bucket=bucket, Key=key)["Retention"]
    return got["Mode"], got["RetainUntilDate"]


def legal_hold(s3_admin: Any, bucket: str, key: str) -> str:
    try:
        return str(s3_admin.get_object_legal_hold(Bucket=bucket, Key=key)["LegalHold"]["Status"])
    except ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchObjectLegalHold"
        return "none"


def wait_past(when: datetime) -> None:
    time.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()) + 1.5)


def test_the_adapter_offers_what_review_drives(s3_store: S3ObjectStore) -> None:
    assert isinstance(s3_store, LockExtending)
    assert isinstance(s3_store, ObjectDeleting)
    assert isinstance(s3_store, LegalHolding)


def test_extending_lengthens_the_lock_and_a_shorter_date_leaves_it(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    sha = stored_clip(s3_store, tmp_path, datetime.now(UTC) + timedelta(days=1))
    key = s3_store.key_for(sha)
    later = datetime.now(UTC) + timedelta(days=1095, microseconds=250)

    s3_store.extend_retention(sha, later)

    mode, until = retention(s3_admin, evidence_bucket, key)
    assert mode == "COMPLIANCE"
    assert later <= until < later + timedelta(seconds=1)  # rounded up to S3's whole second

    s3_store.extend_retention(sha, datetime.now(UTC) + timedelta(days=30))  # shorter: no change
    s3_store.extend_retention(sha, later)  # again: no change
    s3_store.extend_retention(sha, datetime.now(UTC) - timedelta(days=1))  # passed: nothing to do
    assert retention(s3_admin, evidence_bucket, key) == ("COMPLIANCE", until)
    assert len(version_ids(s3_admin, evidence_bucket, key)) == 1


def test_the_server_itself_refuses_to_shorten_a_compliance_lock(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    """Why extend_retention reads the lock first: SeaweedFS answers a shorter date AccessDenied."""
    sha = stored_clip(s3_store, tmp_path, datetime.now(UTC) + timedelta(days=10))
    key = s3_store.key_for(sha)
    with pytest.raises(ClientError) as refused:
        s3_admin.put_object_retention(
            Bucket=evidence_bucket,
            Key=key,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": datetime.now(UTC) + SHORT},
        )
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_kept_for_good_locks_until_the_permanent_date(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    sha = stored_clip(s3_store, tmp_path, datetime.now(UTC) + timedelta(days=183))

    s3_store.extend_retention(sha, None)

    assert retention(s3_admin, evidence_bucket, s3_store.key_for(sha)) == (
        "COMPLIANCE",
        PERMANENT_RETAIN_UNTIL,
    )
    s3_store.extend_retention(sha, datetime.now(UTC) + timedelta(days=1095))  # shorter: kept
    assert retention(s3_admin, evidence_bucket, s3_store.key_for(sha))[1] == PERMANENT_RETAIN_UNTIL


def test_locking_an_object_that_is_not_there_is_an_error(
    s3_store: S3ObjectStore, tmp_path: Path
) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()
    with pytest.raises(NotFoundError, match="no version of it is stored"):
        s3_store.extend_retention(missing, datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(NotFoundError):
        s3_store.set_legal_hold(missing, True)


def test_deletion_is_refused_until_the_lock_passes_then_removes_the_version(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    until = datetime.now(UTC) + SHORT
    sha = stored_clip(s3_store, tmp_path, until)
    key = s3_store.key_for(sha)
    [version] = version_ids(s3_admin, evidence_bucket, key)

    with pytest.raises(ObjectLockedError) as refused:
        s3_store.delete_object(sha)

    error = refused.value
    assert error.exit_code == ExitCode.ERROR
    assert "COMPLIANCE retention until" in error.message
    assert "nothing was deleted" in error.message
    assert error.remedy is not None and "after that date" in error.remedy
    assert version_ids(s3_admin, evidence_bucket, key) == [version]
    assert s3_store.verify(sha).sha256 == sha

    wait_past(until)
    s3_store.delete_object(sha)

    assert version_ids(s3_admin, evidence_bucket, key) == []
    assert not s3_store.exists(sha)
    s3_store.delete_object(sha)  # nothing left: a repeat changes nothing


def test_the_store_refusal_is_an_error_when_this_station_thinks_the_lock_passed(
    make_store: StoreFactory, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    """A station clock ahead of the store's: the store's own check refuses, and says why."""
    sha = stored_clip(make_store(), tmp_path, datetime.now(UTC) + timedelta(hours=1))
    ahead = make_store(clock=Later(timedelta(days=1)))
    key = ahead.key_for(sha)

    with pytest.raises(StorageError) as refused:
        ahead.delete_object(sha)

    assert "refused to delete" in refused.value.message
    assert "AccessDenied" in refused.value.message
    assert "retention ended" in refused.value.message
    assert refused.value.remedy is not None and "clock" in refused.value.remedy
    assert len(version_ids(s3_admin, evidence_bucket, key)) == 1


def test_a_legal_hold_blocks_deletion_after_the_retention_until_it_is_lifted(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    until = datetime.now(UTC) + SHORT
    sha = stored_clip(s3_store, tmp_path, until)
    key = s3_store.key_for(sha)
    assert legal_hold(s3_admin, evidence_bucket, key) == "none"

    s3_store.set_legal_hold(sha, True)
    s3_store.set_legal_hold(sha, True)  # again: no change
    assert legal_hold(s3_admin, evidence_bucket, key) == "ON"

    wait_past(until)
    with pytest.raises(ObjectLockedError, match="a legal hold") as refused:
        s3_store.delete_object(sha)
    assert refused.value.remedy is not None and "--release" in refused.value.remedy
    assert len(version_ids(s3_admin, evidence_bucket, key)) == 1

    s3_store.set_legal_hold(sha, False)
    assert legal_hold(s3_admin, evidence_bucket, key) == "OFF"
    s3_store.delete_object(sha)
    assert version_ids(s3_admin, evidence_bucket, key) == []


def test_deletion_removes_a_version_hidden_by_a_delete_marker(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    """A delete without VersionId only puts a marker over the bytes; deletion must not stop there."""
    until = datetime.now(UTC) + SHORT
    sha = stored_clip(s3_store, tmp_path, until)
    key = s3_store.key_for(sha)
    marker = s3_admin.delete_object(Bucket=evidence_bucket, Key=key)
    assert marker["DeleteMarker"] is True
    assert not s3_store.exists(sha)  # hidden ...
    assert len(version_ids(s3_admin, evidence_bucket, key)) == 1  # ... not gone

    wait_past(until)
    s3_store.delete_object(sha)

    listing = s3_admin.list_object_versions(Bucket=evidence_bucket, Prefix=key)
    assert listing.get("Versions", []) == [] and listing.get("DeleteMarkers", []) == []
