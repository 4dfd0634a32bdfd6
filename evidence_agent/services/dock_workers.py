"""The daemon's docks: a folder volume settled or a USB device mounted, then ingested, cleared."""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, func, select

from evidence_agent.adapters.metrics import AgentMetrics
from evidence_agent.adapters.mounter import Mounter
from evidence_agent.catalog.models import Clip, DockSession
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.domain.identity import MAX_IDENTITY_BYTES, parse_identity
from evidence_agent.domain.states import ClipState, DockState
from evidence_agent.domain.usb_allowlist import normalize_serial
from evidence_agent.errors import EvidenceError
from evidence_agent.io.volume_reader import (
    LocalVolume,
    VolumeGoneError,
    read_small_file,
    volume_text,
)
from evidence_agent.ports import DockEvent
from evidence_agent.services.clearing import WritableMounter, clear_recorder
from evidence_agent.services.dock_sessions import UnidentifiedVolumeError
from evidence_agent.services.ingest import ingest_volume, plan_bytes
from evidence_agent.services.ingest_report import IngestReport
from evidence_agent.services.recorders import enrolled_devices, identity_disagreement, match_device
from evidence_agent.services.station import Station
from evidence_agent.services.storing import StoreWorker

log = logging.getLogger(__name__)

PROGRESS_LOG_SECONDS = 30.0  # a progress line per running dock in the log
CLEAR_WAIT_SECONDS = 600.0  # how long a dock waits for its clips to be stored before clearing
# Attributes of a USB device kept with a dock session and in custody events.
DEVICE_KEYS = (
    "ID_VENDOR_ID",
    "ID_MODEL_ID",
    "ID_VENDOR",
    "ID_MODEL",
    "ID_SERIAL_SHORT",
    "ID_FS_TYPE",
)
SUPERVISOR_COMMAND = "evidence-agent ingest MOUNTPOINT --recorder SERIAL"


def volume_signature(root: Path) -> tuple[int, int, int]:
    """Count, total size and newest mtime of a volume's tree: equal twice means it has settled."""
    count = size = newest = 0
    for path in root.rglob("*"):
        try:
            st = path.lstat()
        except OSError:
            continue
        count += 1
        size += st.st_size
        newest = max(newest, st.st_mtime_ns)
    return count, size, newest


@dataclass
class ActiveDock:
    """One device being docked: its progress, and whether it went away (or the agent stops)."""

    device_id: str
    source: str
    started_at: datetime
    gone: threading.Event = field(default_factory=threading.Event)
    future: Future[None] | None = None
    usb_serial: str | None = None
    recorder: str | None = None
    volume: Path | None = None
    session_id: str | None = None
    bytes_total: int | None = None
    bytes_done: int = 0
    written: tuple[int | None, int] = (None, -1)  # progress last written to the catalog
    last_logged: float = field(default_factory=time.monotonic)
    deferred: DockEvent | None = None  # a re-dock that arrived while this one was stopping

    def count_read(self, size: int) -> None:
        """Ingest's progress: `size` more bytes read."""
        self.bytes_done += size

    def fill_row(self, row: DockSession, *, device_info: dict[str, Any] | None) -> None:
        """What the daemon knows of the dock, put in its row as ingest finishes it."""
        row.bytes_total, row.bytes_done = self.bytes_total, self.bytes_done
        if device_info:
            row.device_info = json.dumps(device_info, ensure_ascii=False)

    def snapshot(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "source": self.source,
            "recorder": self.recorder,
            "volume": volume_text(self.volume) if self.volume else None,
            "dock_session": self.session_id,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "gone": self.gone.is_set(),
        }


class DockWorkers:
    """The docks in progress, each run on a thread of the pool: a dock-folder volume once it has
    settled, a USB device once matched and mounted read-only; then ingested, and cleared when
    configured. Dock events come from the daemon's loop (`dispatch`); `emit` puts one back on it."""

    def __init__(
        self,
        station: Station,
        *,
        mounter: Mounter,
        clear_mounter: WritableMounter | None,
        metrics: AgentMetrics,
        store_worker: StoreWorker,
        stopping: threading.Event,
        emit: Callable[[DockEvent], None],
    ) -> None:
        self.station = station
        self.settings = station.settings
        self.mounter = mounter
        self.clear_mounter = clear_mounter
        self.metrics = metrics
        self.store_worker = store_worker
        self.stopping = stopping
        self.emit = emit
        self.pool = ThreadPoolExecutor(
            max_workers=self.settings.dock.max_concurrent, thread_name_prefix="dock"
        )
        self._docks: dict[str, ActiveDock] = {}
        self._lock = threading.RLock()
        # Dock-folder volumes no recorder could be named for, by device: docked again once
        # an identity file is on them.
        self._unidentified: dict[str, DockEvent] = {}

    def docks(self) -> list[dict[str, Any]]:
        """What is being docked now (for tests and the status line)."""
        with self._lock:
            return [d.snapshot() for d in self._docks.values()]

    def report_progress(self) -> int:
        """Each dock's progress written to its row, and logged now and then; how many run."""
        with self._lock:
            docks = list(self._docks.values())
        now = time.monotonic()
        for dock in docks:
            try:
                self._write_progress(dock)
            except EvidenceError as e:
                log.warning("cannot record dock progress: %s", e)
            if now - dock.last_logged >= PROGRESS_LOG_SECONDS and dock.volume is not None:
                dock.last_logged = now
                log.info(
                    "recorder %s: %s of %s bytes read",
                    dock.recorder or dock.device_id,
                    dock.bytes_done,
                    dock.bytes_total if dock.bytes_total is not None else "?",
                )
        return len(docks)

    def dispatch(self, event: DockEvent) -> None:
        """A device docked: its dock started on the pool; removed: its dock told to stop."""
        with self._lock:
            dock = self._docks.get(event.device_id)
            running = dock is not None and dock.future is not None and not dock.future.done()
            if event.kind == "removed":
                self._unidentified.pop(event.device_id, None)
                if dock is not None and running:
                    dock.gone.set()
                    log.warning(
                        "%s went away while it was being read; the dock stops after the current "
                        "file and resumes when it is docked again",
                        event.device_id,
                    )
                return
            if dock is not None and running:
                if dock.gone.is_set():
                    dock.deferred = event  # docked again before the old dock finished stopping
                return  # already being ingested (a duplicate add)
            if event.source == "usb":
                target = self._dock_usb
            elif event.volume is None:
                log.warning("dock event without a mounted volume from %s ignored", event.source)
                return
            else:
                target = self._dock_folder
            dock = ActiveDock(event.device_id, event.source, self.station.clock.now())
            self._docks[event.device_id] = dock
            dock.future = self.pool.submit(self._run_dock, dock, event, target)
            dock.future.add_done_callback(functools.partial(self._dock_done, dock))

    def _dock_done(self, dock: ActiveDock, _future: Future[None]) -> None:
        with self._lock:
            if self._docks.get(dock.device_id) is dock:
                del self._docks[dock.device_id]
            deferred = dock.deferred
        self.metrics.recorders_docked.set(len(self._docks))
        if deferred is not None and not self.stopping.is_set():
            self.emit(deferred)

    def _run_dock(
        self,
        dock: ActiveDock,
        event: DockEvent,
        target: Callable[[ActiveDock, DockEvent], None],
    ) -> None:
        self.metrics.recorders_docked.set(len(self._docks))
        try:
            target(dock, event)
        except EvidenceError as e:
            log.error("dock of %s failed: %s", event.device_id, e)
        except Exception:
            # A bug in one dock must not stop the station; it is logged with its traceback.
            log.exception("unexpected failure docking %s", event.device_id)

    def retry_unidentified(self) -> None:
        """Dock-folder volumes no recorder could be named for are docked again once the
        recorder's identity file is on them."""
        name = self.settings.ingest.identity_file
        with self._lock:
            waiting = list(self._unidentified.items())
        for device_id, event in waiting:
            if event.volume is None or not (event.volume / name).exists():
                continue
            with self._lock:
                self._unidentified.pop(device_id, None)
            log.info("an identity file is now on %s: docking it again", event.volume)
            self.emit(event)

    # -- one dock -----------------------------------------------------------------------------

    def _dock_folder(self, dock: ActiveDock, event: DockEvent) -> None:
        volume = event.volume
        assert volume is not None
        settle = self.settings.dock.settle_seconds
        # A volume that is still being written (copied into the dock folder, a slow mount)
        # is read only once it has stopped changing.
        signature = volume_signature(volume)
        while not self.stopping.wait(settle):
            if dock.gone.is_set():
                return
            latest = volume_signature(volume)
            if latest == signature:
                break
            signature = latest
        if self.stopping.is_set() or dock.gone.is_set():
            return
        log.info("recorder volume docked at %s (%s)", volume, event.source)
        self._ingest(
            dock, volume, recorder_serial=event.recorder_serial, source=event.source, retry=event
        )

    def _dock_usb(self, dock: ActiveDock, event: DockEvent) -> None:
        attributes = event.attributes
        devnode = str(attributes.get("devnode") or event.device_id)
        usb_serial = attributes.get("ID_SERIAL_SHORT")
        with self.station.reading() as session:
            enrolled = enrolled_devices(session)
        match = match_device(attributes, enrolled, self.settings.dock.usb_allowlist)
        if not match.is_recorder:
            self._refuse(event, match.reason)
            return
        if isinstance(usb_serial, str) and usb_serial.strip():
            with self._lock:
                twin = next(
                    (
                        d
                        for d in self._docks.values()
                        if d is not dock
                        and d.usb_serial is not None
                        and normalize_serial(d.usb_serial) == normalize_serial(usb_serial)
                    ),
                    None,
                )
                dock.usb_serial = usb_serial
            if twin is not None:
                self._refuse(
                    event,
                    f"two devices claim USB serial {usb_serial}: {twin.device_id} is docked now; "
                    f"{event.device_id} is not read while it is",
                )
                return
        dock.recorder = match.recorder_serial
        log.info(
            "USB %s on %s: %s; mounting read-only",
            "recorder " + match.recorder_serial if match.recorder_serial else "recorder",
            devnode,
            match.reason,
        )
        try:
            volume = self.mounter.mount(
                devnode, event.device_id, fs_type=_text(attributes.get("ID_FS_TYPE"))
            )
        except EvidenceError as e:
            self._record_problem(
                event,
                DockState.FAILED,
                EventType.DOCK_FAILED,
                f"{e.message} ({e.remedy})" if e.remedy else e.message,
            )
            log.error("cannot mount %s: %s", devnode, e)
            return
        dock.volume = volume
        report = None
        try:
            report = self._ingest(
                dock,
                volume,
                recorder_serial=match.recorder_serial,
                source="usb",
                device_info=_device_info(attributes),
            )
        finally:
            self._unmount(volume)
        if report is not None and self.settings.dock.clear_recorder:
            self._clear(dock, event, devnode, report)

    def _ingest(
        self,
        dock: ActiveDock,
        volume: Path,
        *,
        recorder_serial: str | None,
        source: str,
        device_info: dict[str, Any] | None = None,
        retry: DockEvent | None = None,
    ) -> IngestReport | None:
        """Ingest one mounted volume; None when it stopped early (unplugged, stopping, failed)
        or when no recorder can be named for it: then it is kept as an unidentified dock, and
        `retry` (a dock-folder volume's event) is docked again once an identity file is on it."""
        dock.volume = volume
        try:
            dock.bytes_total = plan_bytes(volume, self.settings.ingest)
        except EvidenceError:
            dock.bytes_total = None
        extra_warnings = self._check_identity(volume, recorder_serial)
        if dock.gone.is_set() or self.stopping.is_set():
            return None
        try:
            report = ingest_volume(
                self.station,
                volume,
                recorder_serial=recorder_serial,
                source=source,
                progress=dock.count_read,
                on_clip=functools.partial(self._store_clip, dock),
                should_stop=functools.partial(self._stop_reason, dock),
                warnings=extra_warnings,
                finishing=functools.partial(dock.fill_row, device_info=device_info),
                hold_unidentified=True,
                resume=self._unidentified_dock(volume) if retry is not None else None,
            )
        except UnidentifiedVolumeError as e:
            dock.session_id = e.dock_session_id
            log.warning(
                "no recorder can be named for the volume at %s (no identity file, no serial in "
                "its file names, not enrolled): nothing read, its %d media file(s) wait in dock "
                "%s. Put the recorder's identity file (%s) on it, or name it: `evidence-agent "
                "dock identify %s --recorder SERIAL --reason ...`",
                volume,
                len(e.media),
                e.dock_session_id,
                self.settings.ingest.identity_file,
                e.dock_session_id,
            )
            if retry is not None:
                with self._lock:
                    self._unidentified[retry.device_id] = retry
            return None
        except VolumeGoneError as e:
            log.warning(
                "dock of %s stopped cleanly: %s; %s of %s bytes read, finished files are kept "
                "and the rest is read when it is docked again",
                dock.recorder or volume,
                e.message,
                dock.bytes_done,
                dock.bytes_total if dock.bytes_total is not None else "?",
            )
            store_spooled(
                self.station, self.store_worker
            )  # the last clip's store was not queued by ingest
            return None
        except EvidenceError as e:
            log.error("ingest of %s failed: %s", volume, e)
            return None
        dock.session_id = report.dock_session_id
        dock.recorder = report.recorder_serial
        _log_report(report, volume)
        return report

    def _unidentified_dock(self, volume: Path) -> str | None:
        """The unidentified dock kept for this dock-folder volume, if one waits (from before a
        restart, or before its identity file appeared): docking it again carries on that dock."""
        with self.station.reading() as session:
            return session.exec(
                select(DockSession.id)
                .where(DockSession.station_id == self.settings.station_id)
                .where(DockSession.state == DockState.UNIDENTIFIED)
                .where(DockSession.volume == volume_text(volume))
                .order_by(col(DockSession.started_at).desc())
            ).first()

    def _stop_reason(self, dock: ActiveDock) -> str | None:
        """Why a dock should stop before its next file, if it should."""
        if dock.gone.is_set():
            return "the recorder was unplugged during the copy"
        if self.stopping.is_set():
            return "the agent is stopping"
        return None

    def _store_clip(self, dock: ActiveDock, sha256: str) -> None:
        """A clip of the dock waits in the spool: to the store worker, and counted as copied
        unless an earlier dock catalogued it (left in the spool by a stop)."""
        self.store_worker.submit(sha256)
        with self.station.reading() as session:
            row = session.exec(
                select(Clip.size, Clip.ingested_at).where(Clip.sha256 == sha256)
            ).first()
        if row is not None and row[1] >= dock.started_at:
            self.metrics.ingested_bytes.inc(row[0])

    def _check_identity(self, volume: Path, registry_serial: str | None) -> list[str]:
        """The identity file against the registry: a disagreement is flagged, never silent."""
        if registry_serial is None:
            return []
        rel = self.settings.ingest.identity_file.encode()
        try:
            data = read_small_file(LocalVolume(volume), rel, MAX_IDENTITY_BYTES)
            identity = parse_identity(data) if data is not None else None
        except EvidenceError:
            return []  # ingest reports an unreadable identity file itself
        message = identity_disagreement(registry_serial, identity.serial if identity else None)
        if message is None:
            return []
        with self.station.transaction() as session:
            self.station.record(
                session,
                EventType.RECORDER_IDENTITY_MISMATCH.event(
                    registry_serial,
                    actor=self.station.actor,
                    reason=message,
                    data={
                        "registry_serial": registry_serial,
                        "identity_serial": identity.serial if identity else None,
                        "volume": volume_text(volume),
                    },
                ),
            )
        return [message]

    def _clear(
        self, dock: ActiveDock, event: DockEvent, devnode: str, report: IngestReport
    ) -> None:
        """dock.clear_recorder: wait for this dock's clips to be stored, then erase verified files."""
        if self.clear_mounter is None:
            log.error("dock.clear_recorder is on but this mounter cannot mount read-write")
            return
        hashes = sorted({c.sha256 for c in report.clips})
        deadline = time.monotonic() + CLEAR_WAIT_SECONDS
        while hashes:
            with self.station.reading() as session:
                waiting = session.exec(
                    select(func.count())
                    .select_from(Clip)
                    .where(col(Clip.sha256).in_(hashes))
                    .where(Clip.state == ClipState.SPOOLED)
                ).one()
            if not waiting:
                break
            if dock.gone.is_set() or time.monotonic() > deadline or self.stopping.wait(0.5):
                log.warning(
                    "recorder %s not cleared: %d clip(s) not stored yet; it is cleared at a later dock",
                    report.recorder_serial,
                    waiting,
                )
                return
        if dock.gone.is_set():
            return
        volume = self.clear_mounter.mount_writable(
            devnode, event.device_id, fs_type=_text(event.attributes.get("ID_FS_TYPE"))
        )
        try:
            cleared = clear_recorder(
                self.station, volume, report.recorder_serial, dock_session_id=report.dock_session_id
            )
        finally:
            try:
                self.clear_mounter.unmount(volume)
            except EvidenceError as e:
                log.error("cannot unmount %s after clearing: %s", volume, e)
        log.info(
            "recorder %s cleared: %d file(s) erased after verification, %d kept",
            report.recorder_serial,
            len(cleared.erased),
            len(cleared.kept),
        )
        for path, failure in cleared.integrity_failures.items():
            log.error("INTEGRITY: %s kept on the recorder: %s", path, failure)

    def _unmount(self, volume: Path) -> None:
        try:
            self.mounter.unmount(volume)
        except EvidenceError as e:
            log.error("cannot unmount %s: %s", volume, e)

    # -- catalog rows for docks ---------------------------------------------------------------

    def _find_session(self, dock: ActiveDock) -> str | None:
        if dock.session_id is not None or dock.volume is None:
            return dock.session_id
        with self.station.reading() as session:
            row = session.exec(
                select(DockSession.id)
                .where(DockSession.station_id == self.settings.station_id)
                .where(DockSession.volume == volume_text(dock.volume))
                .where(DockSession.started_at >= dock.started_at - timedelta(seconds=1))
                .order_by(col(DockSession.started_at).desc())
            ).first()
        dock.session_id = row
        return row

    def _write_progress(self, dock: ActiveDock) -> None:
        state = (dock.bytes_total, dock.bytes_done)
        if state == dock.written or self._find_session(dock) is None:
            return
        with self.station.transaction() as session:
            row = session.get(DockSession, dock.session_id)
            if row is None:
                return
            row.bytes_total, row.bytes_done = state
            session.add(row)
        dock.written = state

    def _refuse(self, event: DockEvent, reason: str) -> None:
        """Unknown USB storage: reported (log, metric, status, custody log), never read."""
        self.metrics.unknown_devices_seen.inc()
        log.warning(
            "USB storage on %s refused, nothing read: %s. A supervisor who knows what it is "
            "can mount it read-only and run `%s`",
            event.attributes.get("devnode") or event.device_id,
            reason,
            SUPERVISOR_COMMAND,
        )
        self._record_problem(event, DockState.REFUSED, EventType.DOCK_REFUSED, reason)

    def _record_problem(
        self, event: DockEvent, state: DockState, event_type: EventType, reason: str
    ) -> None:
        now = self.station.clock.now()
        device = str(event.attributes.get("devnode") or event.device_id)
        info = _device_info(event.attributes)
        with self.station.transaction() as session:
            row = DockSession(
                id=str(uuid.uuid4()),
                station_id=self.settings.station_id,
                source=event.source,
                volume=device,
                actor=self.station.actor,
                started_at=now,
                finished_at=now,
                state=state,
                error=reason,
                device_info=json.dumps(info, ensure_ascii=False),
            )
            session.add(row)
            self.station.record(
                session,
                event_type.event(
                    (_text(info.get("ID_SERIAL_SHORT")) or device)[:64],
                    actor=self.station.actor,
                    reason=reason,
                    data={"dock_session": row.id, "device": device, "usb": info},
                ),
            )


def store_spooled(station: Station, store_worker: StoreWorker) -> None:
    """Every clip waiting in the spool to the store worker."""
    with station.reading() as session:
        pending = list(session.exec(select(Clip.sha256).where(Clip.state == ClipState.SPOOLED)))
    for sha256 in pending:
        store_worker.submit(sha256)


def _log_report(report: IngestReport, volume: Path) -> None:
    new = report.clips_new
    log.info(
        "recorder %s at %s: %d new clip(s), %d already catalogued, %d file(s) not ingested",
        report.recorder_serial,
        volume,
        new,
        len(report.clips) - new,
        len(report.not_ingested),
    )
    for item in report.not_ingested:
        log.info("not ingested: %s (%s: %s)", item.source_path, item.reason, item.detail)
    for warning in report.warnings:
        log.warning("recorder %s: %s", report.recorder_serial, warning)


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _device_info(attributes: Mapping[str, Any]) -> dict[str, Any]:
    info = {k: attributes[k] for k in DEVICE_KEYS if _text(attributes.get(k))}
    if attributes.get("devnode"):
        info["devnode"] = attributes["devnode"]
    return info
