"""Object Lock on stored clips: COMPLIANCE retention extended, legal holds, deletion once unlocked."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from evidence_agent.adapters.s3.client import REFUSAL_CODES, BucketClient, ServerSaid, version_of
from evidence_agent.adapters.s3.errors import ObjectLockedError
from evidence_agent.errors import InputError, NotFoundError, StorageError

log = logging.getLogger(__name__)

# Object Lock has no "for ever": a clip kept for good (class "permanent") is locked in COMPLIANCE
# mode until this date. Far enough to mean "permanently", near enough for every implementation to
# represent it (some keep times as 64-bit nanoseconds since 1970, which run out in 2262). Like any
# COMPLIANCE date it can never be shortened, not even when the clip later leaves the class.
PERMANENT_RETAIN_UNTIL = datetime(2200, 1, 1, tzinfo=UTC)

_RETENTION_ABSENT = frozenset(
    {"NoSuchObjectLockConfiguration", "NoSuchKey", "NoSuchVersion", "404"}
)
# A version that never had a legal hold answers NoSuchObjectLegalHold (SeaweedFS).
_HOLD_ABSENT = _RETENTION_ABSENT | {"NoSuchObjectLegalHold"}
_CHECK_THE_STORE = (
    "the store does not keep Object Lock as asked: run `evidence-agent storage check` and report it"
)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def extend_current_retention(
    s3: BucketClient, key: str, head: Mapping[str, Any], until: datetime
) -> None:
    """Lock the version `head` describes in COMPLIANCE mode until at least `until`."""
    current = head.get("ObjectLockRetainUntilDate")
    if (
        head.get("ObjectLockMode") == "COMPLIANCE"
        and isinstance(current, datetime)
        and current >= until
    ):
        return
    s3.call(
        "extend the retention of",
        key,
        s3.client.put_object_retention,
        Bucket=s3.bucket,
        Key=key,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
        **version_of(head),
    )


class ObjectLocks:
    """Retention kept in step with the catalog, legal holds, and deletion (review/retention.py).

    Every version under a clip's key counts, not only the current one: a delete marker hides a
    version's bytes without removing them. `now` is the station's clock."""

    def __init__(self, s3: BucketClient, now: Callable[[], datetime]) -> None:
        self._s3 = s3
        self._now = now

    # -- retention -----------------------------------------------------------------------------

    def extend_retention(self, sha256: str, until: datetime | None) -> None:
        """Make the stored clip's COMPLIANCE lock last at least until `until`; never shorten it.

        `until` None (kept for good) locks it until PERMANENT_RETAIN_UNTIL; a time already past
        needs no lock and changes nothing. Every version under the clip's key is extended
        (normally there is one); a version already locked as long is left alone, so the call may
        be repeated. The store's record of each new lock is read back and must match."""
        key = self._s3.key_for(sha256)
        action = "extend the retention of"
        target = self._lock_target(until)
        if target is None:
            return
        versions, _ = self._versions(key, action)
        if not versions:
            raise self._no_object(key, action)
        for version in versions:
            self._extend_version(key, version, target, action)
        log.info("retention of %s extended to %s in %s", sha256, iso(target), self._s3.describe())

    def _extend_version(self, key: str, version: str, target: datetime, action: str) -> None:
        mode, current = self._retention_of_version(key, version)
        if mode == "COMPLIANCE" and current is not None and current >= target:
            return  # already as long: COMPLIANCE retention is never shortened
        # A longer GOVERNANCE date becomes COMPLIANCE at that date: strengthened, not cut.
        wanted = max(target, current) if current is not None else target
        try:
            self._s3.call(
                action,
                key,
                self._s3.client.put_object_retention,
                handle=frozenset({"AccessDenied", "403"}),
                Bucket=self._s3.bucket,
                Key=key,
                VersionId=version,
                Retention={"Mode": "COMPLIANCE", "RetainUntilDate": wanted},
            )
        except ServerSaid as e:
            # Someone may have extended it further meanwhile (a shorter date is refused).
            mode, current = self._retention_of_version(key, version)
            if not (mode == "COMPLIANCE" and current is not None and current >= target):
                raise self._s3.error(e.error, action, key) from e.error
            return
        mode, current = self._retention_of_version(key, version)
        if mode != "COMPLIANCE" or current is None or current < target:
            raise StorageError(
                f"the object store accepted COMPLIANCE retention until {iso(wanted)} for "
                f"{self._s3.where(key)} (version {version}) but reports "
                + (f"{mode} retention until {iso(current)}" if current else "no retention"),
                remedy=_CHECK_THE_STORE,
            )

    def _lock_target(self, until: datetime | None) -> datetime | None:
        """The COMPLIANCE date for a retention ending at `until` (None: kept for good), rounded up
        to the whole second S3 keeps; None when `until` has passed (there is nothing to lock)."""
        if until is None:
            return PERMANENT_RETAIN_UNTIL
        if until.tzinfo is None:
            raise InputError("a retention date must be timezone-aware")
        if until <= self._now():
            return None
        whole = until.astimezone(UTC).replace(microsecond=0)
        return whole if whole == until else whole + timedelta(seconds=1)

    # -- legal hold ----------------------------------------------------------------------------

    def set_legal_hold(self, sha256: str, on: bool) -> None:
        """Put the stored clip under an S3 legal hold (`on`) or lift it, on every version.

        A legal hold has no date; while it is on no version can be deleted, whatever its
        retention. Unlike COMPLIANCE retention it can be lifted, by any identity allowed to set
        it. The store's record of the hold is read back and must match."""
        key = self._s3.key_for(sha256)
        action = "set the legal hold of" if on else "release the legal hold of"
        status = "ON" if on else "OFF"
        versions, _ = self._versions(key, action)
        if not versions:
            raise self._no_object(key, action)
        for version in versions:
            if self._legal_hold_of_version(key, version) == on:
                continue
            self._s3.call(
                action,
                key,
                self._s3.client.put_object_legal_hold,
                Bucket=self._s3.bucket,
                Key=key,
                VersionId=version,
                LegalHold={"Status": status},
            )
            if self._legal_hold_of_version(key, version) != on:
                raise StorageError(
                    f"the object store accepted legal hold {status} for {self._s3.where(key)} "
                    f"(version {version}) but does not report it",
                    remedy=_CHECK_THE_STORE,
                )
        log.info("legal hold %s for %s in %s", status, sha256, self._s3.describe())

    # -- deletion ------------------------------------------------------------------------------

    def delete_object(self, sha256: str) -> None:
        """Remove the clip's object for good once no lock holds it: every version under its key,
        each by its VersionId (a delete without one only puts a delete marker over the bytes),
        then the delete markers (best effort: they hold no bytes).

        1. Every version's retention and legal hold are read first. While any is locked by this
           station's clock (a retention date ahead, or a legal hold) ObjectLockedError names the
           date or the hold, and nothing is deleted.
        2. Each version is deleted. A refusal by the store (its own clock decides) is
           ObjectLockedError naming the lock the store reports, or a StorageError when it
           reports none.
        3. The versions are listed again: any left is a StorageError.
        Nothing under the key is success: a repeated call (after a crash) changes nothing."""
        key = self._s3.key_for(sha256)
        where = self._s3.where(key)
        versions, markers = self._versions(key, "delete")
        now = self._now()
        locked = []
        for version in versions:
            words = _lock_words(*self._locks_of(key, version), now)
            if words:
                locked.append(f"version {version}: {words}" if len(versions) > 1 else words)
        if locked:
            text = "; ".join(locked)
            raise ObjectLockedError(
                f"cannot delete {where}: the object store keeps it under {text}; "
                "nothing was deleted",
                remedy=_unlock_remedy(text),
            )
        for version in versions:
            self._delete_version(key, version, now)
        for marker in markers:
            self._delete_marker(key, marker)
        left, _ = self._versions(key, "check the deletion of")
        if left:
            raise StorageError(
                f"the object store still holds {len(left)} version(s) of {where} after "
                "deleting them",
                remedy="check the bucket's versions of that key",
            )
        log.info(
            "deleted %s from %s (%d version(s), %d delete marker(s))",
            sha256,
            self._s3.describe(),
            len(versions),
            len(markers),
        )

    def _delete_version(self, key: str, version: str, now: datetime) -> None:
        try:
            self._s3.call(
                "delete",
                key,
                self._s3.client.delete_object,
                handle=REFUSAL_CODES | {"403", "400", "405"},
                Bucket=self._s3.bucket,
                Key=key,
                VersionId=version,
            )
        except ServerSaid as e:
            where = f"{self._s3.where(key)} (version {version})"
            until, mode, hold = self._locks_of(key, version)
            words = _lock_words(until, mode, hold, now)
            if words:
                raise ObjectLockedError(
                    f"the object store refused to delete {where} ({e.code}): it keeps it under "
                    f"{words}",
                    remedy=_unlock_remedy(words),
                ) from e.error
            ended = f" (its retention ended {iso(until)})" if until is not None else ""
            raise StorageError(
                f"the object store refused to delete {where} ({e.code}), although no lock holds "
                f"it by this station's clock{ended}",
                remedy="check that the store's clock is right, and that access key "
                f"{self._s3.credentials.redacted_id} may delete object versions (SeaweedFS: "
                "Write on the bucket; AWS: s3:DeleteObjectVersion)",
            ) from e.error

    def _delete_marker(self, key: str, marker: str) -> None:
        """A delete marker holds no bytes: one left behind is untidy, not evidence kept."""
        try:
            self._s3.client.delete_object(Bucket=self._s3.bucket, Key=key, VersionId=marker)
        except (ClientError, BotoCoreError) as e:
            log.warning("could not remove delete marker %s of %s: %s", marker, key, e)

    # -- what the store reports ----------------------------------------------------------------

    def _versions(self, key: str, action: str) -> tuple[list[str], list[str]]:
        """The version ids of the object versions, and of the delete markers, under exactly `key`."""
        self._s3.check_access()
        versions: list[str] = []
        markers: list[str] = []
        paginator = self._s3.client.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=self._s3.bucket, Prefix=key):
                versions += [
                    str(v["VersionId"]) for v in page.get("Versions", []) if v.get("Key") == key
                ]
                markers += [
                    str(m["VersionId"])
                    for m in page.get("DeleteMarkers", [])
                    if m.get("Key") == key
                ]
        except (ClientError, BotoCoreError) as e:
            raise self._s3.error(e, action, key) from e
        return versions, markers

    def _retention_of_version(self, key: str, version: str) -> tuple[str | None, datetime | None]:
        """(mode, retain-until in UTC) of one version; (None, None) when it has no retention."""
        try:
            response = self._s3.call(
                "read the retention of",
                key,
                self._s3.client.get_object_retention,
                handle=_RETENTION_ABSENT,
                Bucket=self._s3.bucket,
                Key=key,
                VersionId=version,
            )
        except ServerSaid:
            return None, None
        retention = response.get("Retention", {})
        until = retention.get("RetainUntilDate")
        mode = retention.get("Mode")
        return (
            str(mode) if mode else None,
            until.astimezone(UTC) if isinstance(until, datetime) else None,
        )

    def _legal_hold_of_version(self, key: str, version: str) -> bool:
        try:
            response = self._s3.call(
                "read the legal hold of",
                key,
                self._s3.client.get_object_legal_hold,
                handle=_HOLD_ABSENT,
                Bucket=self._s3.bucket,
                Key=key,
                VersionId=version,
            )
        except ServerSaid:
            return False
        return bool(response.get("LegalHold", {}).get("Status") == "ON")

    def _locks_of(self, key: str, version: str) -> tuple[datetime | None, str | None, bool]:
        """(retain-until, mode, legal hold) of one version."""
        mode, until = self._retention_of_version(key, version)
        return until, mode, self._legal_hold_of_version(key, version)

    def _no_object(self, key: str, action: str) -> NotFoundError:
        return NotFoundError(
            f"cannot {action} {self._s3.where(key)}: no version of it is stored",
            remedy="run `evidence-agent verify`: a stored clip's object must be in the bucket",
        )


def _lock_words(until: datetime | None, mode: str | None, hold: bool, now: datetime) -> str:
    """What keeps a version from deletion at `now`, in words ("" when nothing does)."""
    parts = []
    if until is not None and until > now:
        parts.append(f"{mode or 'COMPLIANCE'} retention until {iso(until)}")
    if hold:
        parts.append("a legal hold")
    return " and ".join(parts)


def _unlock_remedy(words: str) -> str:
    steps = []
    if "retention until" in words:
        steps.append(
            "a COMPLIANCE retention date cannot be brought forward: delete it after that date"
        )
    if "legal hold" in words:
        steps.append(
            "lift the legal hold first (`evidence-agent retention hold CLIP --release` lifts "
            "the agent's own)"
        )
    return "; ".join(steps)
