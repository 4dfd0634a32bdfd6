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
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import io
import json
import logging
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from blake3 import blake3
from sqlmodel import col, select

from evidence_agent.catalog.models import Clip, CustodyEntry, Officer, Recorder, Unit
from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.domain.states import ClipState
from evidence_agent.errors import (
    EvidenceError,
    InputError,
    IntegrityError,
    NotFoundError,
    StorageError,
)
from evidence_agent.io.atomic import fsync_dir
from evidence_agent.io.copying import FileReader, FileWriter, pump
from evidence_agent.io.hashing import check_digest
from evidence_agent.services.guard import record_refusal, require, role_names
from evidence_agent.services.station import Station
from review.lookup import get_case, get_clip, linked_clip_ids

log = logging.getLogger(__name__)

RECEIPT_TYPE = "evidence-agent.retrieval-receipt"
# Chunks in flight: memory is bounded by _BUFFERS * chunk_bytes. Room to read ahead while the
# target is written and the hash catches up (a device's speed comes and goes, and a network
# stream not read from stalls its sender), but no more. A local object's chunks are read by the
# device straight into these buffers (huge pages: one request a chunk, copying.io_buffers);
# with them, chunks of 512 KiB to 4 MiB copied and hashed a cold GiB here within the host's
# noise of each other, and 1 MiB is a request the disk takes whole for little memory.
_BUFFERS = 4
CHUNK_BYTES = 1 << 20
_RECEIPT_ROOM = 1 << 20  # space kept free for the receipt
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.ENOSYS})


@dataclass(frozen=True)
class RetrievalRequest:
    clips: Sequence[str]  # clip ids, id prefixes or SHA-256
    case: str | None  # every clip linked to this case
    target: Path
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
        }


@dataclass
class RetrievalReport:
    retrieval_id: str
    target: Path
    reason: str
    case: str | None
    handed_over: list[HandedOver] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # clip id -> integrity failure
    receipt: Path | None = None
    receipt_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "retrieval": self.retrieval_id,
            "target": str(self.target),
            "reason": self.reason,
            "case": self.case,
            "handed_over": [h.to_json() for h in self.handed_over],
            "integrity_failures": self.failed,
            "receipt": str(self.receipt) if self.receipt else None,
            "receipt_sha256": self.receipt_sha256,
        }


def retrieve(
    station: Station,
    caller: Caller,
    request: RetrievalRequest,
    *,
    chunk_bytes: int | None = None,
) -> RetrievalReport:
    """Hand over verified copies of the requested clips, or refuse with the refusal logged.

    Raises IntegrityError after the rest are handed over when any stored copy fails its hash."""
    reason = (request.reason or "").strip()
    subject_kind, subject_id = (
        (Subject.CASE, request.case) if request.case else (Subject.STATION, None)
    )
    what = {"target": str(request.target), "case": request.case, "clips": list(request.clips)}

    # 1. role, reason, clips, target
    require(
        station,
        caller,
        Action.RETRIEVE,
        subject_kind=subject_kind,
        subject_id=subject_id,
        reason=reason,
    )

    def refused(error: EvidenceError, **extra: Any) -> EvidenceError:
        record_refusal(
            station,
            caller,
            Action.RETRIEVE.value,
            error.message,
            subject_kind=extra.pop("subject_kind", subject_kind),
            subject_id=extra.pop("subject_id", subject_id),
            reason=reason,
            sha256=extra.pop("sha256", None),
            data={**what, **extra},
        )
        return error

    if not reason:
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
                subject_kind=Subject.CLIP,
                subject_id=clip.id,
                sha256=clip.sha256,
            )
    try:
        target = _prepare_target(request.target, sum(c.size for c in clips))
    except EvidenceError as e:
        raise refused(e) from None

    report = RetrievalReport(uuid.uuid4().hex, target, reason, request.case)
    chunk = chunk_bytes or CHUNK_BYTES
    try:
        for clip in clips:
            officer, recorder, unit = views[clip.id]
            try:
                tmp, verified = copy_verified(station, clip, target, chunk)
            except IntegrityError as e:
                report.failed[clip.id] = e.message
                _record_integrity_failure(station, caller, clip, report, e)
                continue
            except EvidenceError as e:
                raise refused(
                    e, subject_kind=Subject.CLIP, subject_id=clip.id, sha256=clip.sha256
                ) from None
            try:
                # 4. logged first: a file is never in the target without its retrieval event
                seq = _record_retrieval(station, caller, clip, report, target, verified)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            try:
                final = place(tmp, target, _file_name(clip))
            except EvidenceError as e:
                tmp.unlink(missing_ok=True)
                raise refused(
                    e,
                    subject_kind=Subject.CLIP,
                    subject_id=clip.id,
                    sha256=clip.sha256,
                    not_completed_seq=seq,  # the logged retrieval that did not hand over
                ) from None
            report.handed_over.append(
                HandedOver(clip, final, seq, verified, officer, recorder, unit)
            )
            log.info("clip %s handed over as %s", clip.id, final)
    finally:
        if report.handed_over or report.failed:
            _write_receipt(station, caller, report)
    if report.failed:
        raise RetrievalIntegrityError(report)
    return report


class RetrievalIntegrityError(IntegrityError):
    """Some stored copies failed their hash: they were not handed over; the rest were."""

    def __init__(self, report: RetrievalReport) -> None:
        super().__init__(
            f"{len(report.failed)} stored clip(s) failed verification and were not handed over: "
            + "; ".join(report.failed.values()),
            remedy="run `evidence-agent verify` and report the store to a supervisor",
        )
        self.report = report


def _resolve(
    station: Station, request: RetrievalRequest
) -> tuple[list[Clip], dict[str, tuple[str | None, str | None, str | None]]]:
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


def _prepare_target(target: Path, needed: int) -> Path:
    """The target directory, made if absent, with room for every clip and the receipt."""
    try:
        target.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise InputError(f"the target {target} is not a directory") from e
    except OSError as e:
        raise StorageError(
            f"cannot create the target directory {target}: {e.strerror}",
            remedy="choose a directory you can write to with --to",
        ) from e
    if not target.is_dir():
        raise InputError(f"the target {target} is not a directory")
    probe = target / f".evidence-agent-{uuid.uuid4().hex}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as e:
        raise StorageError(
            f"the target directory {target} is not writable: {e.strerror}",
            remedy="choose a directory you can write to with --to",
        ) from e
    free = shutil.disk_usage(target).free
    if free < needed + _RECEIPT_ROOM:
        raise StorageError(
            f"the target {target} is too full: the retrieval needs {needed} bytes, {free} are free",
            remedy="free space there or retrieve to another disk",
        )
    return target.resolve()


def copy_verified(station: Station, clip: Clip, target: Path, chunk_bytes: int) -> tuple[Path, str]:
    """2-3: copy the stored object to a temporary file in `target` while hashing it.

    Returns the temporary file, complete, synced and verified, and the hash it was verified by;
    on any failure it is gone."""
    algorithm, expected = ingest_hash(station, clip)
    tmp = target / f".evidence-agent-{uuid.uuid4().hex}.part"
    try:
        source = station.store.open(clip.sha256)
    except NotFoundError as e:
        raise IntegrityError(
            f"the stored copy of clip {clip.id} is missing from {station.store.describe()}"
        ) from e
    try:
        try:
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise _target_error(e, target) from e
        try:
            digest, size = copy_and_hash(
                source, dst, chunk_bytes, lambda e: _target_error(e, target), algorithm
            )
            os.fchmod(dst, 0o444)  # a handed-over copy is read-only, like the original
            try:
                os.fsync(dst)
            except OSError as e:
                raise _target_error(e, target) from e
        finally:
            os.close(dst)
        if size != clip.size:
            raise IntegrityError(
                f"the stored copy of clip {clip.id} has {size} bytes, the catalog says {clip.size}"
            )
        check_digest(expected, digest, f"stored copy of clip {clip.id}", _NAMES[algorithm])
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return tmp, algorithm


def ingest_hash(station: Station, clip: Clip) -> tuple[str, str]:
    """The hash a retrieval of `clip` checks, as (algorithm, hex digest), as the clip's ingest
    event in the custody log fixes it: the BLAKE3 where the ingest recorded one, else the SHA-256.

    The catalog row must say the same as the event. The bytes handed over are then those the
    log says were ingested, and the SHA-256 on the receipt is theirs, even though only their
    BLAKE3 was computed: a row edited behind the log's back (as `verify` would report it) hands
    nothing over."""
    with station.reading() as session:
        row = session.exec(
            select(CustodyEntry.seq, CustodyEntry.entry)
            .where(CustodyEntry.station_id == clip.station_id)
            .where(CustodyEntry.subject_id == clip.id)
            .where(CustodyEntry.event_type == EventType.CLIP_INGESTED)
            .order_by(col(CustodyEntry.seq))
        ).first()
    if row is None:
        raise IntegrityError(
            f"clip {clip.id} has no clip.ingested event in the custody log of station "
            f"{clip.station_id}: its catalog row was not made by an ingest",
            remedy="run `evidence-agent verify` and report the finding",
        )
    seq, entry = row
    event = json.loads(entry)
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    logged_sha256, logged_blake3 = event.get("sha256"), data.get("blake3")
    at = f"its ingest event (entry {seq})"
    if not isinstance(logged_sha256, str) or not _same(logged_sha256, clip.sha256):
        raise IntegrityError(
            f"the catalog's SHA-256 of clip {clip.id} is {clip.sha256}, {at} says {logged_sha256}"
        )
    if logged_blake3 is None and clip.blake3 is None:
        return "sha256", clip.sha256  # ingested before BLAKE3 was recorded
    if not isinstance(logged_blake3, str) or not _same(logged_blake3, clip.blake3 or ""):
        raise IntegrityError(
            f"the catalog's BLAKE3 of clip {clip.id} is {clip.blake3}, {at} says {logged_blake3}"
        )
    return "blake3", logged_blake3


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


_NAMES = {"blake3": "BLAKE3", "sha256": "SHA-256"}


def copy_and_hash(
    source: BinaryIO,
    dst: int,
    chunk_bytes: int,
    write_error: Callable[[OSError], EvidenceError],
    algorithm: str = "sha256",
) -> tuple[str, int]:
    """Copy `source` to the file descriptor `dst`; return the digest (`algorithm`: "sha256" or
    "blake3") and size of what was written.

    A reader thread reads ahead, a second thread hashes while the target is written
    (copying.pump). A local object is read by its descriptor, directly where the file system
    allows it; any other stream (an S3 body) by `read`, its bytes used as they come."""
    try:
        fd = source.fileno()
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        regular = False
    read = FileReader(fd) if regular else _stream_reader(source)
    writer = FileWriter(dst)

    def write(view: memoryview) -> None:
        try:
            writer(view)
        except OSError as e:
            raise write_error(e) from e

    hasher = blake3() if algorithm == "blake3" else hashlib.sha256()

    def digest(view: memoryview) -> None:
        hasher.update(view)

    total = pump(
        read, write, digest, chunk_bytes=chunk_bytes, buffers=_BUFFERS, read_error=_read_error
    )
    return hasher.hexdigest(), total


def _stream_reader(source: BinaryIO) -> Callable[[memoryview], memoryview]:
    """Reads a stream by `read`, not into the pump's buffer: the bytes a network response
    makes are hashed and written as they come, with no copy into the buffer."""

    def read(buf: memoryview) -> memoryview:
        return memoryview(source.read(len(buf)))

    return read


def _read_error(e: OSError) -> StorageError:
    return StorageError(f"cannot read the stored object: {e.strerror or e}")


def place(tmp: Path, target: Path, name: str) -> Path:
    """Give the verified file its final name, never replacing an existing file."""
    stem, suffix = _split(name)
    candidates = [name, *(f"{stem}-{n}{suffix}" for n in range(2, 1000))]
    for candidate in candidates:
        final = target / candidate
        try:
            os.link(tmp, final)  # fails when the name exists: never an overwrite
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS:
                raise _target_error(e, target) from e
            # File systems without hard links (FAT on a USB stick): check, then rename.
            if final.exists():
                continue
            try:
                os.rename(tmp, final)
            except OSError as e2:
                raise _target_error(e2, target) from e2
            fsync_dir(target)
            return final
        tmp.unlink()
        fsync_dir(target)
        return final
    raise InputError(f"too many files named like {name} in {target}")


def _split(name: str) -> tuple[str, str]:
    dot = name.rfind(".")
    return (name[:dot], name[dot:]) if dot > 0 else (name, "")


def _file_name(clip: Clip) -> str:
    """The recorder's own file name, which carries serial, badge and time; else the clip id."""
    name = PurePosixPath(clip.source_path.replace("\\", "/")).name
    if not name or name.startswith(".") or any(ord(ch) < 32 for ch in name):
        return clip.id
    return name


def _target_error(e: OSError, target: Path) -> StorageError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(
            f"the target {target} is full; nothing unverified was left there",
            remedy="free space there or retrieve to another disk",
        )
    return StorageError(f"cannot write to the target {target}: {e.strerror}")


def _record_retrieval(
    station: Station,
    caller: Caller,
    clip: Clip,
    report: RetrievalReport,
    target: Path,
    verified: str,
) -> int:
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
                    "target": str(target),
                    "size": clip.size,
                    "verified": f"{verified} of the bytes read from the store equals the "
                    "ingest hash",
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


def _write_receipt(station: Station, caller: Caller, report: RetrievalReport) -> None:
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
        "not_handed_over": [
            {"clip": clip_id, "cause": cause} for clip_id, cause in sorted(report.failed.items())
        ],
    }
    data = canonical_json(document)
    path: Path | None = report.target / f"receipt-{report.retrieval_id}.json"
    tmp = report.target / f".receipt-{report.retrieval_id}.part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        try:
            os.write(fd, data + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, report.target / f"receipt-{report.retrieval_id}.json")
        fsync_dir(report.target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        log.error("the receipt of retrieval %s could not be written: %s", report.retrieval_id, e)
        path = None
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
                },
            ),
        )
    report.receipt = path
    report.receipt_sha256 = digest
