"""Ingest's stage two: a spooled file examined, attributed and catalogued with its custody event."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import uuid
from collections import deque
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlmodel import Session, col, select

from evidence_agent.catalog.models import Clip, ClipSource, Officer, Unit
from evidence_agent.custody.events import CustodyEvent, format_time
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.domain.deadline import DeadlineRule, lateness
from evidence_agent.domain.filenames import FilenameFacts
from evidence_agent.domain.flags import Flag
from evidence_agent.domain.media import MediaInfo
from evidence_agent.domain.retention import retention_at_cataloguing
from evidence_agent.domain.states import ClipOutcome, ClipState
from evidence_agent.errors import EvidenceError, StorageError
from evidence_agent.io.spool import CopiedFile, SpooledFile
from evidence_agent.io.volume_reader import VolumeFile
from evidence_agent.services.dock_sessions import Dock, officer_row
from evidence_agent.services.ingest_report import (
    ClipCallback,
    ClipResult,
    IngestReport,
    clip_result,
)
from evidence_agent.services.recorders import assigned_officer
from evidence_agent.services.station import Station

log = logging.getLogger(__name__)

FUTURE_TOLERANCE = timedelta(minutes=5)
NAME_CONTAINER_TOLERANCE = timedelta(seconds=60)


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


class Cataloguer:
    """Stage two on a thread of its own, so that cataloguing a file overlaps reading the next;
    its results, and those stage one gives at once, are kept in volume order.

    Stage two takes every file waiting for it together: their renames then wait for one fsync
    of the spool directory, and their rows and custody events for one commit, instead of one
    of each per file (on a volume of photos, those waits were most of a file's time)."""

    def __init__(
        self, station: Station, dock: Dock, now: datetime, on_clip: ClipCallback | None
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
    station: Station, dock: Dock, entries: list[_Entry], now: datetime
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
    station: Station, dock: Dock, examined: tuple[_Entry, _Examined], now: datetime
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
    station: Station, dock: Dock, examined: list[tuple[_Entry, _Examined]], now: datetime
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
    dock: Dock,
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
    dock: Dock,
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
    dock: Dock,
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
    dock: Dock,
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
            officer = officers[badge] = officer_row(session, badge, "", dock.unit_id)
    if officer is None:
        seen.flags.add(Flag.NO_OFFICER)
    return officer


def _clip_row(
    clip_id: str,
    station: Station,
    dock: Dock,
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
    station: Station, session: Session, dock: Dock, clip: Clip, file: VolumeFile
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
    return clip_result(clip, file, outcome)
