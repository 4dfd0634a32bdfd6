"""Dock folder source (watchdog): each directory that appears in the dock folder is a recorder volume."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from evidence_agent.errors import StorageError
from evidence_agent.ports import DockEvent

log = logging.getLogger(__name__)


class _Handler(FileSystemEventHandler):
    """Runs on watchdog's thread: it only turns file-system events into dock events."""

    def __init__(self, root: Path, emit: Callable[[DockEvent], None]) -> None:
        self.root = root
        self.emit = emit

    def _volume(self, path: str | bytes) -> Path | None:
        candidate = Path(path.decode() if isinstance(path, bytes) else path)
        return candidate if candidate.parent == self.root else None

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, DirMovedEvent):
            gone, came = self._volume(event.src_path), self._volume(event.dest_path)
            if gone is not None:
                self.emit(DockEvent("removed", gone, "folder", str(gone)))
            if came is not None:
                self.emit(DockEvent("added", came, "folder", str(came)))
        elif isinstance(event, DirCreatedEvent):
            if (volume := self._volume(event.src_path)) is not None:
                self.emit(DockEvent("added", volume, "folder", str(volume)))
        elif (
            isinstance(event, DirDeletedEvent)
            and (volume := self._volume(event.src_path)) is not None
        ):
            self.emit(DockEvent("removed", volume, "folder", str(volume)))


class FolderDockSource:
    """Watches one folder where mounted recorder volumes appear (an automounter's target, or a
    folder volumes are copied or moved into). Volumes already there at start are docked too."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def start(self, emit: Callable[[DockEvent], None]) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(
                f"cannot create the dock folder {self.root}: {e.strerror}",
                remedy="set paths.dock_dir to a writable directory",
            ) from e
        observer = Observer()
        observer.schedule(_Handler(self.root, emit), str(self.root), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer
        for child in sorted(self.root.iterdir()):
            if child.is_dir() and not child.is_symlink():
                emit(DockEvent("added", child, "folder", str(child)))
        log.info("watching dock folder %s", self.root)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
