"""Verify the live station: every custody log in its catalog, its catalog rows, its object store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from hmac import compare_digest
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import (
    Case,
    CustodyHead,
    Derivative,
    Disclosure,
    LegalReview,
    Notice,
    StatisticsReport,
)
from evidence_agent.custody.audit_report import AuditReport, LogSummary
from evidence_agent.custody.catalog_rows import CatalogSnapshot, step4_catalog_rows_against_log
from evidence_agent.custody.log_facts import LogFacts
from evidence_agent.custody.merkle import HASH_SIZE, MerkleAccumulator
from evidence_agent.custody.signed_note import Ed25519Verifier
from evidence_agent.custody.verification import (
    LogInput,
    finish_report,
    route_trusted_checkpoint,
    verify_log,
)
from evidence_agent.errors import EvidenceError, InputError, IntegrityError
from evidence_agent.io.hashing import hash_file
from evidence_agent.services.audit import live_catalog
from evidence_agent.services.audit.logged_rows import (
    derivative_problems,
    disclosure_problems,
    legal_review_problems,
    notice_problems,
    statistics_problems,
)
from evidence_agent.services.audit.trusted_files import Anchors

if TYPE_CHECKING:
    from evidence_agent.services.station import Station


@dataclass
class _AuditedLog:
    summary: LogSummary
    facts: LogFacts
    catalog: CatalogSnapshot


def verify_station(
    station: Station,
    *,
    anchors: Anchors | None = None,
) -> AuditReport:
    """Verify the live station: steps 1, 2 and 5 of every log in its catalog (this station's
    first) in one snapshot, then step 4 against the catalog's rows and step 3 against the store.
    `anchors`: the auditor's trusted checkpoint and key, if they gave them."""
    anchors = anchors or Anchors()
    started = time.perf_counter()
    sid = station.settings.station_id
    report = AuditReport("station", f"{sid} ({station.store.describe()})", datetime.now(UTC))
    trusted_note = anchors.checkpoint
    key = _station_key(report, station, anchors.verifier())
    # Listed before the catalog is read: an object put before then has its ingest event
    # committed before then, so none is wrongly reported as unknown to the log.
    store_keys = list(station.store.iter_keys())
    audited = _verify_logs(report, station, key, trusted_note, anchors.label)
    checked = 0
    known: set[str] = set()
    for log in audited:
        step4_catalog_rows_against_log(report, log.facts, log.catalog)
        checked += step3_objects_against_ingest_events(
            report,
            station,
            log.facts,
            store_keys,
            local=log.facts.station_id == sid,
        )
        known.update(log.facts.by_sha256, log.facts.documents)
    for sha in sorted(set(store_keys) - known):
        report.add(
            3,
            f"object {sha}",
            "is in the object store but no clip.ingested or case.document_added event of any "
            "station's log has this hash",
            station=sid,
        )
    decisions = _decision_rows(report, station)
    _describe(report, audited, checked, len(store_keys))
    if report.steps[4].status != "failed":
        report.steps[
            4
        ].detail += f", {decisions} disclosure, notice, review, statistics and derivative row(s)"
    finish_report(report, trusted_note, started)
    return report


def _decision_rows(report: AuditReport, station: Station) -> int:
    """Step 4 for the rows decisions act on (disclosures, notices, legal reviews, statistics
    reports, redacted derivatives), each against its own events, as the commands acting on
    them check them first. Returns how many."""
    sid = station.settings.station_id
    found: list[tuple[str, Callable[[], list[str]]]] = []
    with live_catalog.snapshot(station.engine) as session:
        for disclosure in session.exec(select(Disclosure)).all():
            found.append(
                (f"disclosure {disclosure.id}", partial(disclosure_problems, session, disclosure))
            )
        for notice in session.exec(select(Notice)).all():
            found.append((f"notice {notice.number}", partial(notice_problems, session, notice)))
        for review, case in session.exec(
            select(LegalReview, Case.number).join(Case, col(Case.id) == col(LegalReview.case_id))
        ).all():
            found.append(
                (
                    f"legal review {review.id} of case {case}",
                    partial(legal_review_problems, session, review, case),
                )
            )
        for report_row in session.exec(select(StatisticsReport)).all():
            found.append(
                (
                    f"statistics report {report_row.id}",
                    partial(statistics_problems, session, report_row, sid),
                )
            )
        for derivative in session.exec(select(Derivative)).all():
            found.append(
                (f"derivative {derivative.id}", partial(derivative_problems, session, derivative))
            )
        for item, problems in found:
            try:
                messages = problems()
            except IntegrityError as e:  # an event of its own that does not parse
                messages = [e.message]
            for message in messages:
                report.add(4, item, message, station=sid)
    return len(found)


def _station_key(
    report: AuditReport, station: Station, pinned: Ed25519Verifier | None
) -> Ed25519Verifier:
    """The key this station's log is checked with: its own, or the auditor's pinned key."""
    key = station.custody.signer.verifier
    if pinned is not None and pinned.key_string() != key.key_string():
        report.add(
            1,
            "station key",
            f"the station signs with {key.key_string()}, not the trusted key "
            f"{pinned.key_string()}: the key was swapped",
            station=station.settings.station_id,
        )
        return pinned
    return key


def _verify_logs(
    report: AuditReport,
    station: Station,
    key: Ed25519Verifier,
    trusted_note: str | None,
    trusted_label: str,
) -> list[_AuditedLog]:
    """Steps 1, 2 and 5 of every log in the catalog, and each one's catalog rows, in one snapshot.

    A shared catalog holds every station's log: each one is verified, this station's first,
    the others with the key each log recorded at its first start.
    """
    sid = station.settings.station_id
    audited: list[_AuditedLog] = []
    with live_catalog.snapshot(station.engine) as session:
        others = sorted(live_catalog.station_ids(session) - {sid})
        routed = route_trusted_checkpoint(report, trusted_note, [sid, *others])
        for log_sid in [sid, *others]:
            log_key = key if log_sid == sid else live_catalog.key_from_log(report, session, log_sid)
            log = LogInput(
                station_id=log_sid,
                key=log_key,
                checkpoints=live_catalog.checkpoints(session, log_sid),
                entry_chunks=live_catalog.entry_chunks(report, session, log_sid),
                collect_facts=True,
                trusted_note=routed.get(log_sid),
                trusted_label=trusted_label,
            )
            summary, facts = verify_log(report, log)
            _check_head(report, session, log_sid, summary)
            try:
                catalog = live_catalog.catalog_rows(session, log_sid, unlogged_cases=log_sid == sid)
            except (ValueError, TypeError) as e:  # a value no row written by the agent can hold
                report.add(
                    4, "catalog", f"a clip, link or case row cannot be read: {e}", station=log_sid
                )
                catalog = CatalogSnapshot()
            audited.append(_AuditedLog(summary, facts, catalog))
    return audited


def _check_head(report: AuditReport, session: Session, sid: str, summary: LogSummary) -> None:
    """Step 1: the tree state the station appends to must be the tree of the entries."""
    head = session.get(CustodyHead, sid)
    if head is None:
        if summary.entries:
            report.add(1, "custody head", "is missing", station=sid)
        return
    peaks = [head.frontier[i : i + HASH_SIZE] for i in range(0, len(head.frontier), HASH_SIZE)]
    if head.size != summary.entries:
        report.add(
            1,
            "custody head",
            f"says the log has {head.size} entries, but {summary.entries} are stored: entries "
            "were removed or added behind the log's back",
            station=sid,
        )
        return
    try:
        root = MerkleAccumulator.restore(head.size, peaks).root()
    except InputError as e:
        report.add(1, "custody head", f"is corrupt: {e.message}", station=sid)
        return
    if summary.tree_root is not None and not compare_digest(root, summary.tree_root):
        report.add(
            1,
            "custody head",
            "its tree root differs from the root of the stored entries: entries were changed "
            "after they were appended",
            station=sid,
        )


def step3_objects_against_ingest_events(
    report: AuditReport,
    station: Station,
    facts: LogFacts,
    store_keys: Iterable[str],
    *,
    local: bool = True,
) -> int:
    """Step 3: every clip's bytes against its ingest hash (a stored clip through the store's
    verify, a spooled one in the spool when the spool is this station's), and every case
    document the log recorded. Returns how many objects were re-hashed. (Objects in the store
    that no log knows are named by the caller, once every station's log was read.)"""
    sid = facts.station_id
    t0 = time.perf_counter()
    checked = 0
    in_store = set(store_keys)
    for clip in facts.clips.values():
        item = f"object {clip.sha256}"
        if clip.object_removed_seq is not None and clip.sha256 not in in_store:
            continue  # removed at the end of its retention, as the log records
        try:
            if (
                clip.stored is not None
                or clip.sha256 in in_store
                or station.store.exists(clip.sha256)
            ):
                station.store.verify(clip.sha256)
            elif not local:
                report.limit(
                    3,
                    f"clip {clip.clip_id} of station {sid} waits in that station's spool; it is checked there",
                )
                continue
            else:
                _check_spooled(report, station, sid, clip.clip_id, clip.sha256)
            checked += 1
        except IntegrityError as e:
            report.add(3, item, f"clip {clip.clip_id}: {e.message}", station=sid)
        except (EvidenceError, OSError, ValueError) as e:
            report.add(
                3, item, f"clip {clip.clip_id} could not be read: {e}", station=sid, kind="error"
            )
    for sha, document in sorted(facts.documents.items()):
        try:
            station.store.verify(sha)
            checked += 1
        except IntegrityError as e:
            report.add(3, f"object {sha}", f"{document}: {e.message}", station=sid)
        except (EvidenceError, OSError, ValueError) as e:
            report.add(
                3, f"object {sha}", f"{document} could not be read: {e}", station=sid, kind="error"
            )
    report.steps[3].seconds += time.perf_counter() - t0
    return checked


def _check_spooled(report: AuditReport, station: Station, sid: str, clip_id: str, sha: str) -> None:
    """A clip the log has not seen stored: its copy in the spool, or in the store if it was
    stored since the log was read."""
    path = station.spool.path_of(sha)
    if path.exists():
        actual = hash_file(path)
        if not compare_digest(actual.encode(), sha.encode()):
            report.add(
                3,
                f"object {sha}",
                f"spooled copy of clip {clip_id} hashes to {actual}",
                station=sid,
            )
    elif station.store.exists(sha):
        station.store.verify(sha)  # stored since the log was read
    else:
        report.add(
            3,
            f"object {sha}",
            f"clip {clip_id} is neither in the spool nor in the store",
            station=sid,
        )


def _describe(report: AuditReport, audited: list[_AuditedLog], checked: int, in_store: int) -> None:
    """The details of steps 3-4 and the notes on other stations' logs and unsigned entries."""
    if report.steps[3].status != "failed":
        report.steps[3].detail = f"{checked} object(s) re-hashed, {in_store} in the store"
    if report.steps[4].status != "failed":
        clips = sum(len(log.catalog.clips or ()) for log in audited)
        links = sum(len(log.catalog.case_clips or ()) for log in audited)
        cases = sum(len(log.catalog.cases or ()) for log in audited)
        report.steps[4].detail = f"{clips} clip row(s), {links} case link(s), {cases} case(s)"
    others = [log.summary.station for log in audited[1:]]
    if others:
        report.notes.append(
            f"{len(others)} other station log(s) in this catalog verified ({', '.join(others)}) with "
            "the key each log recorded at its first start; pin a key with --trusted-key to make "
            "that check independent of the catalog"
        )
    summary = audited[0].summary
    if summary.unsigned_entries:
        report.notes.append(
            f"{summary.unsigned_entries} entr(ies) after the latest checkpoint are not signed "
            "yet; `evidence-agent custody checkpoint` signs them"
        )
