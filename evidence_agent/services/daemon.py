"""The docking daemon: dock sources enqueue; workers mount, ingest and clear; a store worker stores and verifies."""

from __future__ import annotations

import functools
import gc
import json
import logging
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from sqlmodel import col, func, select

from evidence_agent.adapters.folder_source import FolderDockSource
from evidence_agent.adapters.metrics import (
    AgentMetrics,
    MetricsServer,
    create_metrics,
    start_metrics_server,
)
from evidence_agent.adapters.mounter import Mounter
from evidence_agent.adapters.sd_notify import SystemdNotifier, watchdog_interval
from evidence_agent.catalog.models import Clip, DockSession
from evidence_agent.catalog.queries import undocked_recorders
from evidence_agent.config import Settings
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.domain.flags import Flag
from evidence_agent.domain.identity import MAX_IDENTITY_BYTES, parse_identity
from evidence_agent.domain.states import ClipState, DockState
from evidence_agent.domain.usb_allowlist import normalize_serial
from evidence_agent.errors import EvidenceError, StorageError
from evidence_agent.io.locks import FileLock, read_note, try_lock
from evidence_agent.io.volume_reader import VolumeGoneError, read_small_file, volume_text
from evidence_agent.ports import DockEvent, DockSource
from evidence_agent.services import storage_check
from evidence_agent.services.clearing import ClearingSystemMounter, WritableMounter, clear_recorder
from evidence_agent.services.ingest import (
    IngestReport,
    UnidentifiedVolumeError,
    ingest_volume,
    plan_bytes,
    recover_interrupted,
)
from evidence_agent.services.local_api import ApiServer, Handler
from evidence_agent.services.recorders import enrolled_devices, identity_disagreement, match_device
from evidence_agent.services.station import Station, open_station, service_actor
from evidence_agent.services.storing import StoreWorker, publish_checkpoints, store_pending

log = logging.getLogger(__name__)

RETRY_STORE_SECONDS = 60.0
PROGRESS_SECONDS = 2.0  # dock progress written to the catalog, metrics and STATUS= refreshed
PROGRESS_LOG_SECONDS = 30.0  # a progress line per running dock in the log
WATCH_SECONDS = 3600.0  # the undocked-recorder watch
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
DAEMON_LOCK = "daemon.lock"  # in the data directory, locked for as long as a daemon runs there


class DaemonRunningError(EvidenceError):
    """Another daemon works on this data directory: two would read every recorder twice."""


def lock_data_dir(settings: Settings) -> FileLock:
    """The data directory's daemon lock, held until released or this process ends.

    The file is never removed: a daemon starting as another stops must lock the same file."""
    path = settings.data_dir / DAEMON_LOCK
    try:
        lock = try_lock(path)
    except OSError as e:
        raise StorageError(
            f"cannot lock the data directory {settings.data_dir}: {e.strerror}",
            remedy="check that the data directory is writable by the station's user",
        ) from e
    if lock is None:
        holder = read_note(path)
        raise DaemonRunningError(
            f"another evidence-agent daemon ({holder or 'process unknown'}) is already running "
            f"on the data directory {settings.data_dir}",
            remedy="stop it first (systemctl stop evidence-agent), or give this one a data "
            "directory of its own (paths.data_dir)",
        )
    return lock


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


class Daemon:
    """Owns the worker threads; sources only put DockEvents on `events`.

    `mounter` (default SystemMounter under dock.mount_root) mounts USB recorders read-only;
    `clear_mounter` mounts them read-write for dock.clear_recorder (default: the mounter when it
    can). Tests pass DirectoryMounter-style doubles and their own sources."""

    def __init__(
        self,
        station: Station,
        sources: list[DockSource],
        *,
        mounter: Mounter | None = None,
        clear_mounter: WritableMounter | None = None,
        metrics: AgentMetrics | None = None,
        notifier: SystemdNotifier | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.station = station
        self.sources = list(sources)
        settings = station.settings
        self.settings = settings
        if mounter is None:
            mounter = ClearingSystemMounter(settings.dock.mount_root)
        self.mounter = mounter
        if clear_mounter is None and isinstance(mounter, WritableMounter):
            clear_mounter = mounter
        self.clear_mounter = clear_mounter
        self.metrics = metrics or create_metrics()
        self.notifier = notifier or SystemdNotifier(None)
        self.watchdog_seconds = watchdog_interval(environ)
        self.events: queue.Queue[DockEvent | None] = queue.Queue()
        self.stopping = threading.Event()
        self.store_worker = StoreWorker(station)
        self.pool = ThreadPoolExecutor(
            max_workers=settings.dock.max_concurrent, thread_name_prefix="dock"
        )
        self._docks: dict[str, ActiveDock] = {}
        self._lock = threading.RLock()
        self._metrics_server: MetricsServer | None = None
        self._unhealthy_logged = False
        self._data_lock: FileLock | None = None
        # Dock-folder volumes no recorder could be named for, by device: docked again once
        # an identity file is on them.
        self._unidentified: dict[str, DockEvent] = {}

    # -- sources ------------------------------------------------------------------------------

    def emit(self, event: DockEvent) -> None:
        self.events.put(event)

    def start(self) -> None:
        """Lock the data directory, recover what the last stop left, start every source.

        Refused (DaemonRunningError) while another daemon runs on the same data directory."""
        self._data_lock = lock_data_dir(self.settings)
        try:
            self._start()
        except BaseException:
            self._data_lock.release()
            self._data_lock = None
            raise

    def _start(self) -> None:
        # Evidence mode: refuse to run on a bucket that would let footage be deleted, overwritten
        # or stored with a wrong checksum (EvidenceBucketRefused). An unreachable store is not a
        # refusal: it is logged, docks go on into the spool, and the upload queue runs the
        # self-test before its first upload. A pass is remembered, so that queue need not.
        storage_check.require_store_at_start(self.station)
        recovered = recover_interrupted(self.station)
        if recovered:
            log.warning(
                "%d dock(s) were interrupted by the last stop; they resume when docked",
                len(recovered),
            )
        self.store_worker.start()
        self._reclaim_spool()
        self._store_spooled()  # clips a crash or an outage left in the spool are stored first
        if self.settings.dock.metrics_port:
            try:
                self._metrics_server = start_metrics_server(
                    self.metrics.registry, self.settings.dock.metrics_port
                )
                log.info("metrics on http://127.0.0.1:%d/metrics", self._metrics_server.port)
            except EvidenceError as e:
                log.error("metrics are off: %s", e)
        started: list[DockSource] = []
        for source in self.sources:
            try:
                source.start(self.emit)
            except EvidenceError as e:
                # The other sources keep the station working (the dock folder, by hand).
                log.error("dock source %s is off: %s", type(source).__name__, e)
                continue
            started.append(source)
            enumerate_present: Callable[[], list[DockEvent]] | None = getattr(
                source, "enumerate_present", None
            )
            if enumerate_present is not None:
                try:
                    for event in enumerate_present():
                        self.emit(event)
                except (EvidenceError, OSError) as e:
                    log.error("cannot list devices already plugged in: %s", e)
        self.sources = started
        self._watch_undocked()

    def stop(self) -> None:
        self.stopping.set()
        self.notifier.stopping("stopping: finishing the file being copied on each dock")
        for source in self.sources:
            source.stop()
        self.events.put(None)

    def docks(self) -> list[dict[str, Any]]:
        """What is being docked now (for tests and the status line)."""
        with self._lock:
            return [d.snapshot() for d in self._docks.values()]

    def healthy(self) -> bool:
        """False once a source died (udev's netlink thread): systemd's watchdog then restarts us."""
        for source in self.sources:
            alive: Callable[[], bool] | None = getattr(source, "is_alive", None)
            if alive is not None and not alive():
                return False
        return True

    # -- the loop -----------------------------------------------------------------------------

    def serve(self) -> None:
        """Dispatch dock events until stopped; store, checkpoint, report progress on timers."""
        settings = self.settings
        now = time.monotonic()
        next_retry = now + RETRY_STORE_SECONDS
        next_checkpoint = now + settings.checkpoint_interval_seconds
        next_progress = now
        next_watch = now + WATCH_SECONDS
        next_ping = now
        self.notifier.ready(self._status_line())
        while not self.stopping.is_set():
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                event = None
            if event is not None:
                self._dispatch(event)
            now = time.monotonic()
            if self.watchdog_seconds is not None and now >= next_ping:
                next_ping = now + self.watchdog_seconds / 2
                if self.healthy():
                    self.notifier.watchdog()
                elif not self._unhealthy_logged:
                    self._unhealthy_logged = True
                    log.error("a dock source stopped working; the watchdog will restart the agent")
            if now >= next_progress:
                next_progress = now + PROGRESS_SECONDS
                self._report_progress()
                self._retry_unidentified()
            if now >= next_retry:
                next_retry = now + RETRY_STORE_SECONDS
                self._retry_store()
            if now >= next_checkpoint:
                next_checkpoint = now + settings.checkpoint_interval_seconds
                self._checkpoint()
            if now >= next_watch:
                next_watch = now + WATCH_SECONDS
                self._watch_undocked()
        self._shutdown()

    def _dispatch(self, event: DockEvent) -> None:
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
            dock.bytes_total = plan_bytes(volume, self.station)
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
            self._store_spooled()  # the last clip's store was not queued by ingest
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

    def _retry_unidentified(self) -> None:
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
            data = read_small_file(volume, rel, MAX_IDENTITY_BYTES)
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

    # -- timers -------------------------------------------------------------------------------

    def _report_progress(self) -> None:
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
        self.metrics.recorders_docked.set(len(docks))
        self._refresh_metrics()
        self.notifier.status(self._status_line())

    def _refresh_metrics(self) -> None:
        with self.station.reading() as session:
            backlog = session.exec(
                select(func.count()).select_from(Clip).where(Clip.state == ClipState.SPOOLED)
            ).one()
            # The breaches `status` counts: clips catalogued past the limit (flagged late).
            over = session.exec(
                select(func.count())
                .select_from(Clip)
                .where(col(Clip.flags).contains(f'"{Flag.LATE.value}"'))
            ).one()
            last = session.exec(select(func.max(Clip.stored_at))).one()
            unidentified = session.exec(
                select(func.count())
                .select_from(DockSession)
                .where(DockSession.station_id == self.settings.station_id)
                .where(DockSession.state == DockState.UNIDENTIFIED)
            ).one()
        self.metrics.backlog_clips.set(backlog)
        self.metrics.unidentified_docks.set(unidentified)
        self.metrics.clips_over_deadline.set(over)
        # Aggregates bypass the column type on SQLite: naive UTC text or datetimes come back.
        if isinstance(last, str):
            last = datetime.fromisoformat(last)
        if isinstance(last, datetime):
            aware = last if last.tzinfo is not None else last.replace(tzinfo=UTC)
            self.metrics.last_successful_store.set(aware.timestamp())

    def _status_line(self) -> str:
        docks = self.docks()
        if not docks:
            return f"idle; {len(self.sources)} dock source(s) watching"
        parts = []
        for d in docks:
            name = d["recorder"] or d["device_id"]
            if d["bytes_total"]:
                parts.append(f"{name} {100 * d['bytes_done'] // d['bytes_total']}%")
            else:
                parts.append(str(name))
        return f"docking {len(docks)}: " + ", ".join(parts)

    def _watch_undocked(self) -> None:
        """The 24-hour watch: recorders out with an officer and not docked for too long."""
        hours = self.settings.deadline.undocked_warn_hours
        with self.station.reading() as session:
            overdue = undocked_recorders(session, self.station.clock.now(), timedelta(hours=hours))
        for row in overdue:
            log.warning(
                "recorder %s (officer %s) has not been docked for %.1f hours (limit %d)",
                row["recorder"],
                row["officer"],
                row["hours_undocked"],
                hours,
            )

    def _reclaim_spool(self) -> None:
        """Spool copies of clips already stored and verified: a stop between the store's commit
        and the spool's unlink leaves them. Copies of clips not (yet) catalogued are kept: the
        recorder is read again at its next dock and the catalog then takes them over."""
        reclaimed = 0
        for sha256 in self.station.spool.pending():
            with self.station.reading() as session:
                state = session.exec(select(Clip.state).where(Clip.sha256 == sha256)).first()
            if state == ClipState.STORED:
                self.station.spool.remove(sha256)
                reclaimed += 1
        if reclaimed:
            log.info("reclaimed %d spool copies of clips stored before the last stop", reclaimed)

    def _store_spooled(self) -> None:
        with self.station.reading() as session:
            pending = list(session.exec(select(Clip.sha256).where(Clip.state == ClipState.SPOOLED)))
        for sha256 in pending:
            self.store_worker.submit(sha256)

    def _retry_store(self) -> None:
        try:
            report = store_pending(self.station)
        except EvidenceError as e:
            log.warning("store retry failed: %s", e)
            return
        if report.stored:
            log.info("stored %d clip(s) that were waiting in the spool", len(report.stored))

    def _checkpoint(self) -> None:
        try:
            with self.station.transaction() as session:
                self.station.custody.checkpoint(session)
        except EvidenceError as e:
            log.warning("custody checkpoint failed: %s", e)
            return
        publish_checkpoints(self.station)  # never raises for a store that is away

    def _shutdown(self) -> None:
        log.info("stopping: waiting for docks in progress to reach a file boundary")
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.store_worker.finish()
        self._checkpoint()
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        self.notifier.close()
        if self._data_lock is not None:
            self._data_lock.release()
            self._data_lock = None


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


def build_sources(settings: Settings) -> list[DockSource]:
    sources: list[DockSource] = []
    if "folder" in settings.dock.sources:
        sources.append(FolderDockSource(settings.dock_dir))
    if "usb" in settings.dock.sources:
        try:
            from evidence_agent.adapters.udev_source import UdevDockSource
        except ImportError as e:  # pyudev needs libudev.so.1
            log.error("USB detection is off: cannot load udev (%s); the dock folder still works", e)
        else:
            sources.append(UdevDockSource())
    return sources


def run_daemon(settings: Settings, api: Callable[[Station], Handler] | None = None) -> None:
    """Run until SIGTERM or SIGINT; clips left in the spool by an earlier run are stored first.

    `api` makes the handler of the local API's requests (the operations are above this layer);
    without it the daemon only docks."""
    notifier = SystemdNotifier.from_environ()
    station = open_station(settings, actor=service_actor(settings.station_id))
    daemon = Daemon(station, build_sources(settings), notifier=notifier)
    server: ApiServer | None = None

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d received", signum)
        daemon.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        daemon.start()
        if api is not None:
            try:
                server = ApiServer(settings.api_socket, api(station)).start()
            except EvidenceError as e:
                # Docking goes on: footage must still come in within 24 hours.
                log.error("the local API is off: %s", e)
        gc.freeze()  # what start-up made lives as long as the daemon: out of the collector's scans
        log.info(
            "evidence agent running: station %s, dock folder %s, %s",
            settings.station_id,
            settings.dock_dir,
            station.store.describe(),
        )
        daemon.serve()
    finally:
        if server is not None:
            server.stop()
        station.close()
