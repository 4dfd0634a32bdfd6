"""Evidence-mode self-test of an object store: Object Lock, refused deletion, checked checksums, no overwrite.

`check_evidence_bucket` returns one Finding per property (passed or failed) for
`evidence-agent storage check [--json]`; `require_evidence_bucket` is what the daemon calls at
start: it raises EvidenceBucketRefused, naming every failed property, so a station never
uploads evidence to a store that would let it be deleted, replaced or silently corrupted.
Failing to reach the store at all is not a finding: the StorageError of the store propagates.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from evidence_agent.errors import StorageError
from evidence_agent.ports import StoredObject

CANARY_DIR = "canary/"
CANARY_RETENTION = timedelta(days=1)  # COMPLIANCE: every canary stays for a day, a few bytes each

OBJECT_LOCK = "object-lock"
RETENTION = "compliance-retention"
DELETE_REFUSED = "delete-refused"
CHECKSUM_VALIDATED = "checksum-validated"
OVERWRITE_REFUSED = "overwrite-refused"
CHECKS = (OBJECT_LOCK, RETENTION, DELETE_REFUSED, CHECKSUM_VALIDATED, OVERWRITE_REFUSED)


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
    where = store.describe()
    findings: list[Finding] = []

    # 1. The bucket was created with Object Lock (a bucket cannot be given it afterwards on AWS).
    if not store.object_lock_enabled():
        findings.append(
            Finding(
                OBJECT_LOCK,
                False,
                f"the bucket behind {where} does not have Object Lock enabled, so evidence "
                "could be deleted or replaced",
                "create a bucket with Object Lock enabled (aws s3api create-bucket --bucket NAME "
                "--object-lock-enabled-for-bucket; SeaweedFS and Ceph RGW accept the same call) "
                "and set store.bucket to it",
            )
        )
        findings.extend(
            Finding(check, False, "not checked: needs a bucket with Object Lock", None)
            for check in CHECKS[1:]
        )
        return findings
    findings.append(Finding(OBJECT_LOCK, True, "Object Lock is enabled on the bucket"))

    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    canary = f"{CANARY_DIR}{stamp}-{secrets.token_hex(6)}"

    # 2. A canary written the way evidence is written carries COMPLIANCE retention.
    store.put_bytes(canary, f"evidence-agent canary {stamp}\n".encode("ascii"), retain_until=until)
    mode, retained_until = store.retention_of(canary)
    if (
        mode == "COMPLIANCE"
        and retained_until is not None
        and retained_until >= until - timedelta(seconds=1)
    ):
        findings.append(Finding(RETENTION, True, "objects are written with COMPLIANCE retention"))
    else:
        findings.append(
            Finding(
                RETENTION,
                False,
                f"a canary written with COMPLIANCE retention until {until.isoformat()} reports "
                f"mode {mode or 'none'} until {retained_until.isoformat() if retained_until else 'never'}",
                "use a store that implements S3 Object Lock retention (SeaweedFS, Ceph RGW, AWS S3)",
            )
        )

    # 3. Deleting the locked version, even with the governance bypass, is refused.
    if store.probe_delete(canary):
        findings.append(
            Finding(
                DELETE_REFUSED,
                False,
                "the store deleted a canary under COMPLIANCE retention (with "
                "BypassGovernanceRetention): locked evidence could be deleted",
                "use a store that enforces COMPLIANCE retention; check that the station's "
                "identity is not a store superuser that bypasses Object Lock",
            )
        )
    else:
        findings.append(
            Finding(DELETE_REFUSED, True, "deleting a locked version is refused, even with bypass")
        )

    # 4. A body that does not match its SHA-256 header is rejected (the server checks every byte).
    if store.probe_wrong_checksum(f"{canary}-checksum", retain_until=until):
        findings.append(
            Finding(
                CHECKSUM_VALIDATED,
                False,
                "the store accepted an object whose bytes do not match the checksum sent with "
                "them: corruption in transit would go unnoticed",
                "use a store that validates x-amz-checksum-sha256 (or Content-MD5 with "
                "store.checksum_mode = 'when_required' for older Ceph RGW)",
            )
        )
    else:
        findings.append(
            Finding(CHECKSUM_VALIDATED, True, "a body with a wrong checksum is rejected")
        )

    # 5. A conditional write (If-None-Match: *) over an existing key is refused.
    if store.probe_overwrite(canary, retain_until=until):
        findings.append(
            Finding(
                OVERWRITE_REFUSED,
                False,
                "the store accepted a write with If-None-Match: * over an existing object: "
                "a new version could hide the evidence",
                "use a store that supports conditional writes (If-None-Match: *), such as "
                "SeaweedFS 4.48 or AWS S3",
            )
        )
    else:
        findings.append(
            Finding(OVERWRITE_REFUSED, True, "an overwrite of an existing object is refused")
        )
    return findings


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
