"""Retention on the object store's side: extend an object's lock, remove a deleted clip's object.

Each backend plugs in here. The local store has no lock and its files are removed after an
approved deletion; a store offering `extend_retention(sha256, until)` (None: keep for good; the
S3 store locks until its far-future date) and `delete_object(sha256)` (ports.LockExtending,
ports.ObjectDeleting) is driven through those methods."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from evidence_agent.adapters.local_store import LocalObjectStore
from evidence_agent.errors import StorageError
from evidence_agent.io.atomic import fsync_dir
from evidence_agent.ports import LockExtending, ObjectDeleting, ObjectStore


def extend_lock(store: ObjectStore, sha256: str, until: datetime | None) -> str:
    """Bring the store's lock in step with a longer retention; says what was done, for the log."""
    if isinstance(store, LocalObjectStore):
        return "local store: no lock; the catalog's retention is the guard"
    if isinstance(store, LockExtending):
        store.extend_retention(sha256, until)
        return "extended" if until is not None else "kept indefinitely"
    return f"not extended: {store.describe()} offers no lock extension yet"


def local_object_path(store: LocalObjectStore, sha256: str) -> Path:
    # The local store's layout: <root>/sha256/<aa>/<bb>/<sha256>.
    return store.root / "sha256" / sha256[:2] / sha256[2:4] / sha256


def remove_object(store: ObjectStore, sha256: str) -> str:
    """Remove a deleted clip's stored object; idempotent (an absent object is fine)."""
    if isinstance(store, LocalObjectStore):
        path = local_object_path(store, sha256)
        try:
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StorageError(
                f"cannot remove the stored object {path}: {e.strerror}",
                remedy="fix the store's permissions and run the same `retention delete` again",
            ) from e
        if store.exists(sha256):
            raise StorageError(f"the stored object {sha256} is still in {store.describe()}")
        return "removed"
    if isinstance(store, ObjectDeleting):
        store.delete_object(sha256)
        return "removed"
    raise StorageError(
        f"{store.describe()} offers no deletion",
        remedy="remove the object with the store's own tools once its lock allows it",
    )
