"""Supervised retrieval: stored footage copied out, verified against its ingest hash before handover.

Steps for each clip:
  1. the caller's role, the reason, the clip and the target are checked; a refusal is logged;
  2. the stored object is read once and copied to a hidden temporary file in the target
     directory; the bytes written are hashed in a second thread (hashing overlaps the I/O,
     and both use direct I/O where the file systems allow it);
  3. size and hash are compared (constant time) with the ingest values; on a mismatch the
     temporary file is deleted, the failure is logged, nothing is handed over. The hash is the
     clip's BLAKE3, taken in the ingest read beside its SHA-256 (several times faster to check,
     so verification costs next to nothing beside the copy), as the clip's ingest event in the
     custody log fixes it, and the catalog row must agree with that event (`ingest_hash`);
     clips ingested before BLAKE3 was recorded are checked by SHA-256;
  4. the retrieval is logged (who, when, what, why), then the file is given its final,
     read-only name (never replacing a file) and the directory is synced;
  5. a receipt (RFC 8785 JSON) lists what was handed over; its hash is logged too.

A file already in the target that holds exactly the clip's ingested bytes (a retrieval made
again to the same place) is verified and handed over as it is, not copied once more. A case's
retrieval hands over its attached documents too, each checked against its recorded SHA-256.

Steps 2 and 3, and the placing in 4, are the verified copy-out of services/copy_out.py.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlmodel import col, select

from evidence_agent.catalog.models import CaseDocument, Clip, Officer, Recorder, Unit
from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.domain.states import ClipState
from evidence_agent.domain.text import is_plain_text
from evidence_agent.errors import EvidenceError, InputError, IntegrityError
from evidence_agent.services.copy_out import (
    CHUNK_BYTES,
    DirectoryTarget,
    Target,
    copy_verified,
    identical_in_target,
    ingest_hash,
)
from evidence_agent.services.guard import record_refusal, require, role_names
from evidence_agent.services.station import Station
from review.lookup import get_case, get_clip, linked_clip_ids

log = logging.getLogger(__name__)

RECEIPT_TYPE = "evidence-agent.retrieval-receipt"
_RECEIPT_ROOM = 1 << 20  # space kept free for the receipt

_Attribution = tuple[str | None, str | None, str | None]  # a clip's officer, recorder and unit


@dataclass(frozen=True)
class RetrievalRequest:
    clips: Sequence[str]  # clip ids, id prefixes or SHA-256
    case: str | None  # every clip linked to this case
    target: Path  # as the caller named it (logged with a refusal)
    reason: str | None


@dataclass
class HandedOver:
    clip: Clip
    file: Path
    seq: int  # the custody log entry of this retrieval
    verified: str  # the ingest hash checked: "blake3" or "sha256"
    officer: str | None = None
    recorder: str | None = None
    unit: str | None = None
    already_there: bool = False  # the identical file was in the target: nothing was copied

    def to_json(self) -> dict[str, Any]:
        c = self.clip
        return {
            "clip": c.id,
            "sha256": c.sha256,
            "size": c.size,
            "file": self.file.name,
            "recorded_start": format_time(c.recorded_start) if c.recorded_start else None,
            "recorded_end": format_time(c.recorded_end) if c.recorded_end else None,
            "officer": self.officer,
            "recorder": self.recorder,
            "unit": self.unit,
            "verified": self.verified,
            "custody_seq": self.seq,
            "already_there": self.already_there,
        }


@dataclass
class DocumentHandedOver:
    document: CaseDocument
    file: Path
    already_there: bool = False

    def to_json(self) -> dict[str, Any]:
        d = self.document
        return {
            "document": d.id,
            "name": d.name,
            "sha256": d.sha256,
            "size": d.size,
            "file": self.file.name,
            "verified": "sha256",
            "already_there": self.already_there,
        }


@dataclass
class RetrievalReport:
    retrieval_id: str
    target: Path
    reason: str
    case: str | None
    handed_over: list[HandedOver] = field(default_factory=list)
    documents: list[DocumentHandedOver] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # clip id -> integrity failure
    failed_documents: dict[int, str] = field(default_factory=dict)  # document id -> failure
    receipt: Path | None = None
    receipt_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "retrieval": self.retrieval_id,
            "target": str(self.target),
            "reason": self.reason,
            "case": self.case,
            "handed_over": [h.to_json() for h in self.handed_over],
            "documents": [d.to_json() for d in self.documents],
            "integrity_failures": self.failed,
            "document_integrity_failures": {str(k): v for k, v in self.failed_documents.items()},
            "receipt": str(self.receipt) if self.receipt else None,
            "receipt_sha256": self.receipt_sha256,
        }


def retrieve(
    station: Station,
    caller: Caller,
    request: RetrievalRequest,
    *,
    chunk_bytes: int | None = None,
    target: Target | None = None,
) -> RetrievalReport:
    """Hand over verified copies of the requested clips, or refuse with the refusal logged.

    `target`: where the copies go, by default the directory `request.target` opened by this
    process; the local API passes one whose files the caller's own process opens.
    Raises IntegrityError after the rest are handed over when any stored copy fails its hash."""
    reason = (request.reason or "").strip()
    refused = _Refusal(station, caller, request, reason)
    target = target or DirectoryTarget(request.target)
    clips, views, documents = _checked_request(station, caller, request, target, refused)
    report = RetrievalReport(uuid.uuid4().hex, target.path, reason, request.case)
    chunk = chunk_bytes or CHUNK_BYTES
    try:
        for clip in clips:
            _hand_over(station, caller, clip, views[clip.id], report, target, chunk, refused)
        for document in documents:
            _hand_over_document(station, document, target, chunk, report)
    finally:
        if report.handed_over or report.documents or report.failed or report.failed_documents:
            _write_receipt(station, caller, report, target)
    if report.failed or report.failed_documents:
        raise RetrievalIntegrityError(report)
    return report


@dataclass(frozen=True)
class _Refusal:
    """Logs a refused retrieval, with what was asked, and gives back the error to raise."""

    station: Station
    caller: Caller
    request: RetrievalRequest
    reason: str

    @property
    def subject(self) -> tuple[Subject, str | None]:
        """A retrieval by case is about the case; one by clips, about the station."""
        if self.request.case:
            return Subject.CASE, self.request.case
        return Subject.STATION, None

    def __call__(
        self, error: EvidenceError, clip: Clip | None = None, **extra: Any
    ) -> EvidenceError:
        """`clip`, when the refusal is about one clip of the request; `extra` goes in its data."""
        subject_kind, subject_id = (Subject.CLIP, clip.id) if clip else self.subject
        request = self.request
        record_refusal(
            self.station,
            self.caller,
            Action.RETRIEVE.value,
            error.message,
            subject_kind=subject_kind,
            subject_id=subject_id,
            reason=self.reason,
            sha256=clip.sha256 if clip else None,
            data={
                "target": str(request.target),
                "case": request.case,
                "clips": list(request.clips),
                **extra,
            },
        )
        return error


def _checked_request(
    station: Station, caller: Caller, request: RetrievalRequest, target: Target, refused: _Refusal
) -> tuple[list[Clip], dict[str, _Attribution], list[CaseDocument]]:
    """1: the caller's role, the reason, the clips (each in the store) and the target, checked;
    the clips in recording order, who each is attributed to, the case's documents, and the
    target ready for them."""
    subject_kind, subject_id = refused.subject
    require(
        station,
        caller,
        Action.RETRIEVE,
        subject_kind=subject_kind,
        subject_id=subject_id,
        reason=refused.reason,
    )
    if not refused.reason:
        raise refused(
            InputError(
                "a retrieval needs a reason",
                remedy="say why with --reason, e.g. --reason 'court request 2026-117'",
            )
        )
    if not request.clips and not request.case:
        raise refused(InputError("name the clips to retrieve, or a case with --case"))
    try:
        clips, views = _resolve(station, request)
        documents = _case_documents(station, request.case) if request.case else []
    except EvidenceError as e:
        raise refused(e) from None
    for clip in clips:
        if clip.state != ClipState.STORED:
            raise refused(
                InputError(
                    f"clip {clip.id} is {clip.state}, not in the store: it cannot be retrieved",
                    remedy="a spooled clip is retrievable once `evidence-agent store` has run"
                    if clip.state == ClipState.SPOOLED
                    else None,
                ),
                clip,
            )
    try:
        needed = sum(c.size for c in clips) + sum(d.size for d in documents)
        target.prepare(needed, _RECEIPT_ROOM)
    except EvidenceError as e:
        raise refused(e) from None
    return clips, views, documents


def _hand_over(
    station: Station,
    caller: Caller,
    clip: Clip,
    attribution: _Attribution,
    report: RetrievalReport,
    target: Target,
    chunk: int,
    refused: _Refusal,
) -> None:
    """2-4 for one clip: copied out and verified, logged, then placed under its final name.

    A copy that fails its hash is logged and noted in the report, and the next clip goes on."""
    name = clip_file_name(clip)
    try:
        check = ingest_hash(station, clip)
        found = identical_in_target(target, name, clip.size, check)
        tmp = (
            ""
            if found
            else copy_verified(
                station, clip.sha256, clip.size, check, target, chunk, f"clip {clip.id}"
            )
        )
    except IntegrityError as e:
        report.failed[clip.id] = e.message
        _record_integrity_failure(station, caller, clip, report, e)
        return
    except EvidenceError as e:
        raise refused(e, clip) from None
    verified = check[0]
    try:
        # 4. logged first: a file is never in the target without its retrieval event
        seq = _record_retrieval(station, caller, clip, report, verified, found is not None)
    except BaseException:
        if found is None:
            target.discard(tmp)
        raise
    try:
        final = found or target.place(tmp, name, clip.id)
    except EvidenceError as e:
        target.discard(tmp)
        # not_completed_seq: the logged retrieval that did not hand over
        raise refused(e, clip, not_completed_seq=seq) from None
    report.handed_over.append(
        HandedOver(clip, final, seq, verified, *attribution, found is not None)
    )
    log.info("clip %s handed over as %s", clip.id, final)


def _hand_over_document(
    station: Station, document: CaseDocument, target: Target, chunk: int, report: RetrievalReport
) -> None:
    """A case document, checked against the SHA-256 recorded when it was attached; listed in the
    receipt, whose hash the log keeps."""
    name = document_file_name(document)
    check = ("sha256", document.sha256)
    found = identical_in_target(target, name, document.size, check)
    if found is None:
        what = f"document {document.id} ({document.name}) of case {report.case}"
        try:
            tmp = copy_verified(station, document.sha256, document.size, check, target, chunk, what)
        except IntegrityError as e:
            report.failed_documents[document.id or 0] = e.message
            log.error("%s not handed over: %s", what, e.message)
            return
        try:
            found = target.place(tmp, name, f"document-{document.id}")
        finally:
            target.discard(tmp)
        report.documents.append(DocumentHandedOver(document, found))
    else:
        report.documents.append(DocumentHandedOver(document, found, already_there=True))
    log.info("document %s handed over as %s", document.id, found)


class RetrievalIntegrityError(IntegrityError):
    """Some stored copies failed their hash: they were not handed over; the rest were."""

    def __init__(self, report: RetrievalReport) -> None:
        failures = [*report.failed.values(), *report.failed_documents.values()]
        super().__init__(
            f"{len(failures)} stored clip(s) or document(s) failed verification and were not "
            "handed over: " + "; ".join(failures),
            remedy="run `evidence-agent verify` and report the store to a supervisor",
        )
        self.report = report


def _resolve(
    station: Station, request: RetrievalRequest
) -> tuple[list[Clip], dict[str, _Attribution]]:
    with station.reading() as session:
        ids: list[str] = []
        if request.case:
            case = get_case(session, request.case)
            assert case.id is not None
            ids = linked_clip_ids(session, case.id)
            if not ids:
                raise InputError(f"case {case.number} has no linked footage to retrieve")
        clips: dict[str, Clip] = {}
        for ref in [*ids, *request.clips]:
            clip = get_clip(session, ref)
            clips.setdefault(clip.id, clip)
        views = {}
        for clip in clips.values():
            officer = session.get(Officer, clip.officer_id) if clip.officer_id else None
            recorder = session.get(Recorder, clip.recorder_id) if clip.recorder_id else None
            unit = session.get(Unit, clip.unit_id) if clip.unit_id else None
            views[clip.id] = (
                officer.badge if officer else None,
                recorder.serial if recorder else None,
                unit.code if unit else None,
            )
    ordered = sorted(
        clips.values(), key=lambda c: (c.recorded_start is None, c.recorded_start, c.id)
    )
    return ordered, views


def _case_documents(station: Station, ref: str) -> list[CaseDocument]:
    with station.reading() as session:
        case = get_case(session, ref)
        return list(
            session.exec(
                select(CaseDocument)
                .where(CaseDocument.case_id == case.id)
                .order_by(col(CaseDocument.id))
            )
        )


def clip_file_name(clip: Clip) -> str:
    """The recorder's own file name, which carries serial, badge and time, as the catalog shows
    it (`source_path`): bytes that are not UTF-8 written as \\xNN escapes, so the name is the
    one `clips list` and the receipt give. Else (a name a file cannot take) the clip id."""
    return _safe_name(PurePosixPath(clip.source_path).name) or clip.id


def document_file_name(document: CaseDocument) -> str:
    return _safe_name(document.name) or f"document-{document.id}"


def _safe_name(name: str) -> str | None:
    if not name or name.startswith(".") or "/" in name or not is_plain_text(name):
        return None
    return name


def _record_retrieval(
    station: Station,
    caller: Caller,
    clip: Clip,
    report: RetrievalReport,
    verified: str,
    already_there: bool = False,
) -> int:
    checked = (
        "the identical file already in the target"
        if already_there
        else "the bytes read from the store"
    )
    with station.transaction() as session:
        entry = station.custody.append(
            session,
            EventType.CLIP_RETRIEVED.event(
                clip.id,
                actor=caller.actor,
                reason=report.reason,
                sha256=clip.sha256,
                data={
                    "retrieval": report.retrieval_id,
                    "case": report.case,
                    "target": str(report.target),
                    "size": clip.size,
                    "verified": f"{verified} of {checked} equals the ingest hash",
                    "store": station.store.describe(),
                    "roles": role_names(caller),
                },
            ),
        )
    return entry.seq


def _record_integrity_failure(
    station: Station, caller: Caller, clip: Clip, report: RetrievalReport, error: IntegrityError
) -> None:
    log.error("clip %s not handed over: %s", clip.id, error.message)
    with station.transaction() as session:
        station.record(
            session,
            EventType.CLIP_INTEGRITY_FAILED.event(
                clip.id,
                actor=caller.actor,
                reason=report.reason,
                sha256=clip.sha256,
                data={
                    "action": Action.RETRIEVE.value,
                    "retrieval": report.retrieval_id,
                    "cause": error.message,
                    "store": station.store.describe(),
                    "handed_over": False,
                },
            ),
        )


def _write_receipt(
    station: Station, caller: Caller, report: RetrievalReport, target: Target
) -> None:
    """5: the receipt, written atomically next to the files; its hash goes into the log."""
    now = station.clock.now()
    document = {
        "type": RECEIPT_TYPE,
        "v": 1,
        "retrieval": report.retrieval_id,
        "station": station.settings.station_id,
        "actor": caller.actor,
        "roles": role_names(caller),
        "time": format_time(now),
        "reason": report.reason,
        "case": report.case,
        "items": [h.to_json() for h in report.handed_over],
        "documents": [d.to_json() for d in report.documents],
        "not_handed_over": [
            *(
                {"clip": clip_id, "cause": cause}
                for clip_id, cause in sorted(report.failed.items())
            ),
            *(
                {"document": doc_id, "cause": cause}
                for doc_id, cause in sorted(report.failed_documents.items())
            ),
        ],
    }
    data = canonical_json(document)
    path: Path | None = None
    try:
        path = target.write_document(f"receipt-{report.retrieval_id}.json", data + b"\n")
    except EvidenceError as e:
        log.error("the receipt of retrieval %s could not be written: %s", report.retrieval_id, e)
    digest = hashlib.sha256(data + b"\n").hexdigest()
    with station.transaction() as session:
        station.record(
            session,
            EventType.RETRIEVAL_RECEIPT.event(
                station.settings.station_id,
                actor=caller.actor,
                reason=report.reason,
                data={
                    "retrieval": report.retrieval_id,
                    "case": report.case,
                    "receipt": str(path) if path else None,
                    "receipt_sha256": digest,
                    "clips": [h.clip.id for h in report.handed_over],
                    "not_handed_over": sorted(report.failed),
                    "documents": [d.document.id for d in report.documents],
                    "documents_not_handed_over": sorted(report.failed_documents),
                },
            ),
        )
    report.receipt = path
    report.receipt_sha256 = digest
