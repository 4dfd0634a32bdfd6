"""Writing an audit bundle to disk, all or nothing, in the format custody/bundle.py defines."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from evidence_agent.custody.bundle import (
    CATALOG_TABLES,
    MANIFEST_FILE,
    SUMS_FILE,
    catalog_path,
    check_station_ids,
    checkpoint_path,
    checkpoints_path,
    entries_path,
    json_line,
    manifest_line,
    public_pem_path,
    sums_text,
    verifier_key_path,
)
from evidence_agent.errors import InputError, IntegrityError, StorageError
from evidence_agent.services.output_directory import (
    FILE,
    FULL,
    LocalDirectory,
    OutputDirectory,
)


@dataclass(frozen=True)
class StationExport:
    """One station's log as the exporter hands it over; iterables are consumed once, in order."""

    station_id: str
    verifier_key: str
    public_key_pem: str
    entries: Iterable[bytes]
    checkpoints: Iterable[tuple[int, str]]  # (tree size, signed note)
    catalog: Mapping[str, Iterable[Mapping[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class StationSummary:
    station_id: str
    entries: int
    checkpoints: int
    latest_checkpoint: int | None


@dataclass(frozen=True)
class BundleSummary:
    path: Path
    files: int
    bytes: int
    stations: tuple[StationSummary, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "files": self.files,
            "bytes": self.bytes,
            "stations": [
                {
                    "id": s.station_id,
                    "entries": s.entries,
                    "checkpoints": s.checkpoints,
                    "latest_checkpoint": s.latest_checkpoint,
                }
                for s in self.stations
            ],
        }


def write_bundle(
    dest: Path,
    stations: Sequence[StationExport],
    *,
    created_at: datetime,
    created_by: str,
    output: OutputDirectory | None = None,
) -> BundleSummary:
    """Write a bundle at ``dest`` (absent or an empty directory), all or nothing.

    The files are written into a hidden sibling directory, synced, and renamed into place, so
    an interrupted export never leaves something that looks like a bundle. `output`: the
    directory holding ``dest``, by default written by this process; the local API passes one
    the caller's own process writes.
    """
    ids = [s.station_id for s in stations]
    check_station_ids(ids)
    out = output or LocalDirectory(dest.parent)
    if out.state(dest.name) in (FULL, FILE):
        raise InputError(
            f"{dest} already exists and is not an empty directory",
            remedy="give a new directory name; a bundle is never written over another",
        )
    staging = f".{dest.name}.partial-{uuid.uuid4().hex}"
    out.make("")
    out.make(staging)
    try:
        writer = _Writer(out, staging)
        summaries = tuple(_write_station(writer, s) for s in stations)
        writer.write(MANIFEST_FILE, manifest_line(ids, created_at, created_by))
        writer.write(SUMS_FILE, sums_text(writer.digests), record=False)
        writer.sync_dirs()
        out.rename(staging, dest.name)
        out.sync("")
    except OSError as e:
        out.remove(staging)
        raise StorageError(f"cannot write the bundle at {dest}: {e.strerror or e}") from e
    except BaseException:
        out.remove(staging)
        raise
    return BundleSummary(dest, len(writer.digests) + 1, writer.bytes, summaries)


def _write_station(writer: _Writer, station: StationExport) -> StationSummary:
    sid = station.station_id
    writer.write(verifier_key_path(sid), (station.verifier_key.strip() + "\n").encode("utf-8"))
    writer.write(public_pem_path(sid), station.public_key_pem.encode("ascii"))
    count = 0
    with writer.open(entries_path(sid)) as out:
        for entry in station.entries:
            if b"\n" in entry:
                raise IntegrityError(
                    f"custody entry {count} of station {sid} contains a newline byte: it is not "
                    "canonical JSON, so the log was altered",
                    remedy="run `evidence-agent verify` on the station",
                )
            out.write(entry)
            out.write(b"\n")
            count += 1
    sizes: list[int] = []
    writer.mkdir(checkpoints_path(sid))
    for size, note in station.checkpoints:
        if size in sizes:
            raise InputError(f"two checkpoints of size {size} for station {sid}")
        sizes.append(size)
        writer.write(checkpoint_path(sid, size), note.encode("utf-8"))
    for table, rows in station.catalog.items():
        if table not in CATALOG_TABLES:
            raise InputError(f"unknown catalog table {table!r} for a bundle")
        with writer.open(catalog_path(sid, table)) as out:
            for row in rows:
                out.write(json_line(row))
    return StationSummary(sid, count, len(sizes), max(sizes) if sizes else None)


class _HashingFile:
    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self.sha.update(data)
        self.size += len(data)


class _Writer:
    """Creates files under a root, hashing what it writes and syncing every file and directory."""

    def __init__(self, out: OutputDirectory, root: str) -> None:
        self.out = out
        self.root = root
        self.digests: dict[str, str] = {}
        self.bytes = 0
        self._dirs: set[str] = {root}

    def mkdir(self, rel: str) -> None:
        path = f"{self.root}/{rel}"
        self.out.make(path)
        while path != self.root:
            self._dirs.add(path)
            path = path.rpartition("/")[0]

    @contextlib.contextmanager
    def open(self, rel: str, *, record: bool = True) -> Iterator[_HashingFile]:
        parent = rel.rpartition("/")[0]
        if parent:
            self.mkdir(parent)
        with os.fdopen(self.out.create(f"{self.root}/{rel}", 0o666), "wb") as f:
            hashing = _HashingFile(f)
            yield hashing
            f.flush()
            os.fsync(f.fileno())
        self.bytes += hashing.size
        if record:
            self.digests[rel] = hashing.sha.hexdigest()

    def write(self, rel: str, data: bytes, *, record: bool = True) -> None:
        with self.open(rel, record=record) as out:
            out.write(data)

    def sync_dirs(self) -> None:
        for path in sorted(self._dirs, key=lambda p: p.count("/"), reverse=True):
            self.out.sync(path)
