"""Ingest service: a mounted recorder volume becomes hashed, tagged, catalogued clips."""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import select

from evidence_agent.catalog.models import Clip, ClipSource, DockSession
from evidence_agent.config import IngestSettings
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.domain.flags import SkipReason
from evidence_agent.domain.identity import check_serial
from evidence_agent.domain.media import media_kind
from evidence_agent.domain.states import ClipOutcome, ClipState, DockState
from evidence_agent.domain.text import check_plain_text
from evidence_agent.errors import EvidenceError, ExitCode, InputError, NotFoundError
from evidence_agent.io.spool import CopiedFile
from evidence_agent.io.volume_reader import (
    LocalVolume,
    VolumeFile,
    VolumeGoneError,
    error_text,
    volume_text,
)
from evidence_agent.io.volume_reader import VolumeSource as VolumeSource  # for review: no io
from evidence_agent.services.cataloguing import Cataloguer
from evidence_agent.services.checkpoint_publishing import publish_checkpoints
from evidence_agent.services.dock_sessions import (
    Dock,
    Survey,
    UnidentifiedVolumeError,
    hold_unidentified_dock,
    lock_dock,
    recover_interrupted,
    start_dock,
    survey_volume,
)
from evidence_agent.services.ingest_report import (
    ClipCallback,
    ClipResult,
    IngestReport,
    NotIngested,
    ProgressCallback,
    clip_result,
)
from evidence_agent.services.station import Station
from evidence_agent.services.storing import StoreWorker

log = logging.getLogger(__name__)


def plan_bytes(volume: Path, settings: IngestSettings) -> int:
    """Bytes of media a volume holds, for a progress bar's total."""
    patterns = (settings.video_patterns, settings.photo_patterns, settings.audio_patterns)
    files = LocalVolume(volume).listing().files
    return sum(f.size for f in files if media_kind(f.name, *patterns) is not None)


@dataclass(frozen=True)
class StoredIngest:
    """An ingest as the command shows it: its report with what the store worker beside it
    did and its warnings (`result`, the `--json` document), and the exit code."""

    result: dict[str, Any]
    exit_code: ExitCode

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result, "exit_code": int(self.exit_code)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredIngest:
        return cls(dict(data["result"]), ExitCode(int(data["exit_code"])))


def ingest_and_store(
    station: Station,
    ingest: Callable[[ProgressCallback | None, ClipCallback], IngestReport],
    progress: ProgressCallback | None = None,
) -> StoredIngest:
    """Run an ingest (`ingest_volume`, `identify_dock`) with a store worker beside it that
    stores each clip as it is catalogued; the exit code says what needs a person."""
    worker = StoreWorker(station).start()
    try:
        report = ingest(progress, worker.submit)
    finally:
        stored = worker.finish()
    stored_ids = set(stored.stored)
    result = report.to_json()  # its warnings are the report's list: those added below too
    for clip in result["clips"]:
        if clip["id"] in stored_ids:
            clip["state"] = ClipState.STORED
    result["store"] = stored.to_json()
    code = report.exit_code
    if stored.failed:
        code = max(code, ExitCode.WARNING)
        report.warnings.append(
            f"{len(stored.failed)} clip(s) stay in the spool until the store is reachable "
            "(`evidence-agent store` retries)"
        )
    if stored.integrity_failures:
        code = ExitCode.INTEGRITY
    return StoredIngest(result, ExitCode(code))


def ingest_volume(
    station: Station,
    volume: Path | VolumeSource,
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
    unidentified dock of this volume: once the recorder is known, that dock is the one read.

    `volume` is a mount point this process reads, or a VolumeSource that reads it elsewhere
    (the caller's process, through the local API)."""
    if isinstance(volume, Path):
        volume = LocalVolume(volume)
    try:
        survey = survey_volume(station, volume, recorder_serial, list(warnings))
    except UnidentifiedVolumeError as e:
        if hold_unidentified:
            e.dock_session_id = hold_unidentified_dock(
                station, volume.root, source, e, finishing, resume
            )
        raise
    for dock_id in recover_interrupted(station):
        log.warning(
            "dock %s was left running by a process that is gone: marked interrupted", dock_id
        )
    session_id = resume or str(uuid.uuid4())
    # Held until the dock's row says how it ended: a dock found `running` whose lock is free
    # has no process left to finish it.
    lock = lock_dock(station, session_id)
    try:
        with station.transaction() as session:
            dock = start_dock(station, session, session_id, survey, volume.root, source)
        report = _read_dock(
            station, dock, volume, survey, progress, on_clip, should_stop, finishing
        )
    finally:
        lock.release(remove=True)
    return report


def _read_dock(
    station: Station,
    dock: Dock,
    volume: VolumeSource,
    survey: Survey,
    progress: ProgressCallback | None,
    on_clip: ClipCallback | None,
    should_stop: Callable[[], str | None] | None,
    finishing: Callable[[DockSession], None] | None,
) -> IngestReport:
    """The dock's files read and catalogued, and its row finished however it ends."""
    report = _open_report(station, dock, volume, survey)
    cataloguer = Cataloguer(station, dock, survey.now, on_clip)
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


def identify_dock(
    station: Station,
    dock_id: str,
    recorder_serial: str,
    reason: str,
    *,
    volume: Path | VolumeSource | None = None,
    progress: ProgressCallback | None = None,
    on_clip: ClipCallback | None = None,
) -> IngestReport:
    """An operator names the recorder of an unidentified dock: the act is recorded
    (`dock.identified`, with their reason), then the volume is ingested as that recorder's,
    in that dock. `volume` is where it is mounted now, when not where it was docked (a USB
    device the daemon has unmounted): a path this process reads, or a VolumeSource read by
    the operator's own process."""
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
    if volume is None or isinstance(volume, Path):
        path = volume if volume is not None else Path(row.volume)
        if not path.is_dir():
            raise InputError(
                f"the volume of dock {dock_id} is not at {volume_text(path)}",
                remedy="mount it read-only and give its mount point with --volume",
            )
        volume = LocalVolume(path)
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
                    "volume": volume_text(volume.root),
                },
            ),
        )
        station.custody.checkpoint(session)  # a person's act: signed before anything follows
    log.info("dock %s identified as recorder %s by %s", dock_id, recorder_serial, station.actor)
    return ingest_volume(
        station,
        volume,
        recorder_serial=recorder_serial,
        source=row.source,
        progress=progress,
        on_clip=on_clip,
        resume=dock_id,
    )


def _open_report(
    station: Station, dock: Dock, volume: VolumeSource, survey: Survey
) -> IngestReport:
    """The dock's report before any file is read: the entries the listing skipped, a low spool."""
    report = IngestReport(
        dock.session_id, volume_text(volume.root), survey.serial, warnings=survey.warnings
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
    dock: Dock,
    volume: VolumeSource,
    survey: Survey,
    report: IngestReport,
    cataloguer: Cataloguer,
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


def _taken_before(station: Station, dock: Dock) -> dict[tuple[bytes, int, int], str]:
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
    dock: Dock,
    volume: VolumeSource,
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
            return clip_result(clip, file, ClipOutcome.ALREADY_INGESTED)
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
    station: Station, dock: Dock, file: VolumeFile, clip: Clip, copied: CopiedFile
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
        return clip_result(clip, file, ClipOutcome.ALREADY_INGESTED)
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
    return clip_result(clip, file, ClipOutcome.ALREADY_INGESTED)


def _finish_dock(
    station: Station,
    dock: Dock,
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
