"""Supervised retrieval: stored footage copied out, verified against its ingest hash before handover.

Steps for each clip:
  1. the caller's role, the reason, the clip and the target are checked; a refusal is logged;
  2. the stored object is read once and copied to a hidden temporary file in the target
     directory; the bytes written are hashed in a second thread (hashing overlaps the I/O);
  3. size and SHA-256 are compared (constant time) with the catalog's ingest values; on a
     mismatch the temporary file is deleted, the failure is logged, nothing is handed over;
  4. the retrieval is logged (who, when, what, why), then the file is given its final,
     read-only name (never replacing a file) and the directory is synced;
  5. a receipt (RFC 8785 JSON) lists what was handed over; its hash is logged too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import mmap
import os
import queue
import shutil
import stat
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from evidence_agent.catalog.models import Clip, Officer, Recorder, Unit
from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.events import CustodyEvent, format_time
from evidence_agent.errors import (
    EvidenceError,
    InputError,
    IntegrityError,
    NotFoundError,
    StorageError,
)
from evidence_agent.spool import check_digest, fsync_dir
from evidence_agent.station import Station
from review.guard import record_refusal, require
from review.lookup import get_case, get_clip, linked_clip_ids
from review.roles import Action, Caller

log = logging.getLogger(__name__)

RETRIEVED = "clip.retrieved"
INTEGRITY_FAILED = "clip.integrity_failed"
RECEIPT = "retrieval.receipt"
RECEIPT_TYPE = "evidence-agent.retrieval-receipt"
_BUFFERS = 4  # chunks in flight: memory is bounded by _BUFFERS * chunk_bytes
_STREAM_BUFFERS = 8  # the same for a stream: room to read ahead while the target is written
CHUNK_BYTES = 4 << 20
_FLUSH_EVERY = 64 << 20  # bytes copied between two background fdatasync calls
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
            "verified": "sha256",
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
    subject_kind, subject_id = ("case", request.case) if request.case else ("station", None)
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
        if clip.state != "stored":
            raise refused(
                InputError(
                    f"clip {clip.id} is {clip.state}, not in the store: it cannot be retrieved",
                    remedy="a spooled clip is retrievable once `evidence-agent store` has run"
                    if clip.state == "spooled"
                    else None,
                ),
                subject_kind="clip",
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
                tmp = copy_verified(station, clip, target, chunk)
            except IntegrityError as e:
                report.failed[clip.id] = e.message
                _record_integrity_failure(station, caller, clip, report, e)
                continue
            except EvidenceError as e:
                raise refused(
                    e, subject_kind="clip", subject_id=clip.id, sha256=clip.sha256
                ) from None
            try:
                # 4. logged first: a file is never in the target without its retrieval event
                seq = _record_retrieval(station, caller, clip, report, tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            try:
                final = place(tmp, target, _file_name(clip))
            except EvidenceError as e:
                tmp.unlink(missing_ok=True)
                raise refused(
                    e,
                    subject_kind="clip",
                    subject_id=clip.id,
                    sha256=clip.sha256,
                    not_completed_seq=seq,  # the logged retrieval that did not hand over
                ) from None
            report.handed_over.append(HandedOver(clip, final, seq, officer, recorder, unit))
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


def copy_verified(station: Station, clip: Clip, target: Path, chunk_bytes: int) -> Path:
    """2-3: copy the stored object to a temporary file in `target` while hashing it.

    Returns the temporary file, complete, synced and verified; on any failure it is gone."""
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
            sha256, size = copy_and_hash(
                source, dst, chunk_bytes, lambda e: _target_error(e, target)
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
        check_digest(clip.sha256, sha256, f"stored copy of clip {clip.id}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return tmp


def copy_and_hash(
    source: BinaryIO,
    dst: int,
    chunk_bytes: int,
    write_error: Callable[[OSError], EvidenceError],
) -> tuple[str, int]:
    """Copy `source` to the file descriptor `dst`; return the SHA-256 and size of what was written.

    A second thread hashes while the copy goes on (hashlib releases the GIL on large buffers)."""
    try:
        fd = source.fileno()
        info = os.fstat(fd)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return _copy_buffered(source, dst, chunk_bytes, write_error)
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return _copy_buffered(source, dst, chunk_bytes, write_error)
    return _copy_mapped(fd, info.st_size, dst, chunk_bytes, write_error)


def _copy_mapped(
    src: int, size: int, dst: int, chunk_bytes: int, write_error: Callable[[OSError], EvidenceError]
) -> tuple[str, int]:
    """A local object is mapped, not read: the hash thread and the write both take the bytes
    from the page cache, which saves a copy of every byte (hashing is then the only limit).

    The bytes written are the very bytes hashed. Stored objects are read-only and never change
    size; the caller checks the size against the catalog."""
    try:
        mapped = mmap.mmap(src, size, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        raise StorageError(f"cannot read the stored object: {e}") from e
    with contextlib.suppress(OSError, AttributeError):
        mapped.madvise(mmap.MADV_SEQUENTIAL)
    sha = hashlib.sha256()
    whole = memoryview(mapped)
    in_flight: deque[Future[None]] = deque()
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieve-hash") as hasher,
        _Flusher(dst, write_error) as flusher,
    ):
        # Leaving this block waits for every hash job: none outlives the mapping. (On an
        # error the mapping is left to the garbage collector: views of it may still exist.)
        for offset in range(0, size, chunk_bytes):
            if len(in_flight) == _BUFFERS:
                in_flight.popleft().result()
            ahead = offset + _BUFFERS * chunk_bytes
            if ahead < size:  # ask for the pages the hash thread needs next (a cold object)
                with contextlib.suppress(OSError, ValueError):
                    mapped.madvise(mmap.MADV_WILLNEED, ahead, min(chunk_bytes, size - ahead))
            part = whole[offset : offset + chunk_bytes]
            in_flight.append(hasher.submit(sha.update, part))
            try:
                while part:
                    part = part[os.write(dst, part) :]
            except OSError as e:
                raise write_error(e) from e
            flusher.written(min(chunk_bytes, size - offset))
        while in_flight:
            in_flight.popleft().result()
    del part
    whole.release()
    mapped.close()
    return sha.hexdigest(), size


def _copy_buffered(
    source: BinaryIO, dst: int, chunk_bytes: int, write_error: Callable[[OSError], EvidenceError]
) -> tuple[str, int]:
    """Any other stream (an S3 body) is copied in three overlapping stages: a reader thread
    reads ahead into free buffers, this thread writes each one, the hash thread hashes it
    meanwhile. A buffer is read into again only once it is both written and hashed.

    The stream is read while the target is written: a network stream not read from stalls
    the sender, so reading and writing in turn would add the two times up."""
    sha = hashlib.sha256()
    free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
    for _ in range(_STREAM_BUFFERS):
        free.put(bytearray(chunk_bytes))
    filled: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = queue.SimpleQueue()
    stop = threading.Event()

    def read_ahead() -> None:
        try:
            while (buf := free.get()) is not None and not stop.is_set():
                n = source.readinto(buf)  # type: ignore[attr-defined]
                filled.put((buf, n))
                if not n:
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the copying thread, which raises it
            filled.put(e)

    reader = threading.Thread(target=read_ahead, name="retrieve-read", daemon=True)
    in_flight: deque[tuple[bytearray, Future[None]]] = deque()
    total = 0
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieve-hash") as hasher,
        _Flusher(dst, write_error) as flusher,
    ):
        reader.start()
        try:
            while True:
                item = filled.get()
                if isinstance(item, OSError):
                    raise StorageError(
                        f"cannot read the stored object: {item.strerror or item}"
                    ) from item
                if isinstance(item, BaseException):
                    raise item
                buf, n = item
                if not n:
                    break
                view = memoryview(buf)[:n]
                in_flight.append((buf, hasher.submit(sha.update, view)))
                try:
                    while view:
                        view = view[os.write(dst, view) :]
                except OSError as e:
                    raise write_error(e) from e
                flusher.written(n)
                total += n
                # Half the buffers at most wait for the hasher: the reader always has room.
                if len(in_flight) >= _STREAM_BUFFERS // 2:
                    done, hashed = in_flight.popleft()
                    hashed.result()
                    free.put(done)
            for _, hashed in in_flight:
                hashed.result()
        finally:
            stop.set()  # the reader stops at its next free buffer (or has stopped)
            free.put(None)
            reader.join()
    return sha.hexdigest(), total


class _Flusher:
    """Writes the copy back to disk while it is being made, from a thread of its own.

    Without it the closing fsync finds the whole file still in memory and the disk idle until
    then; with one fdatasync at a time running beside the copy, the two overlap."""

    def __init__(self, fd: int, write_error: Callable[[OSError], EvidenceError]) -> None:
        self.fd = fd
        self.write_error = write_error
        self.pending = 0
        self.running: Future[None] | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieve-flush")

    def __enter__(self) -> _Flusher:
        return self

    def written(self, n: int) -> None:
        self.pending += n
        if self.running is not None and self.running.done():
            self._collect()
        if self.running is None and self.pending >= _FLUSH_EVERY:
            self.pending = 0
            self.running = self.pool.submit(os.fdatasync, self.fd)

    def _collect(self) -> None:
        running, self.running = self.running, None
        if running is not None:
            try:
                running.result()
            except OSError as e:
                raise self.write_error(e) from e

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None:
                self._collect()  # the caller's fsync covers the rest
        finally:
            self.pool.shutdown(wait=True)


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
    station: Station, caller: Caller, clip: Clip, report: RetrievalReport, tmp: Path, target: Path
) -> int:
    with station.transaction() as session:
        entry = station.custody.append(
            session,
            CustodyEvent(
                type=RETRIEVED,
                subject_kind="clip",
                subject_id=clip.id,
                actor=caller.actor,
                reason=report.reason,
                sha256=clip.sha256,
                data={
                    "retrieval": report.retrieval_id,
                    "case": report.case,
                    "target": str(target),
                    "size": clip.size,
                    "verified": "sha256 of the bytes read from the store equals the ingest hash",
                    "store": station.store.describe(),
                    "roles": sorted(caller.roles),
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
            CustodyEvent(
                type=INTEGRITY_FAILED,
                subject_kind="clip",
                subject_id=clip.id,
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
        "roles": sorted(caller.roles),
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
            CustodyEvent(
                type=RECEIPT,
                subject_kind="station",
                subject_id=station.settings.station_id,
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
