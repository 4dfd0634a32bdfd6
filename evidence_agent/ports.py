"""Ports: the small interfaces the service layer needs from the outside world."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from evidence_agent.domain.media import MediaInfo


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC now."""
        ...


class Prober(Protocol):
    def probe(self, path: Path) -> MediaInfo:
        """Media facts of a file; raises InputError when the file is not readable media."""
        ...


@runtime_checkable
class Closing(Protocol):
    """An adapter holding something to release when its station closes (a worker process)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str  # hex, as the store reports it (or as read back)
    # put() stored the object as a hard link to the source file itself (same inode): the store
    # wrote no byte, so the object's bytes are the source file's.
    linked_to_source: bool = False


class ObjectStore(Protocol):
    """Write-once evidence storage addressed by SHA-256."""

    def put(
        self,
        sha256: str,
        source: Path,
        size: int,
        retain_until: datetime | None,
        *,
        source_checked: bool = False,
    ) -> StoredObject:
        """Store the spool file under its hash, never overwriting; idempotent for equal content.

        Bytes get the address only once they are known to hash to it (the server checks them,
        or the store reads them), else IntegrityError: a source that does not match never
        poisons the address. `source_checked` says the caller hashed this very file as it
        wrote it and it is unchanged since (Spool.hashed_here), so a store that would read it
        back may skip that. A store with locks locks the object until `retain_until`, the clip's
        retention date in the catalog (None: kept for good); it never picks a date of its own.
        What is stored is relied on only after `verify` has checked it against the ingest hash."""
        ...

    def verify(self, sha256: str) -> StoredObject:
        """Read the stored object back (or ask the server for its checksum) and check its hash.

        Raises IntegrityError when the stored bytes do not hash to `sha256`."""
        ...

    def open(self, sha256: str) -> BinaryIO:
        """A stream of the stored bytes; the caller verifies while reading."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def iter_keys(self) -> Iterator[str]:
        """Every stored object's SHA-256 (hex)."""
        ...

    def describe(self) -> str:
        """Where objects go, for messages (no secrets)."""
        ...


# What review's retention asks of a store (review/retention.py), each optional: a store offers
# the methods it has, and review names what a store without one leaves to the catalog.


@runtime_checkable
class LockExtending(Protocol):
    """An object store with locks (S3 Object Lock); without it, the catalog's retention guards."""

    def extend_retention(self, sha256: str, until: datetime | None) -> None:
        """Make the object's lock last at least until `until` (None: indefinitely); never shorten."""
        ...


@runtime_checkable
class ObjectDeleting(Protocol):
    """An object store that removes objects (the local store, S3); without it nothing is deleted."""

    def delete_object(self, sha256: str) -> None:
        """Remove the object once its lock allows it; the store refuses while it is locked."""
        ...


@runtime_checkable
class LegalHolding(Protocol):
    """An object store that can put a stored object under legal hold (S3 PutObjectLegalHold);
    without it the catalog's hold is the only guard, and the custody log says so."""

    def set_legal_hold(self, sha256: str, on: bool) -> None:
        """Hold the object (`on`: no deletion, whatever its retention) or lift the hold."""
        ...


@dataclass(frozen=True)
class DockEvent:
    """A recorder volume that appeared (or went away) at the dock; sources only enqueue these."""

    kind: str  # "added" or "removed"
    volume: Path | None  # the mounted (or to-be-mounted) volume's directory
    source: str  # "folder", "usb", "cli"
    device_id: str  # stable id of the device for this dock (path, or udev device path)
    recorder_serial: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


class DockSource(Protocol):
    """Something that notices recorders arriving: a watched folder, udev, a test."""

    def start(self, emit: Callable[[DockEvent], None]) -> None:
        """Begin watching; `emit` is called from the source's own thread and must only enqueue."""
        ...

    def stop(self) -> None: ...
