"""Probes of a bucket for the evidence-mode self-test: Object Lock, refused delete and overwrite, checksums."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from evidence_agent.adapters.s3.checksums import checksum_headers
from evidence_agent.adapters.s3.client import (
    DIGEST_CODES,
    REFUSAL_CODES,
    BucketClient,
    ServerSaid,
    compliance_lock,
    version_of,
)
from evidence_agent.errors import StorageError

_WRONG_BODY = b"evidence-agent canary: this body does not match its checksum header\n"
_WRONG_CHECKSUM_OF = b"something else entirely\n"
_OVERWRITE_BODY = b"evidence-agent canary: an overwrite that must be refused\n"


class EvidenceProbes:
    """What services/storage_check.py asks of the bucket; keys are full keys of canaries."""

    def __init__(self, s3: BucketClient) -> None:
        self._s3 = s3

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock enabled (it cannot be turned on later for AWS)."""
        self._s3.check_access()
        try:
            response = self._s3.call(
                "read the Object Lock configuration of",
                None,
                self._s3.client.get_object_lock_configuration,
                handle=frozenset({"ObjectLockConfigurationNotFoundError", "404", "NotImplemented"}),
                Bucket=self._s3.bucket,
            )
        except ServerSaid:
            return False
        config = response.get("ObjectLockConfiguration", {})
        return bool(config.get("ObjectLockEnabled") == "Enabled")

    def retention_of(self, key: str) -> tuple[str | None, datetime | None]:
        """(mode, retain-until) of the current version of an object."""
        try:
            response = self._s3.call(
                "read the retention of",
                key,
                self._s3.client.get_object_retention,
                handle=frozenset({"NoSuchObjectLockConfiguration", "404", "NoSuchKey"}),
                Bucket=self._s3.bucket,
                Key=key,
            )
        except ServerSaid:
            return None, None
        retention = response.get("Retention", {})
        return retention.get("Mode"), retention.get("RetainUntilDate")

    def delete(self, key: str) -> bool:
        """Try to delete the current version of an object, bypassing governance retention.

        True when the store deleted it (no WORM), False when it refused."""
        head = self._s3.head(key, "look up")
        if head is None:
            raise StorageError(f"canary {self._s3.where(key)} vanished before the delete probe")
        try:
            self._s3.call(
                "delete",
                key,
                self._s3.client.delete_object,
                handle=REFUSAL_CODES | {"403", "400", "405"},
                Bucket=self._s3.bucket,
                Key=key,
                BypassGovernanceRetention=True,
                **version_of(head),
            )
        except ServerSaid:
            return False
        return True

    def wrong_checksum(self, key: str, until: datetime) -> bool:
        """PUT bytes with the checksum of other bytes. True when the store accepted them."""
        return self._put_accepted(
            "probe checksums with",
            key,
            until,
            _WRONG_BODY,
            checksum_headers(_WRONG_CHECKSUM_OF, flexible=self._s3.flexible),
            refusals=DIGEST_CODES | {"InvalidRequest", "400"},
        )

    def overwrite(self, key: str, until: datetime) -> bool:
        """PUT other bytes with If-None-Match: * over an existing object. True when accepted."""
        return self._put_accepted(
            "probe conditional writes with",
            key,
            until,
            _OVERWRITE_BODY,
            checksum_headers(_OVERWRITE_BODY, flexible=self._s3.flexible),
            refusals=frozenset({"PreconditionFailed", "412"}),
        )

    def _put_accepted(
        self,
        action: str,
        key: str,
        until: datetime,
        body: bytes,
        checksum: dict[str, Any],
        *,
        refusals: frozenset[str],
    ) -> bool:
        """A conditional, locked PUT that should be refused: True when the store took it."""
        try:
            self._s3.call(
                action,
                key,
                self._s3.client.put_object,
                handle=refusals,
                Bucket=self._s3.bucket,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                **compliance_lock(until),
                **checksum,
            )
        except ServerSaid:
            return False
        return True
