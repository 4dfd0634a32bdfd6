"""Verify an exported audit bundle with nothing but its files and the auditor's own anchors."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from hmac import compare_digest
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence_agent.custody import bundle as bundle_format
from evidence_agent.custody.audit_report import AuditReport
from evidence_agent.custody.catalog_rows import (
    CatalogSnapshot,
    check_row_shapes,
    step4_catalog_rows_against_log,
)
from evidence_agent.custody.checkpoint import log_origin
from evidence_agent.custody.signed_note import Ed25519Verifier
from evidence_agent.custody.verification import (
    CheckpointInput,
    LogInput,
    finish_report,
    route_trusted_checkpoint,
    verify_log,
)
from evidence_agent.errors import InputError
from evidence_agent.services.audit.trusted_files import read_trusted_checkpoint, read_trusted_key


def verify_bundle(
    path: Path, *, trusted_checkpoint: Path | None = None, trusted_key: Path | None = None
) -> AuditReport:
    """Verify an exported bundle: steps 1, 2 and 5 of each log, step 4 against the catalog rows
    the bundle carries; step 3 cannot run, a bundle carries no evidence."""
    started = time.perf_counter()
    report = AuditReport("bundle", str(path), datetime.now(UTC))
    report.key_from_bundle = trusted_key is None
    trusted_note = read_trusted_checkpoint(trusted_checkpoint)
    pinned = read_trusted_key(trusted_key)
    b = bundle_format.open_bundle(path)
    routed = route_trusted_checkpoint(report, trusted_note, b.station_ids)
    if pinned is not None and pinned.name not in {log_origin(s) for s in b.station_ids}:
        report.add(
            1,
            "trusted key",
            f"is for log {pinned.name!r}, which is not in this bundle",
            station=None,
        )
    for sid in b.station_ids:
        key = _bundle_key(report, b, sid, pinned)
        t0 = time.perf_counter()
        catalog = CatalogSnapshot(
            clips=b.catalog_rows(sid, "clips"),
            case_clips=b.catalog_rows(sid, "case_clips"),
            cases=b.catalog_rows(sid, "cases"),  # None in bundles exported before they had it
        )
        check_row_shapes(catalog, sid)
        report.steps[4].seconds += time.perf_counter() - t0
        has_catalog = any(t is not None for t in (catalog.clips, catalog.case_clips, catalog.cases))
        log = LogInput(
            station_id=sid,
            key=key,
            checkpoints=[CheckpointInput(c.path, c.size, c.text) for c in b.checkpoints(sid)],
            entry_chunks=b.entries(sid),
            collect_facts=has_catalog,
            trusted_note=routed.get(sid),
            trusted_label=str(trusted_checkpoint) if trusted_checkpoint else "trusted checkpoint",
            all_signed=True,
        )
        _, facts = verify_log(report, log)
        if has_catalog:
            step4_catalog_rows_against_log(report, facts, catalog)
    for problem in b.finish():
        report.add(1, f"file {problem.path}", problem.message, station=None)
    _limit_steps_3_and_4(report, b)
    finish_report(report, trusted_note, started)
    return report


def _limit_steps_3_and_4(report: AuditReport, b: bundle_format.Bundle) -> None:
    report.limit(
        3,
        "not run: a bundle carries no evidence objects; run `evidence-agent verify` where the "
        "object store is reachable",
        skipped=True,
    )
    tables = [
        t
        for t in bundle_format.CATALOG_TABLES
        if any((b.root / bundle_format.catalog_path(s, t)).exists() for s in b.station_ids)
    ]
    if tables:
        report.limit(
            4,
            f"against the catalog rows the bundle carries ({', '.join(tables)}), as exported "
            "by the station; on the station itself it reads the live catalog",
        )
    else:
        report.limit(4, "not run: the bundle carries no catalog rows", skipped=True)


def _bundle_key(
    report: AuditReport,
    b: bundle_format.Bundle,
    sid: str,
    pinned: Ed25519Verifier | None,
) -> Ed25519Verifier | None:
    """The key a station's log is checked with (step 1): the bundle's station.vkey, which must
    be for this log and the same key as station.pub.pem; the pinned key instead, if one is
    given for this log, and the bundle's must be it."""
    origin = log_origin(sid)
    vkey_rel = bundle_format.verifier_key_path(sid)
    text = b.read_text(vkey_rel)
    key: Ed25519Verifier | None = None
    if text is not None:
        try:
            key = Ed25519Verifier.from_key_string(text.strip())
        except InputError as e:
            report.add(1, f"file {vkey_rel}", f"not a verifier key: {e.message}", station=sid)
    if key is not None and key.name != origin:
        report.add(1, f"file {vkey_rel}", f"is a key for {key.name!r}, not {origin!r}", station=sid)
    pem_rel = bundle_format.public_pem_path(sid)
    pem = b.read_bytes(pem_rel)
    if pem is not None and key is not None:
        _check_pem(report, pem_rel, pem, sid, key)
    if pinned is not None:
        if pinned.name != origin:
            return key
        if key is None or key.key_string() != pinned.key_string():
            report.add(
                1,
                f"file {vkey_rel}",
                f"is not the trusted key {pinned.key_string()}: the public key was swapped",
                station=sid,
            )
        return pinned
    return key


def _check_pem(
    report: AuditReport, pem_rel: str, pem: bytes, sid: str, key: Ed25519Verifier
) -> None:
    """station.pub.pem, which an OpenSSL check uses, must be the same key as station.vkey."""
    try:
        public = serialization.load_pem_public_key(pem)
    except ValueError:
        report.add(1, f"file {pem_rel}", "is not a PEM public key", station=sid)
        return
    raw = public.public_bytes_raw() if isinstance(public, Ed25519PublicKey) else b""
    if not compare_digest(raw, key.public_key):
        report.add(
            1,
            f"file {pem_rel}",
            f"is not the same key as {bundle_format.VERIFIER_KEY_FILE}: an OpenSSL "
            "check would use another key (swapped)",
            station=sid,
        )
