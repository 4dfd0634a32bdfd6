"""The evidence-mode self-test against SeaweedFS, and against stores that lack each property."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.errors import StorageError
from evidence_agent.ports import StoredObject
from evidence_agent.services.storage_check import (
    CHECKS,
    CHECKSUM_VALIDATED,
    DELETE_REFUSED,
    OBJECT_LOCK,
    OVERWRITE_REFUSED,
    RETENTION,
    EvidenceBucketProbe,
    EvidenceBucketRefused,
    check_evidence_bucket,
    require_evidence_bucket,
)
from tests.integration.storage.conftest import StoreFactory


@pytest.mark.s3
def test_an_object_lock_bucket_passes_every_check(
    s3_store: S3ObjectStore, s3_admin: Any, evidence_bucket: str
) -> None:
    probe: EvidenceBucketProbe = s3_store
    findings = require_evidence_bucket(probe)

    assert [f.check for f in findings] == list(CHECKS)
    assert all(f.ok for f in findings), findings
    canaries = s3_admin.list_objects_v2(Bucket=evidence_bucket, Prefix="evidence/canary/")
    assert canaries["KeyCount"] >= 1  # the locked canary stays (for a day)


@pytest.mark.s3
def test_a_bucket_without_object_lock_is_refused(
    make_store: StoreFactory, unlocked_bucket: str
) -> None:
    store = make_store(bucket=unlocked_bucket)

    with pytest.raises(EvidenceBucketRefused) as refused:
        require_evidence_bucket(store)

    assert isinstance(refused.value, StorageError)
    message = str(refused.value)
    assert f"s3://{unlocked_bucket}/evidence/" in message
    assert "object-lock: the bucket" in message
    assert "does not have Object Lock enabled" in message
    assert "--object-lock-enabled-for-bucket" in message
    failed = {f.check for f in refused.value.findings if not f.ok}
    assert failed == set(CHECKS)  # the canary checks could not run


@pytest.mark.s3
def test_an_unknown_bucket_is_a_storage_error_not_a_finding(make_store: StoreFactory) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        check_evidence_bucket(make_store(bucket="absent-bucket"))


@dataclass
class LaxStore:
    """A store double lacking chosen evidence properties (SeaweedFS has them all)."""

    deletes: bool = False
    accepts_wrong_checksum: bool = False
    overwrites: bool = False
    retention_mode: str | None = "COMPLIANCE"
    written: dict[str, bytes] = field(default_factory=dict)
    until: dict[str, datetime] = field(default_factory=dict)

    def describe(self) -> str:
        return "s3://lax/evidence/ at test"

    def object_lock_enabled(self) -> bool:
        return True

    def put_bytes(self, key: str, data: bytes, retain_until: datetime | None) -> StoredObject:
        assert retain_until is not None
        self.written[key] = data
        self.until[key] = retain_until
        return StoredObject(key=key, size=len(data), sha256="0" * 64)

    def retention_of(self, key: str) -> tuple[str | None, datetime | None]:
        return self.retention_mode, self.until.get(key)

    def probe_delete(self, key: str) -> bool:
        return self.deletes

    def probe_wrong_checksum(self, key: str, retain_until: datetime | None) -> bool:
        return self.accepts_wrong_checksum

    def probe_overwrite(self, key: str, retain_until: datetime | None) -> bool:
        return self.overwrites


@pytest.mark.parametrize(
    ("store", "check", "words"),
    [
        (LaxStore(deletes=True), DELETE_REFUSED, "locked evidence could be deleted"),
        (LaxStore(accepts_wrong_checksum=True), CHECKSUM_VALIDATED, "do not match the checksum"),
        (LaxStore(overwrites=True), OVERWRITE_REFUSED, "If-None-Match"),
        (LaxStore(retention_mode="GOVERNANCE"), RETENTION, "reports mode GOVERNANCE"),
    ],
)
def test_each_missing_property_is_named(store: LaxStore, check: str, words: str) -> None:
    findings = check_evidence_bucket(store)

    failed = [f for f in findings if not f.ok]
    assert [f.check for f in failed] == [check]
    assert words in failed[0].message
    assert failed[0].remedy
    with pytest.raises(EvidenceBucketRefused, match=f"{check}: "):
        require_evidence_bucket(store)


def test_a_store_with_every_property_passes_and_canaries_go_under_canary() -> None:
    store = LaxStore()
    findings = check_evidence_bucket(store)
    assert [(f.check, f.ok) for f in findings] == [(check, True) for check in CHECKS]
    assert findings[0].check == OBJECT_LOCK
    assert store.written
    assert all(key.startswith("canary/") for key in store.written)
    assert all(until > datetime.now(UTC) for until in store.until.values())
