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
from evidence_agent.errors import EvidenceError, ExitCode, InputError
from evidence_agent.io.spool import CopiedFile, SpooledFile
from evidence_agent.io.volume_reader import (
    VolumeFile,
    VolumeGoneError,
    display_path,
    list_volume,
    read_small_file,
    volume_text,
)
from evidence_agent.services.station import Station
from evidence_agent.services.storing import publish_checkpoints

log = logging.getLogger(__name__)

_Row = TypeVar("_Row", Unit, Officer, Recorder)

STANDARD_RETENTION = timedelta(days=183)
IMPORTANT_RETENTION = timedelta(days=3 * 365)
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
    state: str
    flags: tuple[str, ...]
    outcome: (
        str  # "new", "known" (already catalogued), "already_ingested" (seen on an earlier dock)
    )

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
    state: str = "finished"

    @property
    def exit_code(self) -> ExitCode:
        noisy = [n for n in self.not_ingested if n.reason not in _QUIET_REASONS]
        if self.warnings or noisy or any(c.flags for c in self.clips if c.outcome == "new"):
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
    settings = station.settings
    listing = list_volume(volume)
    report_skips = [NotIngested(s.display, s.reason, s.detail) for s in listing.skipped]
    warnings = list(warnings)
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

    with station.transaction() as session:
        dock = _start_dock(station, session, serial, identity, volume, source, skew)
    report = IngestReport(dock.session_id, volume_text(volume), serial, warnings=warnings)
    report.clock_skew_seconds = skew.total_seconds() if skew is not None else None
    report.not_ingested.extend(report_skips)
    if station.spool.free_bytes() < settings.ingest.min_spool_free_bytes:
        report.warnings.append(
            f"the spool at {station.spool.root} has less than "
            f"{settings.ingest.min_spool_free_bytes // 2**20} MiB free: free space before it fills"
        )
    ingest = settings.ingest
    catalogued: list[Future[ClipResult]] = []
    cataloguer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog")
    try:
        for file in listing.files:
            # Between two files is the one clean place to stop (unplugged, agent stopping):
            # everything read so far is catalogued, the rest is read at the next dock.
            if should_stop is not None and (why := should_stop()) is not None:
                raise VolumeGoneError(why)
            if file.rel == identity_rel:
                report.not_ingested.append(
                    NotIngested(
                        file.display,
                        SkipReason.IDENTITY_FILE,
                        "recorder identity, kept in the dock event",
                    )
                )
                continue
            kind = media_kind(
                file.name, ingest.video_patterns, ingest.photo_patterns, ingest.audio_patterns
            )
            if kind is None:
                report.not_ingested.append(
                    NotIngested(
                        file.display,
                        SkipReason.NOT_MEDIA,
                        "not a configured video, photo or audio pattern",
                    )
                )
                continue
            if file.size == 0:
                report.not_ingested.append(
                    NotIngested(
                        file.display,
                        SkipReason.EMPTY,
                        "zero bytes: nothing to preserve; check the recorder",
                    )
                )
                continue
            copied = _copy_file(station, dock, volume, file)
            if progress is not None:
                progress(file.size)
            if isinstance(copied, NotIngested):
                report.not_ingested.append(copied)
            elif isinstance(copied, ClipResult):
                report.clips.append(copied)
            else:
                # Probing and cataloguing this file overlaps the copy of the next one.
                catalogued.append(
                    cataloguer.submit(
                        _catalog_and_announce,
                        station,
                        dock,
                        file,
                        kind,
                        facts[file.rel],
                        now,
                        copied,
                        on_clip,
                    )
                )
                report.clips.append(_PENDING)
                _bound_backlog(catalogued, _MAX_WAITING)
        _collect(report, catalogued)
    except VolumeGoneError as e:
        _collect(report, catalogued, raise_errors=False)
        report.state = "interrupted"
        report.warnings.append(f"{e.message}: finished files are kept; dock it again to resume")
        _finish_dock(station, dock, report, finishing, error=e.message)
        raise
    except EvidenceError as e:
        _collect(report, catalogued, raise_errors=False)
        report.state = "failed"
        _finish_dock(station, dock, report, finishing, error=e.message)
        raise
    finally:
        cataloguer.shutdown(wait=True)
    _finish_dock(station, dock, report, finishing)
    return report


# Copies read but not yet through stage two, each holding an open partial file: at most this
# many, so a volume of thousands of small files cannot run the process out of descriptors.
_MAX_WAITING = 8


def _bound_backlog(futures: list[Future[ClipResult]], limit: int) -> None:
    waiting = [f for f in futures if not f.done()]
    if len(waiting) > limit:
        wait(waiting[: len(waiting) - limit])


# Placeholder in report.clips for a clip whose cataloguing is still running.
_PENDING = ClipResult("", "", "", 0, "", (), "pending")


def _catalog_and_announce(
    station: Station,
    dock: _Dock,
    file: VolumeFile,
    kind: str,
    facts: FilenameFacts,
    now: datetime,
    copied: CopiedFile,
    on_clip: ClipCallback | None,
) -> ClipResult:
    spooled = station.spool.make_durable(copied)  # fsync and rename before it is catalogued
    result = _catalog_file(station, dock, file, kind, facts, now, spooled)
    if on_clip is not None and result.state == "spooled":
        on_clip(result.sha256)
    return result


def _collect(
    report: IngestReport, catalogued: list[Future[ClipResult]], *, raise_errors: bool = True
) -> None:
    """Put finished catalogue results in place of their placeholders, in volume order."""
    results = iter(catalogued)
    clips: list[ClipResult] = []
    first_error: BaseException | None = None
    for clip in report.clips:
        if clip is not _PENDING:
            clips.append(clip)
            continue
        future = next(results)
        try:
            clips.append(future.result())
        except EvidenceError as e:
            first_error = first_error or e
    report.clips = clips
    catalogued.clear()
    if first_error is not None and raise_errors:
        raise first_error


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
    station: Station,
    session: Session,
    serial: str,
    identity: RecorderIdentity | None,
    volume: Path,
    source: str,
    skew: timedelta | None,
) -> _Dock:
    now = station.clock.now()
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
    identity_doc = None
    if identity is not None:
        identity_doc = {
            "serial": identity.serial,
            "badge": identity.badge,
            "officer_name": identity.officer_name,
            "unit_code": identity.unit_code,
            "unit_name": identity.unit_name,
            "device_time": format_time(identity.device_time) if identity.device_time else None,
        }
    station.record(
        session,
        CustodyEvent(
            type="dock.started",
            subject_kind="recorder",
            subject_id=serial,
            actor=station.actor,
            reason=f"recorder docked ({source})",
            data={
                "dock_session": dock.id,
                "volume": volume_text(volume),
                "identity": identity_doc,
                "clock_skew_seconds": dock.clock_skew_seconds,
            },
        ),
    )
    return _Dock(dock.id, recorder, identity, recorder.unit_id or unit_id, skew)


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
            return _result(clip, file, "already_ingested")

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
    recorder_id = dock.recorder.id
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

    start, time_source = facts.start, "filename"
    if start is None and media.creation_time is not None:
        start, time_source = media.creation_time, "container"
    if start is None:
        start, time_source = datetime.fromtimestamp(file.mtime_ns / 1e9, UTC), "file_mtime"
        flags.add(Flag.TIME_FROM_FILE_MTIME)
    if (
        facts.start is not None
        and media.creation_time is not None
        and abs(facts.start - media.creation_time) > NAME_CONTAINER_TOLERANCE
    ):
        flags.add(Flag.NAME_MISMATCH)
    end = start + timedelta(seconds=media.duration_seconds or 0)
    if start > now + FUTURE_TOLERANCE:
        flags.add(Flag.FUTURE_TIMESTAMP)
    if (
        dock.skew is not None
        and abs(dock.skew.total_seconds()) > station.settings.dock.clock_skew_warn_seconds
    ):
        flags.add(Flag.CLOCK_SKEW)
    if facts.serial and facts.serial != dock.recorder.serial:
        flags.add(Flag.RECORDER_MISMATCH)
    rule = DeadlineRule(
        limit=timedelta(hours=station.settings.deadline.limit_hours),
        warn=timedelta(hours=station.settings.deadline.warn_hours),
    )
    late_by = lateness(end, now, rule)
    if late_by is not None:
        flags.add(Flag.LATE)

    important = facts.important
    retention_class = "important" if important else "standard"
    retention_until = end + (IMPORTANT_RETENTION if important else STANDARD_RETENTION)
    clip_id = str(uuid.uuid4())

    try:
        with station.transaction() as session:
            existing = session.exec(select(Clip).where(Clip.sha256 == spooled.sha256)).first()
            if existing is not None:
                return _known(station, session, dock, existing, file)
            officer = assigned_officer(session, recorder_id, start) if recorder_id else None
            badge = facts.badge or (dock.identity.badge if dock.identity else None)
            if officer is not None and badge and officer.badge != badge:
                flags.add(Flag.OFFICER_MISMATCH)
            if officer is None and badge:
                officer = _officer(session, badge, "", dock.unit_id)
            if officer is None:
                flags.add(Flag.NO_OFFICER)
            unit_id = dock.unit_id or (officer.unit_id if officer else None)
            clip = Clip(
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
                recorded_start=start,
                recorded_end=end,
                time_source=time_source,
                clock_skew_seconds=dock.skew.total_seconds() if dock.skew is not None else None,
                important=important,
                unit_id=unit_id,
                recorder_id=recorder_id,
                officer_id=officer.id if officer else None,
                dock_session_id=dock.session_id,
                station_id=station.settings.station_id,
                ingested_at=now,
                state="spooled",
                flags=json.dumps(sorted(flags)),
                retention_class=retention_class,
                retention_until=retention_until,
            )
            session.add(clip)
            session.add(_source_row(clip_id, recorder_id, file, dock.session_id, now))
            session.flush()
            unit = session.get(Unit, unit_id) if unit_id else None
            station.record(
                session,
                ingest_event(clip, station.actor, dock.recorder.serial, officer, unit, probe_error),
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
        clip_id, file.display, spooled.sha256, spooled.size, "spooled", tuple(sorted(flags)), "new"
    )


INGESTED = "clip.ingested"


def ingest_event(
    clip: Clip,
    actor: str,
    recorder_serial: str,
    officer: Officer | None,
    unit: Unit | None,
    probe_error: str | None = None,
) -> CustodyEvent:
    """The event of a clip's ingest: `verify` and retrievals check the catalog row against it."""
    return CustodyEvent(
        type=INGESTED,
        subject_kind="clip",
        subject_id=clip.id,
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
        CustodyEvent(
            type="clip.seen_again",
            subject_kind="clip",
            subject_id=clip.id,
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
    if clip.state == "stored":
        station.spool.remove(clip.sha256)  # the copy just read is not needed: the store has it
    return _result(clip, file, "duplicate")


def _result(clip: Clip, file: VolumeFile, outcome: str) -> ClipResult:
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
        row.clips_new = sum(1 for c in report.clips if c.outcome == "new")
        row.clips_known = len(report.clips) - row.clips_new
        row.files_not_ingested = len(report.not_ingested)
        row.warnings = json.dumps(report.warnings, ensure_ascii=False)
        if finishing is not None:
            finishing(row)
        session.add(row)
        events = [
            CustodyEvent(
                type="file.not_ingested",
                subject_kind="recorder",
                subject_id=dock.recorder.serial,
                actor=station.actor,
                reason=n.reason,
                data={
                    "source_path": n.source_path,
                    "detail": n.detail,
                    "dock_session": dock.session_id,
                },
            )
            for n in report.not_ingested
        ]
        events.append(
            CustodyEvent(
                type="dock.finished",
                subject_kind="recorder",
                subject_id=dock.recorder.serial,
                actor=station.actor,
                reason=error or f"dock {report.state}",
                data={
                    "dock_session": dock.session_id,
                    "state": report.state,
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
