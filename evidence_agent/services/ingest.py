"""Ingest service: a mounted recorder volume becomes hashed, tagged, catalogued clips."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import queue
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import update
from sqlmodel import Session, col, select

from evidence_agent.catalog.models import (
    Clip,
    ClipSource,
    DockSession,
    Officer,
    Recorder,
    RecorderAssignment,
    Unit,
)
from evidence_agent.config import resolve_timezone
from evidence_agent.custody.events import CustodyEvent, format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.deadline import DeadlineRule, lateness
from evidence_agent.domain.filenames import FilenameFacts, compile_patterns, parse_filename
from evidence_agent.domain.flags import Flag, SkipReason
from evidence_agent.domain.identity import (
    MAX_IDENTITY_BYTES,
    RecorderIdentity,
    check_serial,
    parse_identity,
)
from evidence_agent.domain.media import MediaInfo, media_kind
from evidence_agent.domain.retention import retention_at_cataloguing
from evidence_agent.domain.states import ClipOutcome, ClipState, DockState
from evidence_agent.domain.text import check_plain_text
from evidence_agent.errors import (
    EvidenceError,
    ExitCode,
    InputError,
    NotFoundError,
    StorageError,
)
from evidence_agent.io.locks import FileLock, is_held, try_lock
from evidence_agent.io.spool import CopiedFile, SpooledFile
from evidence_agent.io.volume_reader import (
    VolumeFile,
    VolumeGoneError,
    VolumeListing,
    display_path,
    error_text,
    list_volume,
    read_small_file,
    volume_text,
)
from evidence_agent.services.station import Station
from evidence_agent.services.storing import publish_checkpoints

log = logging.getLogger(__name__)

_Row = TypeVar("_Row", Unit, Officer, Recorder)

FUTURE_TOLERANCE = timedelta(minutes=5)
NAME_CONTAINER_TOLERANCE = timedelta(seconds=60)
RUNNING_DOCKS_DIR = "running-docks"  # in the data directory: a lock file per dock in progress
_GONE_DOCK = (
    "the process reading this dock stopped during it (killed, crashed, a power cut); finished "
    "files are kept and the rest is read at the next dock"
)
# Reasons that are facts about the volume rather than problems: listed, but no warning.
_QUIET_REASONS = frozenset({SkipReason.NOT_MEDIA, SkipReason.IDENTITY_FILE})


@dataclass(frozen=True)
class ClipResult:
    clip_id: str
    source_path: str
    sha256: str
    size: int
    state: str  # a ClipState
    flags: tuple[str, ...]
    outcome: ClipOutcome

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.clip_id,
            "source_path": self.source_path,
            "sha256": self.sha256,
            "size": self.size,
            "state": self.state,
            "flags": list(self.flags),
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class NotIngested:
    source_path: str
    reason: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"source_path": self.source_path, "reason": self.reason, "detail": self.detail}


class UnidentifiedVolumeError(InputError):
    """No recorder can be named for a volume: no identity file, no serial in its file names,
    none given. Nothing of it is read."""

    def __init__(self, media: list[VolumeFile], warnings: list[str]) -> None:
        super().__init__(
            "cannot tell which recorder this volume is from: no identity file and no serial "
            "in the file names",
            remedy="pass --recorder SERIAL (see docs/recorder-identity.md)",
        )
        self.media = media  # its media files, which count against the 24-hour rule meanwhile
        self.warnings = warnings
        self.dock_session_id: str | None = None  # the unidentified dock, when one is kept


@dataclass
class IngestReport:
    dock_session_id: str
    volume: str
    recorder_serial: str
    clips: list[ClipResult] = field(default_factory=list)
    not_ingested: list[NotIngested] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    clock_skew_seconds: float | None = None
    state: DockState = DockState.FINISHED

    @property
    def clips_new(self) -> int:
        return sum(1 for c in self.clips if c.outcome == ClipOutcome.NEW)

    @property
    def exit_code(self) -> ExitCode:
        noisy = [n for n in self.not_ingested if n.reason not in _QUIET_REASONS]
        new_flagged = any(c.flags for c in self.clips if c.outcome == ClipOutcome.NEW)
        if self.warnings or noisy or new_flagged:
            return ExitCode.WARNING
        return ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "dock_session": self.dock_session_id,
            "volume": self.volume,
            "recorder": self.recorder_serial,
            "state": self.state,
            "clock_skew_seconds": self.clock_skew_seconds,
            "clips": [c.to_json() for c in self.clips],
            "not_ingested": [n.to_json() for n in self.not_ingested],
            "warnings": self.warnings,
        }


ProgressCallback = Callable[[int], None]
ClipCallback = Callable[[str], None]


@dataclass
class _Dock:
    """What the ingest of one volume knows about the recorder being read."""

    session_id: str
    recorder: Recorder
    identity: RecorderIdentity | None
    unit_id: int | None
    skew: timedelta | None


@dataclass(frozen=True)
class _Survey:
    """What a volume tells before any file is read: its files, whose they are, its clock."""

    listing: VolumeListing
    identity_rel: bytes
    identity: RecorderIdentity | None
    facts: dict[bytes, FilenameFacts]  # by file
    serial: str
    skew: timedelta | None
    now: datetime
    warnings: list[str]


def plan_bytes(volume: Path, station: Station) -> int:
    """Bytes of media a volume holds, for a progress bar's total."""
    return sum(f.size for f in list_volume(volume).files if _media_kind(station, f) is not None)


def ingest_volume(
    station: Station,
    volume: Path,
    *,
    recorder_serial: str | None = None,
    source: str = "cli",
    progress: ProgressCallback | None = None,
    on_clip: ClipCallback | None = None,
    should_stop: Callable[[], str | None] | None = None,
    warnings: Sequence[str] = (),
    finishing: Callable[[DockSession], None] | None = None,
    hold_unidentified: bool = False,
    resume: str | None = None,
) -> IngestReport:
    """Read every media file of the volume once, catalogue it with its custody event.

    A file already taken from this recorder on an earlier dock is not read again; content
    already in the catalog makes no second clip. `on_clip` is told the SHA-256 of each clip of
    the dock still waiting in the spool (new, or left there by an earlier run) so a store
    worker can start on it while the next file is copied. Docks of this station left `running`
    by a process that is gone are marked interrupted first (`recover_interrupted`).
    `should_stop` is asked before each file; a reason ends the dock as interrupted
    (VolumeGoneError). `warnings` are the caller's own about this dock (the daemon's identity
    check): they go into the report and the dock's row with the ingest's. `finishing` is given
    the dock's row in the transaction that finishes it, for what the caller knows of the dock
    (progress, the device): whoever sees the dock finished sees all of it.

    A volume no recorder can be named for raises UnidentifiedVolumeError. With
    `hold_unidentified` (the daemon) it is first kept as a dock in state `unidentified`, with
    its custody event, or `resume`'s such dock is brought up to date. `resume` names an
    unidentified dock of this volume: once the recorder is known, that dock is the one read."""
    try:
        survey = _survey(station, volume, recorder_serial, list(warnings))
    except UnidentifiedVolumeError as e:
        if hold_unidentified:
            e.dock_session_id = _hold_unidentified(station, volume, source, e, finishing, resume)
        raise
    for dock_id in recover_interrupted(station):
        log.warning(
            "dock %s was left running by a process that is gone: marked interrupted", dock_id
        )
    session_id = resume or str(uuid.uuid4())
    # Held until the dock's row says how it ended: a dock found `running` whose lock is free
    # has no process left to finish it.
    lock = _lock_dock(station, session_id)
    try:
        with station.transaction() as session:
            dock = _start_dock(station, session, session_id, survey, volume, source)
        report = _read_dock(
            station, dock, volume, survey, progress, on_clip, should_stop, finishing
        )
    finally:
        lock.release(remove=True)
    return report


def _read_dock(
    station: Station,
    dock: _Dock,
    volume: Path,
    survey: _Survey,
    progress: ProgressCallback | None,
    on_clip: ClipCallback | None,
    should_stop: Callable[[], str | None] | None,
    finishing: Callable[[DockSession], None] | None,
) -> IngestReport:
    """The dock's files read and catalogued, and its row finished however it ends."""
    report = _open_report(station, dock, volume, survey)
    cataloguer = _Cataloguer(station, dock, survey.now, on_clip)
    try:
        _read_files(station, dock, volume, survey, report, cataloguer, progress, should_stop)
        cataloguer.collect(report)
    except VolumeGoneError as e:
        cataloguer.collect(report, raise_errors=False)
        report.state = DockState.INTERRUPTED
        report.warnings.append(f"{e.message}: finished files are kept; dock it again to resume")
        _finish_dock(station, dock, report, finishing, error=e.message)
        raise
    except Exception as e:
        # Whatever ended it, the dock's row says so: a row left `running` stays in `status`.
        cataloguer.collect(report, raise_errors=False)
        report.state = DockState.FAILED
        error = e.message if isinstance(e, EvidenceError) else f"{type(e).__name__}: {e}"
        _finish_dock(station, dock, report, finishing, error=error)
        raise
    finally:
        cataloguer.shutdown()
    _finish_dock(station, dock, report, finishing)
    return report


def _media_kind(station: Station, file: VolumeFile) -> str | None:
    ingest = station.settings.ingest
    return media_kind(
        file.name, ingest.video_patterns, ingest.photo_patterns, ingest.audio_patterns
    )


def _hold_unidentified(
    station: Station,
    volume: Path,
    source: str,
    error: UnidentifiedVolumeError,
    finishing: Callable[[DockSession], None] | None,
    resume: str | None,
) -> str:
    """Keep a volume no recorder can be named for as a dock in state `unidentified`, with its
    media files' count, bytes and oldest modification time; `resume`'s such dock is brought up
    to date instead of a second one made. The dock's id."""
    now = station.clock.now()
    files = error.media
    oldest = datetime.fromtimestamp(min(f.mtime_ns for f in files) / 1e9, UTC) if files else None
    with station.transaction() as session:
        row = session.get(DockSession, resume) if resume is not None else None
        if row is not None and row.state == DockState.UNIDENTIFIED:
            row.files_seen, row.bytes_total = len(files), sum(f.size for f in files)
            row.oldest_file_at = oldest
            row.warnings = json.dumps(error.warnings, ensure_ascii=False)
            session.add(row)
            return row.id
        row = DockSession(
            id=str(uuid.uuid4()),
            station_id=station.settings.station_id,
            source=source,
            volume=volume_text(volume),
            actor=station.actor,
            started_at=now,
            state=DockState.UNIDENTIFIED,
            error=error.message,
            files_seen=len(files),
            bytes_total=sum(f.size for f in files),
            oldest_file_at=oldest,
            warnings=json.dumps(error.warnings, ensure_ascii=False),
        )
        if finishing is not None:
            finishing(row)
        session.add(row)
        data: dict[str, Any] = {
            "dock_session": row.id,
            "volume": row.volume,
            "source": source,
            "files": row.files_seen,
            "bytes": row.bytes_total,
            "oldest_file_at": format_time(oldest) if oldest is not None else None,
        }
        device = json.loads(row.device_info)
        if device:
            data["usb"] = device
        station.record(
            session,
            EventType.DOCK_UNIDENTIFIED.event(
                row.id,
                actor=station.actor,
                reason="no recorder can be named for this volume (no identity file, no serial "
                "in its file names, not enrolled): nothing was read; it waits for an identity "
                "file or an operator",
                data=data,
            ),
        )
        return row.id


def identify_dock(
    station: Station,
    dock_id: str,
    recorder_serial: str,
    reason: str,
    *,
    volume: Path | None = None,
    progress: ProgressCallback | None = None,
    on_clip: ClipCallback | None = None,
) -> IngestReport:
    """An operator names the recorder of an unidentified dock: the act is recorded
    (`dock.identified`, with their reason), then the volume is ingested as that recorder's,
    in that dock. `volume` is where it is mounted now, when not where it was docked (a USB
    device the daemon has unmounted)."""
    check_serial(recorder_serial, what="--recorder")
    check_plain_text(dock_id, "dock")
    if not check_plain_text(reason, "reason").strip():
        raise InputError("a reason is required", remedy="say why this is that recorder's volume")
    with station.reading() as session:
        row = session.get(DockSession, dock_id)
    if row is None or row.station_id != station.settings.station_id:
        raise NotFoundError(
            f"no dock {dock_id} at this station",
            remedy="`evidence-agent status` lists the docks waiting for identification",
        )
    if row.state != DockState.UNIDENTIFIED:
        raise InputError(f"dock {dock_id} is {row.state}, not waiting for identification")
    path = volume if volume is not None else Path(row.volume)
    if not path.is_dir():
        raise InputError(
            f"the volume of dock {dock_id} is not at {volume_text(path)}",
            remedy="mount it read-only and give its mount point with --volume",
        )
    with station.transaction() as session:
        station.record(
            session,
            EventType.DOCK_IDENTIFIED.event(
                dock_id,
                actor=station.actor,
                reason=reason,
                data={
                    "dock_session": dock_id,
                    "recorder": recorder_serial,
                    "volume": volume_text(path),
                },
            ),
        )
        station.custody.checkpoint(session)  # a person's act: signed before anything follows
    log.info("dock %s identified as recorder %s by %s", dock_id, recorder_serial, station.actor)
    return ingest_volume(
        station,
        path,
        recorder_serial=recorder_serial,
        source=row.source,
        progress=progress,
        on_clip=on_clip,
        resume=dock_id,
    )


def _dock_lock_path(station: Station, session_id: str) -> Path:
    return station.settings.data_dir / RUNNING_DOCKS_DIR / f"{session_id}.lock"


def _lock_dock(station: Station, session_id: str) -> FileLock:
    path = _dock_lock_path(station, session_id)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        lock = try_lock(path)
    except OSError as e:
        raise StorageError(
            f"cannot make the dock's lock in {path.parent}: {e.strerror}",
            remedy="check that the data directory is writable by the station's user",
        ) from e
    if lock is None:  # a new dock's own file: only a copy of its id could hold it
        raise StorageError(f"the lock of dock {session_id} is held by another process")
    return lock


def recover_interrupted(station: Station) -> list[str]:
    """Docks of this station left `running` by a process that is gone (killed, crashed, a power
    cut), each marked interrupted with its custody event; their ids.

    A dock holds the lock on its file in the data directory until its row says how it ended,
    so a running dock whose lock is free has no process left to finish it. The update is made
    only while the row still says `running`: a dock that ends meanwhile keeps its own word."""
    recovered: list[str] = []
    with station.transaction() as session:
        running = session.exec(
            select(DockSession.id)
            .where(DockSession.station_id == station.settings.station_id)
            .where(DockSession.state == DockState.RUNNING)
        ).all()
        now = station.clock.now()
        for dock_id in running:
            if is_held(_dock_lock_path(station, dock_id)):
                continue
            marked = session.exec(
                update(DockSession)
                .where(col(DockSession.id) == dock_id)
                .where(col(DockSession.state) == DockState.RUNNING)
                .values(state=DockState.INTERRUPTED, finished_at=now, error=_GONE_DOCK)
            )
            if marked.rowcount == 1:
                recovered.append(dock_id)
        if not recovered:
            return []
        station.custody.append_many(
            session,
            [
                EventType.DOCK_FINISHED.event(
                    dock_id,
                    subject_kind=Subject.DOCK,
                    actor=station.actor,
                    reason=_GONE_DOCK,
                    data={
                        "dock_session": dock_id,
                        "state": DockState.INTERRUPTED.value,
                        "recovered": True,
                    },
                )
                for dock_id in recovered
            ],
        )
    for dock_id in recovered:
        _dock_lock_path(station, dock_id).unlink(missing_ok=True)
    return recovered


def _survey(
    station: Station, volume: Path, recorder_serial: str | None, warnings: list[str]
) -> _Survey:
    """List the volume, read its identity file and the facts in its file names."""
    settings = station.settings
    listing = list_volume(volume)
    identity_rel = settings.ingest.identity_file.encode()
    identity = _read_identity(volume, identity_rel, warnings)
    patterns = compile_patterns(settings.ingest.filename_patterns)
    # Times in file names are the recorder's local time: its own offset when the identity
    # file tells it, else the station's zone.
    recorder_tz = resolve_timezone(settings.timezone)
    if identity is not None and identity.utc_offset is not None:
        recorder_tz = timezone(identity.utc_offset)
    now = station.clock.now()
    facts = {f.rel: parse_filename(f.name, patterns, recorder_tz) for f in listing.files}
    serial = _recorder_serial(recorder_serial, identity, facts.values(), warnings)
    if serial is None:
        media = [f for f in listing.files if _media_kind(station, f) is not None]
        raise UnidentifiedVolumeError(media, warnings)
    skew = None
    if identity is not None and identity.device_time is not None:
        skew = identity.device_time - now
        if abs(skew.total_seconds()) > settings.dock.clock_skew_warn_seconds:
            warnings.append(
                f"recorder {serial} clock is off by {skew.total_seconds():+.0f} s; "
                "times are recorded as the recorder gave them and the skew is kept with each clip"
            )
    return _Survey(listing, identity_rel, identity, facts, serial, skew, now, warnings)


def _open_report(station: Station, dock: _Dock, volume: Path, survey: _Survey) -> IngestReport:
    """The dock's report before any file is read: the entries the listing skipped, a low spool."""
    report = IngestReport(
        dock.session_id, volume_text(volume), survey.serial, warnings=survey.warnings
    )
    report.clock_skew_seconds = survey.skew.total_seconds() if survey.skew is not None else None
    report.not_ingested.extend(
        NotIngested(s.display, s.reason, s.detail) for s in survey.listing.skipped
    )
    min_free = station.settings.ingest.min_spool_free_bytes
    if station.spool.free_bytes() < min_free:
        report.warnings.append(
            f"the spool at {station.spool.root} has less than "
            f"{min_free // 2**20} MiB free: free space before it fills"
        )
    return report


def _read_files(
    station: Station,
    dock: _Dock,
    volume: Path,
    survey: _Survey,
    report: IngestReport,
    cataloguer: _Cataloguer,
    progress: ProgressCallback | None,
    should_stop: Callable[[], str | None] | None,
) -> None:
    """Stage one for each file in turn: read it into the spool, or say why it is not read."""
    ingest = station.settings.ingest
    taken = _taken_before(station, dock)
    for file in survey.listing.files:
        # Between two files is the one clean place to stop (unplugged, agent stopping):
        # everything read so far is catalogued, the rest is read at the next dock.
        if should_stop is not None and (why := should_stop()) is not None:
            raise VolumeGoneError(why)
        kind = media_kind(
            file.name, ingest.video_patterns, ingest.photo_patterns, ingest.audio_patterns
        )
        skipped = _not_to_read(file, survey.identity_rel, kind)
        if skipped is not None:
            report.not_ingested.append(skipped)
            continue
        assert kind is not None  # _not_to_read skips what is not media
        copied = _copy_file(station, dock, volume, file, taken)
        if progress is not None:
            progress(file.size)
        if isinstance(copied, NotIngested):
            report.not_ingested.append(copied)
        elif isinstance(copied, ClipResult):
            cataloguer.add(copied)
        else:
            cataloguer.submit(file, kind, survey.facts[file.rel], copied)


def _not_to_read(file: VolumeFile, identity_rel: bytes, kind: str | None) -> NotIngested | None:
    if file.rel == identity_rel:
        return NotIngested(
            file.display, SkipReason.IDENTITY_FILE, "recorder identity, kept in the dock event"
        )
    if kind is None:
        return NotIngested(
            file.display, SkipReason.NOT_MEDIA, "not a configured video, photo or audio pattern"
        )
    if file.size == 0:
        return NotIngested(
            file.display, SkipReason.EMPTY, "zero bytes: nothing to preserve; check the recorder"
        )
    return None


# Tries at cataloguing one file: each lost race with another dock leaves rows the next finds.
_CATALOG_ATTEMPTS = 3

# Copies read but not yet through stage two, each holding an open partial file: at most this
# many, so a volume of thousands of small files cannot run the process out of descriptors.
_MAX_WAITING = 8


@dataclass(frozen=True)
class _Read:
    """A file stage one read into the spool, on its way through stage two."""

    file: VolumeFile
    kind: str
    facts: FilenameFacts
    copied: CopiedFile
    result: Future[ClipResult] = field(default_factory=Future)


class _Cataloguer:
    """Stage two on a thread of its own, so that cataloguing a file overlaps reading the next;
    its results, and those stage one gives at once, are kept in volume order.

    Stage two takes every file waiting for it together: their renames then wait for one fsync
    of the spool directory, and their rows and custody events for one commit, instead of one
    of each per file (on a volume of photos, those waits were most of a file's time)."""

    def __init__(
        self, station: Station, dock: _Dock, now: datetime, on_clip: ClipCallback | None
    ) -> None:
        self._station = station
        self._dock = dock
        self._now = now
        self._on_clip = on_clip
        self._queue: queue.SimpleQueue[_Read | None] = queue.SimpleQueue()
        self._results: list[ClipResult | Future[ClipResult]] = []
        self._waiting: deque[Future[ClipResult]] = deque()
        self._thread = threading.Thread(target=self._run, name="catalog", daemon=True)
        self._thread.start()

    def add(self, result: ClipResult) -> None:
        """A file an earlier dock took: its clip, if still waiting in the spool (a stop between
        the store's write and the catalog's), goes to the store as a new one would."""
        self._results.append(result)
        if self._on_clip is not None and result.state == ClipState.SPOOLED:
            self._on_clip(result.sha256)

    def submit(self, file: VolumeFile, kind: str, facts: FilenameFacts, copied: CopiedFile) -> None:
        read = _Read(file, kind, facts, copied)
        self._results.append(read.result)
        self._waiting.append(read.result)
        self._queue.put(read)
        # files are catalogued in order: the oldest is the first to wait for
        while len(self._waiting) > _MAX_WAITING:
            wait([self._waiting.popleft()])

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first]
            last = False
            with contextlib.suppress(queue.Empty):
                while not last:
                    read = self._queue.get_nowait()
                    if read is None:
                        last = True
                    else:
                        batch.append(read)
            try:
                self._catalog(batch)
            except Exception as e:  # noqa: BLE001 - handed to the reading thread, which raises it
                for read in batch:
                    if not read.result.done():
                        read.result.set_exception(e)
            if last:
                return

    def _catalog(self, batch: list[_Read]) -> None:
        """Stage two for the files in `batch`, each result (or error) handed to its future."""
        station = self._station
        durable: list[tuple[_Read, SpooledFile]] = []
        for read in batch:
            try:
                # fsync and rename before it is catalogued
                durable.append((read, station.spool.make_durable(read.copied, sync_dir=False)))
            except Exception as e:  # noqa: BLE001 - handed to the reading thread, which raises it
                read.result.set_exception(e)
        if not durable:
            return
        try:
            station.spool.sync_dir()  # every rename durable before any of them is catalogued
        except Exception as e:  # noqa: BLE001 - handed to the reading thread, which raises it
            for read, _ in durable:
                read.result.set_exception(e)
            return
        outcomes = _catalog_files(
            station, self._dock, [(r.file, r.kind, r.facts, s) for r, s in durable], self._now
        )
        for (read, _), outcome in zip(durable, outcomes, strict=True):
            if isinstance(outcome, Exception):
                read.result.set_exception(outcome)
                continue
            if self._on_clip is not None and outcome.state == ClipState.SPOOLED:
                self._on_clip(outcome.sha256)
            read.result.set_result(outcome)

    def collect(self, report: IngestReport, *, raise_errors: bool = True) -> None:
        """Add the results so far to the report, in volume order, once each is done; then raise
        the first error a file's cataloguing raised (unless told not to)."""
        first_error: Exception | None = None
        for result in self._results:
            if isinstance(result, ClipResult):
                report.clips.append(result)
                continue
            try:
                report.clips.append(result.result())
            except Exception as e:  # noqa: BLE001 - kept, and raised below (or by the caller's own)
                first_error = first_error or e
        self._results.clear()
        if first_error is not None and raise_errors:
            raise first_error

    def shutdown(self) -> None:
        self._queue.put(None)
        self._thread.join()


def _read_identity(volume: Path, rel: bytes, warnings: list[str]) -> RecorderIdentity | None:
    try:
        data = read_small_file(volume, rel, MAX_IDENTITY_BYTES)
        return parse_identity(data) if data is not None else None
    except InputError as e:
        warnings.append(f"identity file {display_path(rel)} ignored: {e}")
        return None


def _recorder_serial(
    given: str | None,
    identity: RecorderIdentity | None,
    facts: Iterable[FilenameFacts],
    warnings: list[str],
) -> str | None:
    """The recorder's serial: as given, else the identity file's, else the file names'."""
    from_names = Counter(f.serial for f in facts if f.serial is not None)
    named = from_names.most_common(1)[0][0] if from_names else None
    if given is not None:
        check_serial(given, what="--recorder")
        if identity is not None and identity.serial != given:
            warnings.append(
                f"--recorder {given} disagrees with the identity file's serial {identity.serial}; using {given}"
            )
        return given
    if identity is not None:
        return identity.serial
    return named


def _start_dock(
    station: Station, session: Session, session_id: str, survey: _Survey, volume: Path, source: str
) -> _Dock:
    now = station.clock.now()
    serial, identity, skew = survey.serial, survey.identity, survey.skew
    unit_id = None
    if identity is not None and identity.unit_code:
        unit_id = _unit(session, identity.unit_code, identity.unit_name or "").id
    recorder = _get_or_create(
        session,
        Recorder,
        Recorder.serial == serial,
        lambda: Recorder(
            serial=serial,
            unit_id=unit_id,
            vendor=(identity.vendor if identity else None) or "",
            model=(identity.model if identity else None) or "",
        ),
    )
    if recorder.unit_id is None and unit_id is not None:
        recorder.unit_id = unit_id
    if identity is not None and identity.badge:
        _officer(session, identity.badge, identity.officer_name or "", recorder.unit_id or unit_id)
    recorder.last_docked_at = now
    session.add(recorder)
    dock = session.get(DockSession, session_id)
    if dock is None:
        dock = DockSession(
            id=session_id,
            station_id=station.settings.station_id,
            source=source,
            volume=volume_text(volume),
            started_at=now,
        )
    elif not _claim_unidentified(session, session_id):
        raise InputError(f"dock {session_id} is {dock.state}, not waiting for identification")
    # An unidentified dock, now read, keeps its start: the recorder came then.
    dock.recorder_id = recorder.id
    dock.actor = station.actor
    dock.state = DockState.RUNNING
    dock.error = None
    dock.clock_skew_seconds = skew.total_seconds() if skew is not None else None
    session.add(dock)
    session.flush()
    station.record(
        session,
        EventType.DOCK_STARTED.event(
            serial,
            actor=station.actor,
            reason=f"recorder docked ({source})",
            data={
                "dock_session": dock.id,
                "volume": volume_text(volume),
                "identity": _identity_json(identity),
                "clock_skew_seconds": dock.clock_skew_seconds,
            },
        ),
    )
    return _Dock(dock.id, recorder, identity, recorder.unit_id or unit_id, skew)


def _claim_unidentified(session: Session, session_id: str) -> bool:
    """Whether this dock takes the unidentified dock `session_id`: only one of several
    (the daemon seeing an identity file, an operator) can, and only while it waits."""
    claimed = session.exec(
        update(DockSession)
        .where(col(DockSession.id) == session_id)
        .where(col(DockSession.state) == DockState.UNIDENTIFIED)
        .values(state=DockState.RUNNING)
    )
    return claimed.rowcount == 1


def _identity_json(identity: RecorderIdentity | None) -> dict[str, Any] | None:
    """The identity file as the dock.started event keeps it."""
    if identity is None:
        return None
    return {
        "serial": identity.serial,
        "badge": identity.badge,
        "officer_name": identity.officer_name,
        "unit_code": identity.unit_code,
        "unit_name": identity.unit_name,
        "device_time": format_time(identity.device_time) if identity.device_time else None,
    }


def _get_or_create(
    session: Session, model: type[_Row], where: Any, make: Callable[[], _Row]
) -> _Row:
    """The row matching `where`, made when missing. Stations sharing a catalog may make the same
    unit, officer or recorder at the same moment: the loser of that race uses the winner's row."""
    row = session.exec(select(model).where(where)).first()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = make()
            session.add(row)
            session.flush()
    except sa_exc.IntegrityError:
        row = session.exec(select(model).where(where)).one()
    return row


def _unit(session: Session, code: str, name: str) -> Unit:
    unit = _get_or_create(session, Unit, Unit.code == code, lambda: Unit(code=code, name=name))
    if name and not unit.name:
        unit.name = name
        session.add(unit)
    return unit


def _officer(session: Session, badge: str, name: str, unit_id: int | None) -> Officer:
    officer = _get_or_create(
        session,
        Officer,
        Officer.badge == badge,
        lambda: Officer(badge=badge, name=name, unit_id=unit_id),
    )
    if (name and not officer.name) or (unit_id and not officer.unit_id):
        officer.name = officer.name or name
        officer.unit_id = officer.unit_id or unit_id
        session.add(officer)
    return officer


def assigned_officer(session: Session, recorder_id: int, at: datetime) -> Officer | None:
    """Who held the recorder at that moment, by the assignment registry."""
    row = session.exec(
        select(RecorderAssignment)
        .where(RecorderAssignment.recorder_id == recorder_id)
        .where(RecorderAssignment.start <= at)
        .where((col(RecorderAssignment.end).is_(None)) | (col(RecorderAssignment.end) > at))
        .order_by(col(RecorderAssignment.start).desc())
    ).first()
    return session.get(Officer, row.officer_id) if row is not None else None


def _taken_before(station: Station, dock: _Dock) -> dict[tuple[bytes, int, int], str]:
    """The files earlier docks took from this recorder: (path, size, mtime) -> clip id.

    Asked once for the dock, not once for each file: on a volume of small files that query was
    a good part of each file's time."""
    with station.reading() as session:
        rows = session.exec(
            select(
                ClipSource.source_path_bytes,
                ClipSource.size,
                ClipSource.mtime_ns,
                ClipSource.clip_id,
            ).where(ClipSource.recorder_id == dock.recorder.id)
        )
        return {(rel, size, mtime): clip_id for rel, size, mtime, clip_id in rows}


def _copy_file(
    station: Station,
    dock: _Dock,
    volume: Path,
    file: VolumeFile,
    taken: dict[tuple[bytes, int, int], str],
) -> CopiedFile | ClipResult | NotIngested:
    """Stage one: the file read once into the spool, unless an earlier dock already took it
    (`taken`, from _taken_before).

    The copy is not yet durable: stage two makes it so before cataloguing it, while this stage
    reads the next file."""
    seen = taken.get((file.rel, file.size, file.mtime_ns))
    lost: Clip | None = None
    if seen is not None:
        with station.reading() as session:
            clip = session.get(Clip, seen)
        assert clip is not None  # a foreign key
        if not _spool_copy_lost(station, clip):
            return _result(clip, file, ClipOutcome.ALREADY_INGESTED)
        lost = clip

    try:
        copied = station.spool.read_in(volume, file.rel)
    except FileNotFoundError:
        return NotIngested(file.display, SkipReason.VANISHED, "gone before it could be read")
    except OSError as e:
        if e.errno == 40:  # ELOOP: swapped for a symlink after listing
            return NotIngested(
                file.display, SkipReason.SYMLINK, "became a symbolic link; not followed"
            )
        # One file the recorder cannot give (a bad sector, a damaged file): the rest is read.
        return NotIngested(file.display, SkipReason.UNREADABLE, f"read error: {error_text(e)}")
    except InputError as e:
        if isinstance(e, VolumeGoneError):
            raise
        return NotIngested(file.display, SkipReason.SPECIAL_FILE, e.message)
    if lost is not None:
        return _spool_copy_anew(station, dock, file, lost, copied)
    return copied


def _spool_copy_lost(station: Station, clip: Clip) -> bool:
    """A clip of this station still owed to the store whose spool copy is gone (set aside for
    not matching its ingest hash): its original, never cleared, is read again."""
    return (
        clip.state == ClipState.SPOOLED
        and clip.station_id == station.settings.station_id
        and not station.spool.path_of(clip.sha256).exists()
    )


def _spool_copy_anew(
    station: Station, dock: _Dock, file: VolumeFile, clip: Clip, copied: CopiedFile
) -> ClipResult:
    """The original read again for a clip whose spool copy was lost: the same bytes take the
    spool copy's place (the upload queue stores them); other bytes are dropped and logged."""
    if not hmac.compare_digest(copied.sha256, clip.sha256):
        station.spool.discard(copied)
        log.error(
            "clip %s: %s read again from the recorder has SHA-256 %s, not its ingest hash %s; "
            "the clip still waits for a copy that matches",
            clip.id,
            file.display,
            copied.sha256,
            clip.sha256,
        )
        return _result(clip, file, ClipOutcome.ALREADY_INGESTED)
    station.spool.make_durable(copied)
    with station.transaction() as session:
        station.record(
            session,
            EventType.CLIP_SEEN_AGAIN.event(
                clip.id,
                actor=station.actor,
                reason="read again from the docked recorder to replace a spool copy that was "
                "lost or did not match the ingest hash; the same SHA-256",
                sha256=clip.sha256,
                data={
                    "recorder": dock.recorder.serial,
                    "source_path": file.display,
                    "dock_session": dock.session_id,
                },
            ),
        )
    log.warning("clip %s: spool copy read again from %s", clip.id, file.display)
    return _result(clip, file, ClipOutcome.ALREADY_INGESTED)


@dataclass(frozen=True)
class _Examined:
    """What stage two learns of a spooled file before cataloguing it: media, times, flags."""

    media: MediaInfo
    probe_error: str | None
    start: datetime
    end: datetime
    time_source: str
    flags: set[str]  # the officer's flags are added when the clip is attributed


_Entry = tuple[VolumeFile, str, FilenameFacts, SpooledFile]  # a file, its kind, its name's facts


def _catalog_files(
    station: Station, dock: _Dock, entries: list[_Entry], now: datetime
) -> list[ClipResult | Exception]:
    """Stage two for durable spool copies: probe and tag each, then catalogue them with their
    custody events in one transaction; should that fail, each in a transaction of its own, so
    that an error is the file's that caused it and the others are catalogued."""
    examined: list[tuple[_Entry, _Examined]] = []
    outcomes: dict[int, ClipResult | Exception] = {}
    for i, entry in enumerate(entries):
        file, _, facts, spooled = entry
        try:
            examined.append((entry, _examine(station, dock, file, facts, now, spooled)))
        except Exception as e:  # noqa: BLE001 - the file's own outcome, raised by the reader
            outcomes[i] = e
    together: list[ClipResult | Exception] = []
    try:
        together.extend(_catalog_examined(station, dock, examined, now))
    except Exception:  # noqa: BLE001 - each file is tried alone, and raises its own error
        for one in examined:
            try:
                together.append(_catalog_alone(station, dock, one, now))
            except Exception as e:  # noqa: BLE001 - the file's own outcome, raised by the reader
                together.append(e)
    left = iter(together)
    return [outcomes[i] if i in outcomes else next(left) for i in range(len(entries))]


def _catalog_alone(
    station: Station, dock: _Dock, examined: tuple[_Entry, _Examined], now: datetime
) -> ClipResult:
    file = examined[0][0]
    for _ in range(_CATALOG_ATTEMPTS):
        try:
            [result] = _catalog_examined(station, dock, [examined], now)
        except sa_exc.IntegrityError as e:
            # Another dock (of this recorder, or with the same content) catalogued it in the
            # meantime: the next attempt finds its rows and takes the clip as known.
            conflict = e
        else:
            return result
    raise StorageError(
        f"cannot catalogue {file.display}: the catalog refused it {_CATALOG_ATTEMPTS} "
        f"times ({conflict.orig})",
        remedy="dock the recorder again; the file stays on it",
    ) from conflict


def _catalog_examined(
    station: Station, dock: _Dock, examined: list[tuple[_Entry, _Examined]], now: datetime
) -> list[ClipResult]:
    """Each file's clip and custody event (or, for content already catalogued, its sighting),
    all in one transaction."""
    results: list[ClipResult] = []
    with station.transaction() as session:
        hashes = [spooled.sha256 for (_, _, _, spooled), _ in examined]
        known = {
            clip.sha256: clip
            for clip in session.exec(select(Clip).where(col(Clip.sha256).in_(hashes)))
        }
        officers: dict[str, Officer] = {}  # by badge, for this transaction
        for (file, kind, facts, spooled), seen in examined:
            existing = known.get(spooled.sha256)
            if existing is not None:  # catalogued before, or earlier in this batch
                results.append(_known(station, session, dock, existing, file))
                continue
            clip = _new_clip(
                station, session, dock, file, kind, facts, now, spooled, seen, officers
            )
            known[clip.sha256] = clip
            results.append(
                ClipResult(
                    clip.id,
                    file.display,
                    clip.sha256,
                    clip.size,
                    ClipState.SPOOLED,
                    tuple(sorted(seen.flags)),
                    ClipOutcome.NEW,
                )
            )
    for result in results:
        if result.outcome == ClipOutcome.NEW:
            log.info("clip %s %s from %s", result.clip_id, result.sha256[:12], result.source_path)
    return results


def _new_clip(
    station: Station,
    session: Session,
    dock: _Dock,
    file: VolumeFile,
    kind: str,
    facts: FilenameFacts,
    now: datetime,
    spooled: SpooledFile,
    seen: _Examined,
    officers: dict[str, Officer],
) -> Clip:
    """One file's clip row, its source row and its custody event, in the caller's transaction."""
    clip_id = str(uuid.uuid4())
    officer = _attribute(session, dock, facts, seen, officers)
    clip = _clip_row(clip_id, station, dock, file, kind, facts, now, spooled, seen, officer)
    session.add(clip)
    session.add(_source_row(clip_id, dock.recorder.id, file, dock.session_id, now))
    session.flush()
    unit = session.get(Unit, clip.unit_id) if clip.unit_id else None
    station.record(
        session,
        ingest_event(clip, station.actor, dock.recorder.serial, officer, unit, seen.probe_error),
    )
    return clip


def _examine(
    station: Station,
    dock: _Dock,
    file: VolumeFile,
    facts: FilenameFacts,
    now: datetime,
    spooled: SpooledFile,
) -> _Examined:
    """Probe the spooled copy, place it in time, and flag what a reviewer should know of it."""
    flags: set[str] = set()
    if spooled.changed_during_copy:
        flags.add(Flag.CHANGED_DURING_COPY)
    media = MediaInfo()
    probe_error = None
    try:
        media = station.prober.probe(spooled.path)
    except EvidenceError as e:
        flags.add(Flag.UNREADABLE_MEDIA)
        probe_error = e.message
    start, time_source = _recording_start(facts, media, file)
    if time_source == "file_mtime":
        flags.add(Flag.TIME_FROM_FILE_MTIME)
    end = start + timedelta(seconds=media.duration_seconds or 0)
    flags |= _timing_flags(station, dock, facts, media, start, end, now)
    if facts.serial and facts.serial != dock.recorder.serial:
        flags.add(Flag.RECORDER_MISMATCH)
    return _Examined(media, probe_error, start, end, time_source, flags)


def _recording_start(
    facts: FilenameFacts, media: MediaInfo, file: VolumeFile
) -> tuple[datetime, str]:
    """When the recording started and what says so: the file name, else the container, else
    the file's mtime."""
    if facts.start is not None:
        return facts.start, "filename"
    if media.creation_time is not None:
        return media.creation_time, "container"
    return datetime.fromtimestamp(file.mtime_ns / 1e9, UTC), "file_mtime"


def _timing_flags(
    station: Station,
    dock: _Dock,
    facts: FilenameFacts,
    media: MediaInfo,
    start: datetime,
    end: datetime,
    now: datetime,
) -> set[str]:
    """Flags on the clip's times: disagreeing sources, the future, a skewed clock, lateness."""
    flags: set[str] = set()
    if (
        facts.start is not None
        and media.creation_time is not None
        and abs(facts.start - media.creation_time) > NAME_CONTAINER_TOLERANCE
    ):
        flags.add(Flag.NAME_MISMATCH)
    if start > now + FUTURE_TOLERANCE:
        flags.add(Flag.FUTURE_TIMESTAMP)
    settings = station.settings
    if (
        dock.skew is not None
        and abs(dock.skew.total_seconds()) > settings.dock.clock_skew_warn_seconds
    ):
        flags.add(Flag.CLOCK_SKEW)
    rule = DeadlineRule(
        limit=timedelta(hours=settings.deadline.limit_hours),
        warn=timedelta(hours=settings.deadline.warn_hours),
    )
    if lateness(end, now, rule) is not None:
        flags.add(Flag.LATE)
    return flags


def _attribute(
    session: Session,
    dock: _Dock,
    facts: FilenameFacts,
    seen: _Examined,
    officers: dict[str, Officer],
) -> Officer | None:
    """Whose footage it is: the recorder's assignment when it was recorded, else the badge in
    the file name or identity file; a disagreement or no officer at all is flagged. `officers`
    keeps those found by badge in this transaction."""
    recorder_id = dock.recorder.id
    officer = assigned_officer(session, recorder_id, seen.start) if recorder_id else None
    badge = facts.badge or (dock.identity.badge if dock.identity else None)
    if officer is not None and badge and officer.badge != badge:
        seen.flags.add(Flag.OFFICER_MISMATCH)
    if officer is None and badge:
        officer = officers.get(badge)
        if officer is None:
            officer = officers[badge] = _officer(session, badge, "", dock.unit_id)
    if officer is None:
        seen.flags.add(Flag.NO_OFFICER)
    return officer


def _clip_row(
    clip_id: str,
    station: Station,
    dock: _Dock,
    file: VolumeFile,
    kind: str,
    facts: FilenameFacts,
    now: datetime,
    spooled: SpooledFile,
    seen: _Examined,
    officer: Officer | None,
) -> Clip:
    media = seen.media
    retention = retention_at_cataloguing(seen.end, now, facts.important, station.settings.retention)
    return Clip(
        id=clip_id,
        sha256=spooled.sha256,
        blake3=spooled.blake3,
        sm3=spooled.sm3,
        size=spooled.size,
        media_kind=kind,
        source_path=file.display,
        source_path_bytes=file.rel,
        source_mtime=datetime.fromtimestamp(file.mtime_ns / 1e9, UTC),
        format_name=media.format_name,
        video_codec=media.video_codec,
        audio_codec=media.audio_codec,
        width=media.width,
        height=media.height,
        duration_seconds=media.duration_seconds,
        recorded_start=seen.start,
        recorded_end=seen.end,
        time_source=seen.time_source,
        clock_skew_seconds=dock.skew.total_seconds() if dock.skew is not None else None,
        important=facts.important,
        unit_id=dock.unit_id or (officer.unit_id if officer else None),
        recorder_id=dock.recorder.id,
        officer_id=officer.id if officer else None,
        dock_session_id=dock.session_id,
        station_id=station.settings.station_id,
        ingested_at=now,
        state=ClipState.SPOOLED,
        flags=json.dumps(sorted(seen.flags)),
        retention_class=retention.cls.value,
        retention_until=retention.until,
    )


def ingest_event(
    clip: Clip,
    actor: str,
    recorder_serial: str,
    officer: Officer | None,
    unit: Unit | None,
    probe_error: str | None = None,
) -> CustodyEvent:
    """The event of a clip's ingest: `verify` and retrievals check the catalog row against it."""
    return EventType.CLIP_INGESTED.event(
        clip.id,
        actor=actor,
        reason="read once from the docked recorder into the spool, hashed and catalogued",
        sha256=clip.sha256,
        data=ingest_event_data(clip, recorder_serial, officer, unit, probe_error),
    )


def ingest_event_data(
    clip: Clip,
    recorder_serial: str,
    officer: Officer | None,
    unit: Unit | None,
    probe_error: str | None = None,
) -> dict[str, Any]:
    """What the ingest event fixes about a clip; `verify` cross-checks the catalog against it."""
    return {
        "size": clip.size,
        "blake3": clip.blake3,
        "sm3": clip.sm3,
        "media_kind": clip.media_kind,
        "source_path": clip.source_path,
        "source_path_hex": clip.source_path_bytes.hex(),
        "recorded_start": format_time(clip.recorded_start) if clip.recorded_start else None,
        "recorded_end": format_time(clip.recorded_end) if clip.recorded_end else None,
        "time_source": clip.time_source,
        "duration_seconds": clip.duration_seconds,
        "ingested_at": format_time(clip.ingested_at),
        "recorder": recorder_serial,
        "officer": officer.badge if officer else None,
        "unit": unit.code if unit else None,
        "important": clip.important,
        "flags": json.loads(clip.flags),
        "dock_session": clip.dock_session_id,
        "probe_error": probe_error,
        "retention_class": clip.retention_class,
        "retention_until": format_time(clip.retention_until) if clip.retention_until else None,
    }


def _source_row(
    clip_id: str, recorder_id: int | None, file: VolumeFile, dock_id: str, now: datetime
) -> ClipSource:
    return ClipSource(
        clip_id=clip_id,
        recorder_id=recorder_id,
        source_path_bytes=file.rel,
        size=file.size,
        mtime_ns=file.mtime_ns,
        dock_session_id=dock_id,
        seen_at=now,
    )


def _known(
    station: Station, session: Session, dock: _Dock, clip: Clip, file: VolumeFile
) -> ClipResult:
    """Content already catalogued: no second clip; the sighting is remembered and recorded,
    unless another dock of this recorder took this very file while this one read it."""
    taken = session.exec(
        select(ClipSource.id)
        .where(ClipSource.recorder_id == dock.recorder.id)
        .where(ClipSource.source_path_bytes == file.rel)
        .where(ClipSource.size == file.size)
        .where(ClipSource.mtime_ns == file.mtime_ns)
    ).first()
    outcome = ClipOutcome.ALREADY_INGESTED if taken is not None else ClipOutcome.DUPLICATE
    if taken is None:
        session.add(
            _source_row(clip.id, dock.recorder.id, file, dock.session_id, station.clock.now())
        )
        station.record(
            session,
            EventType.CLIP_SEEN_AGAIN.event(
                clip.id,
                actor=station.actor,
                reason="the same content was found on a docked recorder; no second clip was made",
                sha256=clip.sha256,
                data={
                    "recorder": dock.recorder.serial,
                    "source_path": file.display,
                    "dock_session": dock.session_id,
                },
            ),
        )
    if clip.state == ClipState.STORED:
        station.spool.remove(clip.sha256)  # the copy just read is not needed: the store has it
    return _result(clip, file, outcome)


def _result(clip: Clip, file: VolumeFile, outcome: ClipOutcome) -> ClipResult:
    return ClipResult(
        clip.id,
        file.display,
        clip.sha256,
        clip.size,
        clip.state,
        tuple(json.loads(clip.flags)),
        outcome,
    )


def _finish_dock(
    station: Station,
    dock: _Dock,
    report: IngestReport,
    finishing: Callable[[DockSession], None] | None,
    error: str | None = None,
) -> None:
    with station.transaction() as session:
        row = session.get(DockSession, dock.session_id)
        assert row is not None
        row.finished_at = station.clock.now()
        row.state = report.state
        row.error = error
        row.files_seen = len(report.clips) + len(report.not_ingested)
        row.clips_new = report.clips_new
        row.clips_known = len(report.clips) - row.clips_new
        row.files_not_ingested = len(report.not_ingested)
        row.warnings = json.dumps(report.warnings, ensure_ascii=False)
        if finishing is not None:
            finishing(row)
        session.add(row)
        serial = dock.recorder.serial
        events = [
            EventType.FILE_NOT_INGESTED.event(
                serial,
                actor=station.actor,
                reason=str(n.reason),  # a SkipReason: the log takes plain strings
                data={
                    "source_path": n.source_path,
                    "detail": n.detail,
                    "dock_session": dock.session_id,
                },
            )
            for n in report.not_ingested
        ]
        events.append(
            EventType.DOCK_FINISHED.event(
                serial,
                actor=station.actor,
                reason=error or f"dock {report.state}",
                data={
                    "dock_session": dock.session_id,
                    "state": report.state.value,
                    "clips_new": row.clips_new,
                    "clips_known": row.clips_known,
                    "files_not_ingested": row.files_not_ingested,
                },
            )
        )
        station.custody.append_many(session, events)
        station.custody.checkpoint(session)
    # After the commit: the checkpoint goes to the bucket under Object Lock (S3 store); when the
    # store is away it stays in the catalog and goes with the upload queue's next retry.
    publish_checkpoints(station)
