"""Ingest service: a mounted recorder volume becomes hashed, tagged, catalogued clips."""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
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
from evidence_agent.custody.vocabulary import EventType
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
from evidence_agent.errors import EvidenceError, ExitCode, InputError
from evidence_agent.io.spool import CopiedFile, SpooledFile
from evidence_agent.io.volume_reader import (
    VolumeFile,
    VolumeGoneError,
    VolumeListing,
    display_path,
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
    ingest = station.settings.ingest
    return sum(
        f.size
        for f in list_volume(volume).files
        if media_kind(f.name, ingest.video_patterns, ingest.photo_patterns, ingest.audio_patterns)
    )


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
) -> IngestReport:
    """Read every media file of the volume once, catalogue it with its custody event.

    A file already taken from this recorder on an earlier dock is not read again; content
    already in the catalog makes no second clip. `on_clip` is told each new clip's SHA-256 so
    a store worker can start on it while the next file is copied. `should_stop` is asked before
    each file; a reason ends the dock as interrupted (VolumeGoneError). `warnings` are the
    caller's own about this dock (the daemon's identity check): they go into the report and the
    dock's row with the ingest's. `finishing` is given the dock's row in the transaction that
    finishes it, for what the caller knows of the dock (progress, the device): whoever sees the
    dock finished sees all of it."""
    survey = _survey(station, volume, recorder_serial, list(warnings))
    with station.transaction() as session:
        dock = _start_dock(station, session, survey, volume, source)
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
    except EvidenceError as e:
        cataloguer.collect(report, raise_errors=False)
        report.state = DockState.FAILED
        _finish_dock(station, dock, report, finishing, error=e.message)
        raise
    finally:
        cataloguer.shutdown()
    _finish_dock(station, dock, report, finishing)
    return report


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
        copied = _copy_file(station, dock, volume, file)
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


# Copies read but not yet through stage two, each holding an open partial file: at most this
# many, so a volume of thousands of small files cannot run the process out of descriptors.
_MAX_WAITING = 8


class _Cataloguer:
    """Stage two on a thread of its own, so that cataloguing a file overlaps reading the next;
    its results, and those stage one gives at once, are kept in volume order."""

    def __init__(
        self, station: Station, dock: _Dock, now: datetime, on_clip: ClipCallback | None
    ) -> None:
        self._station = station
        self._dock = dock
        self._now = now
        self._on_clip = on_clip
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog")
        self._results: list[ClipResult | Future[ClipResult]] = []

    def add(self, result: ClipResult) -> None:
        self._results.append(result)

    def submit(self, file: VolumeFile, kind: str, facts: FilenameFacts, copied: CopiedFile) -> None:
        self._results.append(self._pool.submit(self._catalog, file, kind, facts, copied))
        waiting = [r for r in self._results if isinstance(r, Future) and not r.done()]
        if len(waiting) > _MAX_WAITING:
            wait(waiting[: len(waiting) - _MAX_WAITING])

    def _catalog(
        self, file: VolumeFile, kind: str, facts: FilenameFacts, copied: CopiedFile
    ) -> ClipResult:
        station = self._station
        spooled = station.spool.make_durable(copied)  # fsync and rename before it is catalogued
        result = _catalog_file(station, self._dock, file, kind, facts, self._now, spooled)
        if self._on_clip is not None and result.state == ClipState.SPOOLED:
            self._on_clip(result.sha256)
        return result

    def collect(self, report: IngestReport, *, raise_errors: bool = True) -> None:
        """Add the results so far to the report, in volume order, once each is done; then raise
        the first error a file's cataloguing raised (unless told not to)."""
        first_error: EvidenceError | None = None
        for result in self._results:
            if isinstance(result, ClipResult):
                report.clips.append(result)
                continue
            try:
                report.clips.append(result.result())
            except EvidenceError as e:
                first_error = first_error or e
        self._results.clear()
        if first_error is not None and raise_errors:
            raise first_error

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


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
) -> str:
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
    if named is not None:
        return named
    raise InputError(
        "cannot tell which recorder this volume is from: no identity file and no serial in the file names",
        remedy="pass --recorder SERIAL (see docs/recorder-identity.md)",
    )


def _start_dock(
    station: Station, session: Session, survey: _Survey, volume: Path, source: str
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
    dock = DockSession(
        id=str(uuid.uuid4()),
        station_id=station.settings.station_id,
        recorder_id=recorder.id,
        source=source,
        volume=volume_text(volume),
        actor=station.actor,
        started_at=now,
        clock_skew_seconds=skew.total_seconds() if skew is not None else None,
    )
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


def _copy_file(
    station: Station, dock: _Dock, volume: Path, file: VolumeFile
) -> CopiedFile | ClipResult | NotIngested:
    """Stage one: the file read once into the spool, unless an earlier dock already took it.

    The copy is not yet durable: stage two makes it so before cataloguing it, while this stage
    reads the next file."""
    recorder_id = dock.recorder.id
    with station.reading() as session:
        seen = session.exec(
            select(ClipSource)
            .where(ClipSource.recorder_id == recorder_id)
            .where(ClipSource.source_path_bytes == file.rel)
            .where(ClipSource.size == file.size)
            .where(ClipSource.mtime_ns == file.mtime_ns)
        ).first()
        if seen is not None:
            clip = session.get(Clip, seen.clip_id)
            assert clip is not None  # a foreign key
            return _result(clip, file, ClipOutcome.ALREADY_INGESTED)

    try:
        copied = station.spool.read_in(volume, file.rel)
    except FileNotFoundError:
        return NotIngested(file.display, SkipReason.VANISHED, "gone before it could be read")
    except OSError as e:
        if e.errno == 40:  # ELOOP: swapped for a symlink after listing
            return NotIngested(
                file.display, SkipReason.SYMLINK, "became a symbolic link; not followed"
            )
        return NotIngested(file.display, SkipReason.UNREADABLE, e.strerror or str(e))
    except InputError as e:
        if isinstance(e, VolumeGoneError):
            raise
        return NotIngested(file.display, SkipReason.SPECIAL_FILE, e.message)
    return copied


@dataclass(frozen=True)
class _Examined:
    """What stage two learns of a spooled file before cataloguing it: media, times, flags."""

    media: MediaInfo
    probe_error: str | None
    start: datetime
    end: datetime
    time_source: str
    flags: set[str]  # the officer's flags are added when the clip is attributed


def _catalog_file(
    station: Station,
    dock: _Dock,
    file: VolumeFile,
    kind: str,
    facts: FilenameFacts,
    now: datetime,
    spooled: SpooledFile,
) -> ClipResult:
    """Stage two: probe, tag and catalogue with its custody event, in one transaction."""
    seen = _examine(station, dock, file, facts, now, spooled)
    clip_id = str(uuid.uuid4())
    try:
        with station.transaction() as session:
            existing = session.exec(select(Clip).where(Clip.sha256 == spooled.sha256)).first()
            if existing is not None:
                return _known(station, session, dock, existing, file)
            officer = _attribute(session, dock, facts, seen)
            clip = _clip_row(clip_id, station, dock, file, kind, facts, now, spooled, seen, officer)
            session.add(clip)
            session.add(_source_row(clip_id, dock.recorder.id, file, dock.session_id, now))
            session.flush()
            unit = session.get(Unit, clip.unit_id) if clip.unit_id else None
            station.record(
                session,
                ingest_event(
                    clip, station.actor, dock.recorder.serial, officer, unit, seen.probe_error
                ),
            )
    except sa_exc.IntegrityError:
        # Another dock catalogued the same content in the meantime: it is a known clip now.
        with station.transaction() as session:
            existing = session.exec(select(Clip).where(Clip.sha256 == spooled.sha256)).first()
            if existing is None:
                raise
            return _known(station, session, dock, existing, file)
    log.info("clip %s %s from %s", clip_id, spooled.sha256[:12], file.display)
    return ClipResult(
        clip_id,
        file.display,
        spooled.sha256,
        spooled.size,
        ClipState.SPOOLED,
        tuple(sorted(seen.flags)),
        ClipOutcome.NEW,
    )


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
    session: Session, dock: _Dock, facts: FilenameFacts, seen: _Examined
) -> Officer | None:
    """Whose footage it is: the recorder's assignment when it was recorded, else the badge in
    the file name or identity file; a disagreement or no officer at all is flagged."""
    recorder_id = dock.recorder.id
    officer = assigned_officer(session, recorder_id, seen.start) if recorder_id else None
    badge = facts.badge or (dock.identity.badge if dock.identity else None)
    if officer is not None and badge and officer.badge != badge:
        seen.flags.add(Flag.OFFICER_MISMATCH)
    if officer is None and badge:
        officer = _officer(session, badge, "", dock.unit_id)
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
    """Content already catalogued: no second clip; the sighting is remembered and recorded."""
    session.add(_source_row(clip.id, dock.recorder.id, file, dock.session_id, station.clock.now()))
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
    return _result(clip, file, ClipOutcome.DUPLICATE)


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
