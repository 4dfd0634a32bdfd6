"""The audit report: each verification step's result, every failing item, and what each log holds."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evidence_agent.custody.events import format_time
from evidence_agent.errors import ExitCode, IntegrityError, StorageError

# The numbered steps of docs/audit.md's "What `verify` checks".
STEP_TITLES = {
    1: "entries, tree and checkpoint signatures",
    2: "consistency between checkpoints",
    3: "stored objects against ingest events",
    4: "catalog rows against the log",
    5: "against the auditor's trusted checkpoint",
}
MAX_FINDINGS = 10_000  # a rewritten log fails every later checkpoint; keep the report readable


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


@dataclass(frozen=True)
class Finding:
    """One failing item: which step found it, what it is, and what is wrong with it."""

    step: int
    item: str
    message: str
    station: str | None = None
    kind: str = "integrity"  # "integrity" (exit 3) or "error" (could not be checked, exit 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "station": self.station,
            "item": self.item,
            "message": self.message,
            "kind": self.kind,
        }


@dataclass
class StepResult:
    number: int
    title: str
    status: str = "passed"  # passed, failed, limited (ran on part of what it covers), skipped
    detail: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class LogSummary:
    """What the audit established about one station's log; the latest checkpoint is the one to
    keep as the trusted checkpoint of the next audit."""

    station: str
    origin: str
    key: str | None = None
    entries: int = 0
    checkpoints: int = 0
    latest_size: int | None = None
    latest_root: bytes | None = None
    latest_note: str | None = None
    unsigned_entries: int = 0
    parsed_entries: int = 0
    canonical_checked: int = 0
    tree_root: bytes | None = None  # the root of all the entries, signed or not
    trusted_size: int | None = None
    consistency_proof: list[bytes] | None = None

    def to_json(self) -> dict[str, Any]:
        latest = None
        if self.latest_size is not None and self.latest_root is not None:
            latest = {
                "size": self.latest_size,
                "root_hash": b64(self.latest_root),
                "note": self.latest_note,
            }
        trusted = None
        if self.trusted_size is not None:
            trusted = {
                "size": self.trusted_size,
                "consistency_proof": (
                    [b64(h) for h in self.consistency_proof]
                    if self.consistency_proof is not None
                    else None
                ),
            }
        return {
            "station": self.station,
            "origin": self.origin,
            "verifier_key": self.key,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "latest_checkpoint": latest,
            "unsigned_entries": self.unsigned_entries,
            "entries_parsed": self.parsed_entries,
            "entries_checked_canonical": self.canonical_checked,
            "trusted_checkpoint": trusted,
        }


@dataclass
class AuditReport:
    source: str  # "station" or "bundle"
    location: str
    started_at: datetime
    steps: dict[int, StepResult] = field(
        default_factory=lambda: {n: StepResult(n, t) for n, t in STEP_TITLES.items()}
    )
    logs: list[LogSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    findings_dropped: int = 0
    seconds: float = 0.0
    # A bundle checked with the key it carries itself (no --trusted-key): it proves the bundle
    # is whole, not that the station signed it; a bundle re-signed with another key passes.
    key_from_bundle: bool = False

    def add(
        self, step: int, item: str, message: str, *, station: str | None, kind: str = "integrity"
    ) -> None:
        self.steps[step].status = "failed"
        if len(self.findings) >= MAX_FINDINGS:
            self.findings_dropped += 1
            return
        self.findings.append(Finding(step, item, message, station, kind))

    def limit(self, step: int, detail: str, *, skipped: bool = False) -> None:
        result = self.steps[step]
        if result.status != "failed":
            result.status = "skipped" if skipped else "limited"
        result.detail = detail

    @property
    def intact(self) -> bool:
        return not self.findings and not self.findings_dropped

    @property
    def exit_code(self) -> ExitCode:
        if any(f.kind == "integrity" for f in self.findings) or self.findings_dropped:
            return ExitCode.INTEGRITY
        return ExitCode.ERROR if self.findings else ExitCode.OK

    def raise_for_failures(self) -> None:
        """Raise IntegrityError (or StorageError) naming the first failures, if there are any."""
        if self.intact:
            return
        named = "; ".join(f"{f.item}: {f.message}" for f in self.findings[:3])
        more = len(self.findings) + self.findings_dropped - 3
        message = f"custody audit failed: {named}" + (f" (and {more} more)" if more > 0 else "")
        if self.exit_code == ExitCode.INTEGRITY:
            raise IntegrityError(message)
        raise StorageError(message)

    def to_json(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "key_from_bundle": self.key_from_bundle,
            "exit_code": int(self.exit_code),
            "source": self.source,
            "location": self.location,
            "started_at": format_time(self.started_at),
            "seconds": round(self.seconds, 3),
            "logs": [log.to_json() for log in self.logs],
            "steps": [s.to_json() for s in self.steps.values()],
            "findings": [f.to_json() for f in self.findings],
            "findings_not_listed": self.findings_dropped,
            "notes": self.notes,
        }
