"""Evidence-mode self-test of an object store: Object Lock, refused deletion, checked checksums, no overwrite.

`check_evidence_bucket` returns one Finding per property (passed or failed) for
`evidence-agent storage check [--json]`; `require_evidence_bucket` raises EvidenceBucketRefused,
naming every failed property, so a station never uploads evidence to a store that would let it
be deleted, replaced or silently corrupted. Failing to reach the store at all is not a finding:
the StorageError of the store propagates.

`check_store` covers both backends (the local directory store is described, not probed: it has
nothing to enforce WORM with); `require_store_at_start` is the daemon's start hook and
`require_checked_store` the gate the upload queue passes before its first upload.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from evidence_agent.adapters.s3.errors import StoreUnavailableError
from evidence_agent.errors import StorageError
from evidence_agent.io.atomic import write_atomically
from evidence_agent.ports import StoredObject
from evidence_agent.services.station import Station

log = logging.getLogger(__name__)

CANARY_DIR = "canary/"
CANARY_RETENTION = timedelta(days=1)  # COMPLIANCE: every canary stays for a day, a few bytes each

OBJECT_LOCK = "object-lock"
RETENTION = "compliance-retention"
DELETE_REFUSED = "delete-refused"
CHECKSUM_VALIDATED = "checksum-validated"
OVERWRITE_REFUSED = "overwrite-refused"
CHECKS = (OBJECT_LOCK, RETENTION, DELETE_REFUSED, CHECKSUM_VALIDATED, OVERWRITE_REFUSED)


@runtime_checkable
class EvidenceBucketProbe(Protocol):
    """What the self-test needs from a store adapter (S3ObjectStore provides it)."""

    def describe(self) -> str: ...

    def object_lock_enabled(self) -> bool: ...

    def put_bytes(self, key: str, data: bytes, retain_until: datetime | None) -> StoredObject: ...

    def retention_of(self, key: str) -> tuple[str | None, datetime | None]: ...

    def probe_delete(self, key: str) -> bool: ...

    def probe_wrong_checksum(self, key: str, retain_until: datetime | None) -> bool: ...

    def probe_overwrite(self, key: str, retain_until: datetime | None) -> bool: ...


@dataclass(frozen=True)
class Finding:
    """One evidence-mode property of the store: `ok`, or what failed and how to fix it."""

    check: str
    ok: bool
    message: str
    remedy: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class EvidenceBucketRefused(StorageError):
    """The store does not protect evidence; the message names every property that failed."""

    def __init__(self, store: str, findings: list[Finding]) -> None:
        failed = [f for f in findings if not f.ok]
        super().__init__(
            f"{store} is not fit for evidence: "
            + "; ".join(f"{f.check}: {f.message}" for f in failed),
            remedy=" / ".join(f.remedy for f in failed if f.remedy) or None,
        )
        self.findings = findings


def check_evidence_bucket(
    store: EvidenceBucketProbe, *, now: datetime | None = None
) -> list[Finding]:
    """Probe the store with canary objects under `<prefix>canary/` and report each property.

    Every check runs, so an operator sees all that is wrong at once; without Object Lock the
    canary checks are reported as failed-not-run (a canary could not be locked)."""
    moment = now or datetime.now(UTC)
    until = moment + CANARY_RETENTION
    # 1. The bucket was created with Object Lock (a bucket cannot be given it afterwards on AWS).
    locked = _object_lock(store)
    if not locked.ok:
        return [locked] + [
            Finding(check, False, "not checked: needs a bucket with Object Lock", None)
            for check in CHECKS[1:]
        ]
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    canary = f"{CANARY_DIR}{stamp}-{secrets.token_hex(6)}"
    # In this order: step 2 writes the canary that steps 3 and 5 work on.
    return [
        locked,
        _compliance_retention(store, canary, stamp, until),
        _delete_refused(store, canary),
        _checksum_validated(store, f"{canary}-checksum", until),
        _overwrite_refused(store, canary, until),
    ]


def _object_lock(store: EvidenceBucketProbe) -> Finding:
    if store.object_lock_enabled():
        return Finding(OBJECT_LOCK, True, "Object Lock is enabled on the bucket")
    return Finding(
        OBJECT_LOCK,
        False,
        f"the bucket behind {store.describe()} does not have Object Lock enabled, so evidence "
        "could be deleted or replaced",
        "create a bucket with Object Lock enabled (aws s3api create-bucket --bucket NAME "
        "--object-lock-enabled-for-bucket; SeaweedFS and Ceph RGW accept the same call) "
        "and set store.bucket to it",
    )


def _compliance_retention(
    store: EvidenceBucketProbe, canary: str, stamp: str, until: datetime
) -> Finding:
    """2. A canary written the way evidence is written carries COMPLIANCE retention."""
    store.put_bytes(canary, f"evidence-agent canary {stamp}\n".encode("ascii"), retain_until=until)
    mode, retained_until = store.retention_of(canary)
    if (
        mode == "COMPLIANCE"
        and retained_until is not None
        and retained_until >= until - timedelta(seconds=1)
    ):
        return Finding(RETENTION, True, "objects are written with COMPLIANCE retention")
    return Finding(
        RETENTION,
        False,
        f"a canary written with COMPLIANCE retention until {until.isoformat()} reports "
        f"mode {mode or 'none'} until {retained_until.isoformat() if retained_until else 'never'}",
        "use a store that implements S3 Object Lock retention (SeaweedFS, Ceph RGW, AWS S3)",
    )


def _delete_refused(store: EvidenceBucketProbe, canary: str) -> Finding:
    """3. Deleting the locked version, even with the governance bypass, is refused."""
    if not store.probe_delete(canary):
        return Finding(
            DELETE_REFUSED, True, "deleting a locked version is refused, even with bypass"
        )
    return Finding(
        DELETE_REFUSED,
        False,
        "the store deleted a canary under COMPLIANCE retention (with "
        "BypassGovernanceRetention): locked evidence could be deleted",
        "use a store that enforces COMPLIANCE retention; check that the station's "
        "identity is not a store superuser that bypasses Object Lock",
    )


def _checksum_validated(store: EvidenceBucketProbe, canary: str, until: datetime) -> Finding:
    """4. A body that does not match its SHA-256 header is rejected (the server checks every byte)."""
    if not store.probe_wrong_checksum(canary, retain_until=until):
        return Finding(CHECKSUM_VALIDATED, True, "a body with a wrong checksum is rejected")
    return Finding(
        CHECKSUM_VALIDATED,
        False,
        "the store accepted an object whose bytes do not match the checksum sent with "
        "them: corruption in transit would go unnoticed",
        "use a store that validates x-amz-checksum-sha256 (or Content-MD5 with "
        "store.checksum_mode = 'when_required' for older Ceph RGW)",
    )


def _overwrite_refused(store: EvidenceBucketProbe, canary: str, until: datetime) -> Finding:
    """5. A conditional write (If-None-Match: *) over an existing key is refused."""
    if not store.probe_overwrite(canary, retain_until=until):
        return Finding(OVERWRITE_REFUSED, True, "an overwrite of an existing object is refused")
    return Finding(
        OVERWRITE_REFUSED,
        False,
        "the store accepted a write with If-None-Match: * over an existing object: "
        "a new version could hide the evidence",
        "use a store that supports conditional writes (If-None-Match: *), such as "
        "SeaweedFS 4.48 or AWS S3",
    )


def failures(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not f.ok]


def require_evidence_bucket(
    store: EvidenceBucketProbe, *, now: datetime | None = None
) -> list[Finding]:
    """Run the self-test and refuse (EvidenceBucketRefused) unless every property holds."""
    findings = check_evidence_bucket(store, now=now)
    if failures(findings):
        raise EvidenceBucketRefused(store.describe(), findings)
    return findings


# --- both backends, the daemon's start hook and the upload gate --------------------------------

CHECK_CACHE_FILE = "storage-check.json"  # in the data directory: the last passed self-test
CHECK_VALID_FOR = timedelta(hours=24)  # a passed self-test is trusted this long by the upload queue

LOCAL_GUARANTEES = (
    "objects are named by their SHA-256 and written once: an existing name is never overwritten",
    "stored files are read-only (mode 0444) and are re-hashed against the ingest hash before a "
    "clip is marked stored",
    "writes are atomic (temporary file, fsync, link, fsync of the directory)",
)
LOCAL_LIMITS = (
    "no write-once enforcement: root, or the account the agent runs as, can delete or replace "
    "stored files",
    "no retention: nothing stops a file being removed before its retention date",
    "one disk on one machine: a disk failure or a lost station loses the evidence unless it is "
    "backed up",
)
LOCAL_ADVICE = (
    "for write-once evidence storage set store.backend = 's3' with a bucket created with "
    "Object Lock (see docs/storage.md)"
)


@dataclass(frozen=True)
class StoreCheck:
    """What `evidence-agent storage check` reports about the configured store."""

    store: str
    backend: str  # "s3" or "local"
    worm: bool  # the store itself refuses deletion and overwrite (S3 Object Lock, verified)
    findings: list[Finding] = field(default_factory=list)
    guarantees: tuple[str, ...] = ()
    limits: tuple[str, ...] = ()
    advice: str | None = None

    @property
    def ok(self) -> bool:
        return not failures(self.findings)

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "backend": self.backend,
            "ok": self.ok,
            "worm": self.worm,
            "findings": [f.to_json() for f in self.findings],
            "guarantees": list(self.guarantees),
            "limits": list(self.limits),
            "advice": self.advice,
        }


class _Describes(Protocol):
    def describe(self) -> str: ...


def check_store(store: _Describes, *, now: datetime | None = None) -> StoreCheck:
    """The self-test of an S3 store; for the local directory store, what it does and does not do."""
    if isinstance(store, EvidenceBucketProbe):
        findings = check_evidence_bucket(store, now=now)
        return StoreCheck(
            store.describe(),
            "s3",
            worm=not failures(findings),
            findings=findings,
            guarantees=tuple(f.message for f in findings if f.ok),
        )
    return StoreCheck(
        store.describe(),
        "local",
        worm=False,
        guarantees=LOCAL_GUARANTEES,
        limits=LOCAL_LIMITS,
        advice=LOCAL_ADVICE,
    )


def require_store_at_start(station: Station) -> StoreCheck | None:
    """The daemon's start hook: run the self-test of the station's store now and refuse a store
    unfit for evidence.

    Raises EvidenceBucketRefused (exit 2) when an S3 bucket lacks Object Lock, checksum
    validation or conditional writes. When the store cannot be reached the station still starts
    (ingest goes on into the spool): the outage is logged, None is returned, and the upload
    queue runs the self-test before its first upload. The local store is logged as what it is."""
    store = station.store
    if not isinstance(store, EvidenceBucketProbe):
        result = check_store(store)
        log.warning(
            "storing evidence in %s: not write-once storage (%s)",
            result.store,
            "; ".join(result.limits[:2]),
        )
        return result
    try:
        result = _run_and_remember(station)
    except StoreUnavailableError as e:
        log.warning(
            "the object store self-test could not run: %s; clips are kept in the spool and the "
            "self-test runs again before the first upload",
            e,
        )
        return None
    log.info("object store self-test passed: %s", result.store)
    return result


def require_checked_store(
    station: Station, *, now: datetime | None = None, valid_for: timedelta = CHECK_VALID_FOR
) -> None:
    """The upload queue's gate: the station's S3 store must have passed the self-test (for this
    station in this process, or within `valid_for` as recorded in its data directory) before
    evidence goes to it.

    Runs the self-test when it has not; raises EvidenceBucketRefused or the store's own
    StorageError (StoreUnavailableError when it cannot be reached)."""
    store = station.store
    if not isinstance(store, EvidenceBucketProbe):
        return
    moment = now or datetime.now(UTC)
    passes = station.self_test
    if passes.passed(store):
        return
    with passes.running:
        if passes.passed(store):
            return
        if _cached_pass(station.settings.data_dir, store.describe(), moment, valid_for):
            passes.remember(store, moment)
            return
        _run_and_remember(station, now=moment)


def _run_and_remember(station: Station, *, now: datetime | None = None) -> StoreCheck:
    store = station.store
    result = check_store(store, now=now)
    if result.backend == "s3" and not result.ok:
        raise EvidenceBucketRefused(result.store, result.findings)
    if result.backend == "s3":
        moment = now or datetime.now(UTC)
        station.self_test.remember(store, moment)
        record_pass(store, station.settings.data_dir, now=moment)
    return result


def record_pass(store: _Describes, data_dir: Path, *, now: datetime | None = None) -> None:
    """Record in the data directory that `store` passed the self-test just now: the upload queue
    of any process of the station trusts it for CHECK_VALID_FOR."""
    _remember_pass(data_dir, store.describe(), now or datetime.now(UTC))


def _cached_pass(data_dir: Path, store: str, now: datetime, valid_for: timedelta) -> bool:
    try:
        raw = json.loads((data_dir / CHECK_CACHE_FILE).read_text(encoding="utf-8"))
        passed = datetime.fromisoformat(raw["passed_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if raw.get("store") != store or passed.tzinfo is None:
        return False
    return now - valid_for <= passed <= now + timedelta(minutes=5)


def _remember_pass(data_dir: Path, store: str, when: datetime) -> None:
    """Best effort: without the record the next process runs the self-test again."""
    text = json.dumps({"store": store, "passed_at": when.isoformat()}) + "\n"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(
            data_dir / CHECK_CACHE_FILE, text.encode("utf-8"), mode=0o600, durable=False
        )
    except OSError as e:
        log.debug("cannot record the self-test result in %s: %s", data_dir, e)
