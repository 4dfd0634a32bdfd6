"""A dock's lifecycle: the volume surveyed, the dock started and locked, held or recovered."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import update
from sqlmodel import Session, col, select

from evidence_agent.catalog.models import DockSession, Officer, Recorder, Unit
from evidence_agent.config import resolve_timezone
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.filenames import FilenameFacts, compile_patterns, parse_filename
from evidence_agent.domain.identity import (
    MAX_IDENTITY_BYTES,
    RecorderIdentity,
    check_serial,
    parse_identity,
)
from evidence_agent.domain.media import media_kind
from evidence_agent.domain.states import DockState
from evidence_agent.errors import InputError, StorageError
from evidence_agent.io.locks import FileLock, is_held, try_lock
from evidence_agent.io.volume_reader import (
    VolumeFile,
    VolumeListing,
    VolumeSource,
    display_path,
    read_small_file,
    volume_text,
)
from evidence_agent.services.station import Station

_Row = TypeVar("_Row", Unit, Officer, Recorder)

RUNNING_DOCKS_DIR = "running-docks"  # in the data directory: a lock file per dock in progress
_GONE_DOCK = (
    "the process reading this dock stopped during it (killed, crashed, a power cut); finished "
    "files are kept and the rest is read at the next dock"
)


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
class Dock:
    """What the ingest of one volume knows about the recorder being read."""

    session_id: str
    recorder: Recorder
    identity: RecorderIdentity | None
    unit_id: int | None
    skew: timedelta | None


@dataclass(frozen=True)
class Survey:
    """What a volume tells before any file is read: its files, whose they are, its clock."""

    listing: VolumeListing
    identity_rel: bytes
    identity: RecorderIdentity | None
    facts: dict[bytes, FilenameFacts]  # by file
    serial: str
    skew: timedelta | None
    now: datetime
    warnings: list[str]


def media_kind_of(station: Station, file: VolumeFile) -> str | None:
    """The file's kind by the configured patterns (video, photo, audio); None if not media."""
    ingest = station.settings.ingest
    return media_kind(
        file.name, ingest.video_patterns, ingest.photo_patterns, ingest.audio_patterns
    )


def hold_unidentified_dock(
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


def _dock_lock_path(station: Station, session_id: str) -> Path:
    return station.settings.data_dir / RUNNING_DOCKS_DIR / f"{session_id}.lock"


def lock_dock(station: Station, session_id: str) -> FileLock:
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


def survey_volume(
    station: Station, volume: VolumeSource, recorder_serial: str | None, warnings: list[str]
) -> Survey:
    """List the volume, read its identity file and the facts in its file names."""
    settings = station.settings
    listing = volume.listing()
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
        media = [f for f in listing.files if media_kind_of(station, f) is not None]
        raise UnidentifiedVolumeError(media, warnings)
    skew = None
    if identity is not None and identity.device_time is not None:
        skew = identity.device_time - now
        if abs(skew.total_seconds()) > settings.dock.clock_skew_warn_seconds:
            warnings.append(
                f"recorder {serial} clock is off by {skew.total_seconds():+.0f} s; "
                "times are recorded as the recorder gave them and the skew is kept with each clip"
            )
    return Survey(listing, identity_rel, identity, facts, serial, skew, now, warnings)


def _read_identity(
    volume: VolumeSource, rel: bytes, warnings: list[str]
) -> RecorderIdentity | None:
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


def start_dock(
    station: Station, session: Session, session_id: str, survey: Survey, volume: Path, source: str
) -> Dock:
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
        officer_row(
            session, identity.badge, identity.officer_name or "", recorder.unit_id or unit_id
        )
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
    return Dock(dock.id, recorder, identity, recorder.unit_id or unit_id, skew)


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


def officer_row(session: Session, badge: str, name: str, unit_id: int | None) -> Officer:
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
