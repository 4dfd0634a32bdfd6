"""The docking daemon: dock sources enqueue, workers ingest, a store worker stores and verifies."""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from evidence_agent.config import Settings
from evidence_agent.errors import EvidenceError
from evidence_agent.folder_source import FolderDockSource
from evidence_agent.ingest import ingest_volume
from evidence_agent.ports import DockEvent, DockSource
from evidence_agent.station import Station, open_station, service_actor
from evidence_agent.storing import StoreWorker, store_pending

log = logging.getLogger(__name__)

RETRY_STORE_SECONDS = 60.0


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
class Daemon:
    """Owns the worker threads; sources only put DockEvents on `events`."""

    station: Station
    sources: list[DockSource]

    def __post_init__(self) -> None:
        settings = self.station.settings
        self.events: queue.Queue[DockEvent | None] = queue.Queue()
        self.stopping = threading.Event()
        self.store_worker = StoreWorker(self.station)
        self.pool = ThreadPoolExecutor(
            max_workers=settings.dock.max_concurrent, thread_name_prefix="dock"
        )
        self.active: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def emit(self, event: DockEvent) -> None:
        self.events.put(event)

    def start(self) -> None:
        self.store_worker.start()
        for source in self.sources:
            source.start(self.emit)

    def stop(self) -> None:
        self.stopping.set()
        for source in self.sources:
            source.stop()
        self.events.put(None)

    def serve(self) -> None:
        """Dispatch dock events until stopped; retry the store and checkpoint on a timer."""
        settings = self.station.settings
        next_retry = time.monotonic() + RETRY_STORE_SECONDS
        next_checkpoint = time.monotonic() + settings.checkpoint_interval_seconds
        while not self.stopping.is_set():
            try:
                event = self.events.get(timeout=1.0)
            except queue.Empty:
                event = None
            if event is not None:
                self._dispatch(event)
            now = time.monotonic()
            if now >= next_retry:
                next_retry = now + RETRY_STORE_SECONDS
                self._retry_store()
            if now >= next_checkpoint:
                next_checkpoint = now + settings.checkpoint_interval_seconds
                self._checkpoint()
        self._shutdown()

    def _dispatch(self, event: DockEvent) -> None:
        with self._lock:
            running = self.active.get(event.device_id)
            if event.kind == "removed":
                if running is not None and not running.done():
                    log.warning(
                        "%s went away while it was being read; it resumes when docked again",
                        event.device_id,
                    )
                return
            if running is not None and not running.done():
                return  # already being ingested
            if event.volume is None:
                log.warning("dock event without a mounted volume from %s ignored", event.source)
                return
            self.active[event.device_id] = self.pool.submit(self._ingest, event)

    def _ingest(self, event: DockEvent) -> None:
        volume = event.volume
        assert volume is not None
        settle = self.station.settings.dock.settle_seconds
        try:
            # A volume that is still being written (copied into the dock folder, a slow mount)
            # is read only once it has stopped changing.
            signature = volume_signature(volume)
            while not self.stopping.wait(settle):
                latest = volume_signature(volume)
                if latest == signature:
                    break
                signature = latest
            if self.stopping.is_set():
                return
            log.info("recorder volume docked at %s (%s)", volume, event.source)
            report = ingest_volume(
                self.station,
                volume,
                recorder_serial=event.recorder_serial,
                source=event.source,
                on_clip=self.store_worker.submit,
            )
            new = sum(1 for c in report.clips if c.outcome == "new")
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
                log.warning("%s", warning)
        except EvidenceError as e:
            log.error("ingest of %s failed: %s", volume, e)
        except Exception:
            # A bug in one dock must not stop the station; it is logged with its traceback.
            log.exception("unexpected failure ingesting %s", volume)

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

    def _shutdown(self) -> None:
        log.info("stopping: waiting for docks in progress")
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.store_worker.finish()
        self._checkpoint()


def build_sources(settings: Settings) -> list[DockSource]:
    sources: list[DockSource] = []
    if "folder" in settings.dock.sources:
        sources.append(FolderDockSource(settings.dock_dir))
    return sources


def run_daemon(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT; clips left in the spool by an earlier run are stored first."""
    station = open_station(settings, actor=service_actor(settings.station_id))
    daemon = Daemon(station, build_sources(settings))

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d received", signum)
        daemon.stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        daemon.start()
        log.info(
            "evidence agent running: station %s, dock folder %s, %s",
            settings.station_id,
            settings.dock_dir,
            station.store.describe(),
        )
        daemon.serve()
    finally:
        station.close()
