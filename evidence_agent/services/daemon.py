"""The docking daemon: its start and stop, the loop taking dock events, and its timers."""

from __future__ import annotations

import gc
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
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
from evidence_agent.domain.flags import Flag
from evidence_agent.domain.states import ClipState, DockState
from evidence_agent.errors import EvidenceError, StorageError
from evidence_agent.io.locks import FileLock, read_note, try_lock
from evidence_agent.ports import DockEvent, DockSource
from evidence_agent.services import storage_check
from evidence_agent.services.checkpoint_publishing import publish_checkpoints
from evidence_agent.services.clearing import ClearingSystemMounter, WritableMounter
from evidence_agent.services.dock_sessions import recover_interrupted
from evidence_agent.services.dock_workers import DockWorkers, store_spooled
from evidence_agent.services.local_api import ApiServer, Handler
from evidence_agent.services.station import Station, open_station, service_actor
from evidence_agent.services.storing import StoreWorker, store_pending

log = logging.getLogger(__name__)

RETRY_STORE_SECONDS = 60.0
PROGRESS_SECONDS = 2.0  # dock progress written to the catalog, metrics and STATUS= refreshed
WATCH_SECONDS = 3600.0  # the undocked-recorder watch
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


class Daemon:
    """Owns the worker threads; sources only put DockEvents on `events`, and the loop hands
    them to the dock workers (`workers`, dock_workers.py).

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
        if clear_mounter is None and isinstance(mounter, WritableMounter):
            clear_mounter = mounter
        self.metrics = metrics or create_metrics()
        self.notifier = notifier or SystemdNotifier(None)
        self.watchdog_seconds = watchdog_interval(environ)
        self.events: queue.Queue[DockEvent | None] = queue.Queue()
        self.stopping = threading.Event()
        self.store_worker = StoreWorker(station)
        self.workers = DockWorkers(
            station,
            mounter=mounter,
            clear_mounter=clear_mounter,
            metrics=self.metrics,
            store_worker=self.store_worker,
            stopping=self.stopping,
            emit=self.emit,
        )
        self.pool = self.workers.pool
        self._metrics_server: MetricsServer | None = None
        self._unhealthy_logged = False
        self._data_lock: FileLock | None = None

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
        store_spooled(
            self.station, self.store_worker
        )  # clips a crash or an outage left in the spool are stored first
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
        return self.workers.docks()

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
                self.workers.dispatch(event)
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
                self.workers.retry_unidentified()
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

    # -- timers -------------------------------------------------------------------------------

    def _report_progress(self) -> None:
        self.metrics.recorders_docked.set(self.workers.report_progress())
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
                server = ApiServer(
                    settings.api_socket, api(station), workers=settings.dock.api_workers
                ).start()
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
