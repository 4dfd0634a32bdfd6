"""The spool: each original read exactly once into a durable local copy, hashed on the way."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from blake3 import blake3

from evidence_agent.errors import StorageError
from evidence_agent.io.atomic import fsync_dir
from evidence_agent.io.copying import FileReader, FileWriter, pump
from evidence_agent.io.volume_reader import VolumeGoneError, VolumeSource

_BUFFERS = 4  # chunks in flight: memory is bounded by _BUFFERS * chunk_bytes per copy
_HEX_DIGITS = frozenset("0123456789abcdef")
DAMAGED_DIR = ".damaged"  # spool copies that did not hash to their names (Spool.set_aside)


@dataclass(frozen=True)
class SpooledFile:
    path: Path  # spool/<sha256>: durable, complete, named by its content
    sha256: str  # the evidence hash: what the custody log, receipts and auditors quote
    # BLAKE3 of the same bytes, from the same read: a retrieval checks it (several times
    # faster than SHA-256 on one core) to know it hands over exactly what was ingested.
    blake3: str
    sm3: str | None
    size: int
    changed_during_copy: bool


@dataclass(frozen=True)
class CopiedFile:
    """Read, hashed and written, not yet durable: Spool.make_durable finishes it."""

    tmp: Path  # the partial file in the incoming area
    fd: int  # open for writing until make_durable closes it
    sha256: str
    blake3: str
    sm3: str | None
    size: int
    changed_during_copy: bool


class Spool:
    """A directory of complete copies named by SHA-256, plus an incoming area for partial ones."""

    def __init__(
        self, root: Path, *, chunk_bytes: int = 2 << 20, sm3: bool = False, direct_io: bool = True
    ) -> None:
        self.root = root
        self.incoming = root / ".incoming"
        self.chunk_bytes = chunk_bytes
        self.sm3 = sm3
        self.direct_io = direct_io  # where the file systems allow it (see copying.py)
        # Copies this process wrote and hashed from the bytes it wrote: sha256 -> (device,
        # inode, size, mtime). See `hashed_here`.
        self._written: dict[str, tuple[int, int, int, int]] = {}

    def prepare(self) -> None:
        try:
            self.incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise StorageError(
                f"cannot create the spool at {self.root}: {e.strerror}",
                remedy="set paths.spool_dir (or paths.data_dir) to a writable directory",
            ) from e
        # A partial copy left by a crash holds nothing we can trust: the original is still on
        # the recorder (it is never cleared before verification), so it is read again. Only
        # partials of processes that are gone are removed: a daemon may be copying right now.
        for leftover in self.incoming.iterdir():
            if not _owner_alive(leftover.name):
                leftover.unlink(missing_ok=True)

    def path_of(self, sha256: str) -> Path:
        if len(sha256) != 64 or not set(sha256) <= _HEX_DIGITS:
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def pending(self) -> list[str]:
        """Hashes of complete copies still waiting for the object store.

        Only `<sha256>` files count: an upload's state file (`<sha256>.upload.json`) and the
        incoming area are not copies."""
        return sorted(
            p.name
            for p in self.root.iterdir()
            if len(p.name) == 64 and set(p.name) <= _HEX_DIGITS and p.is_file()
        )

    def copy_in(self, volume: VolumeSource, rel: bytes) -> SpooledFile:
        """Read the original once into the spool while hashing it; fsync; atomic rename.

        On any failure nothing is left in the spool and nothing is returned."""
        return self.make_durable(self.read_in(volume, rel))

    def read_in(self, volume: VolumeSource, rel: bytes) -> CopiedFile:
        """The first half of copy_in: read the original once, hash it, write it to a partial
        file. Finish with make_durable (or discard): the caller may read the next original
        meanwhile, while the disk catches up with this one.

        An error reading the original is raised as VolumeGoneError when the recorder itself is
        gone (`VolumeSource.gone`), else as the OSError it is: one file that cannot be read."""
        try:
            src = volume.open_file(rel)
        except OSError as e:
            if volume.gone(e):
                raise _gone(e) from e
            raise
        tmp = self.incoming / f"{os.getpid()}.{uuid.uuid4().hex}.part"
        try:
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as e:
            os.close(src)
            raise _spool_error(e, self.root) from e
        try:
            before = os.fstat(src)
            sha256, b3, sm3, copied = self._pump(src, dst, volume, before.st_size)
            after = os.fstat(src)
        except BaseException:
            os.close(dst)
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(src)
        changed = (
            copied != before.st_size
            or after.st_size != before.st_size
            or after.st_mtime_ns != before.st_mtime_ns
        )
        return CopiedFile(tmp, dst, sha256, b3, sm3, copied, changed)

    def make_durable(self, copied: CopiedFile, *, sync_dir: bool = True) -> SpooledFile:
        """The second half of copy_in: fsync, then the atomic rename to the file's hash.

        On any failure the partial file is removed and nothing is returned. With `sync_dir`
        false the rename is durable only once `sync_dir()` returns: several copies made durable
        together share that one directory fsync."""
        tmp = copied.tmp
        try:
            try:
                os.fsync(copied.fd)
                written = os.fstat(copied.fd)
            except OSError as e:
                raise _spool_error(e, self.root) from e
            finally:
                os.close(copied.fd)
            final = self.path_of(copied.sha256)
            if final.exists():
                # Same content already spooled (a duplicate on the recorder): keep the first.
                tmp.unlink()
            else:
                os.chmod(tmp, 0o400)
                os.rename(tmp, final)
                if sync_dir:
                    self.sync_dir()
                self._written[copied.sha256] = _identity(written)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return SpooledFile(
            final,
            copied.sha256,
            copied.blake3,
            copied.sm3,
            copied.size,
            copied.changed_during_copy,
        )

    def sync_dir(self) -> None:
        """Make the renames of earlier make_durable calls durable (an fsync of the spool)."""
        try:
            fsync_dir(self.root)
        except OSError as e:
            raise _spool_error(e, self.root) from e

    def discard(self, copied: CopiedFile) -> None:
        """Drop a copy read_in made instead of making it durable."""
        try:
            os.close(copied.fd)
        finally:
            copied.tmp.unlink(missing_ok=True)

    def hashed_here(self, sha256: str) -> bool:
        """Whether the spool copy of `sha256` is the very file this process wrote while hashing
        the bytes it wrote (same inode, size and modification time as when it was closed).

        Such a file needs no second read to be known to hold those bytes; a copy left by an
        earlier run, or one changed since, does."""
        expected = self._written.get(sha256)
        if expected is None:
            return False
        try:
            return _identity(os.stat(self.path_of(sha256))) == expected
        except OSError:
            return False

    def _pump(
        self, src: int, dst: int, volume: VolumeSource, size: int
    ) -> tuple[str, str, str | None, int]:
        sha = hashlib.sha256()
        b3 = blake3()
        sm3 = hashlib.new("sm3") if self.sm3 else None

        def digest(view: memoryview) -> None:
            sha.update(view)
            b3.update(view)
            if sm3 is not None:
                sm3.update(view)

        writer = FileWriter(dst, direct=self.direct_io)

        def write(view: memoryview) -> None:
            try:
                writer(view)
            except OSError as e:
                raise _spool_error(e, self.root) from e

        total = pump(
            FileReader(src, direct=self.direct_io),
            write,
            digest,
            chunk_bytes=self.chunk_bytes,
            buffers=_BUFFERS,
            read_error=lambda e: _gone(e) if volume.gone(e) else e,
            expected_bytes=size,
        )
        return sha.hexdigest(), b3.hexdigest(), (sm3.hexdigest() if sm3 else None), total

    def set_aside(self, sha256: str) -> Path:
        """Move a spool copy that does not hash to its name out of the way, kept for examination
        under `.damaged/`: it is never stored, and a fresh read of the original can take its
        place. Returns where it went."""
        path = self.path_of(sha256)
        self._written.pop(sha256, None)
        damaged = self.root / DAMAGED_DIR
        damaged.mkdir(mode=0o700, exist_ok=True)
        aside = damaged / f"{sha256}.{uuid.uuid4().hex}"
        os.rename(path, aside)
        fsync_dir(self.root)
        return aside

    def set_aside_copies(self, sha256: str) -> list[Path]:
        """The copies of `sha256` set aside by `set_aside`, oldest name first."""
        damaged = self.root / DAMAGED_DIR
        if not damaged.is_dir():
            return []
        return sorted(damaged.glob(f"{self.path_of(sha256).name}.*"))

    def remove(self, sha256: str) -> None:
        """Reclaim a spooled copy: only ever called after a verified store.

        The upload state of a multipart upload (`<sha256>.upload.json`, and a temporary file a
        crash may have left beside it) goes with it: the upload it describes is complete."""
        path = self.path_of(sha256)
        self._written.pop(sha256, None)
        state = path.with_name(f"{sha256}.upload.json")
        state.unlink(missing_ok=True)
        # `.<state>.*.tmp`, matched by hand: a glob compiles a pattern for each name, which cost
        # more than the rest of a small clip's storing
        prefix = f".{state.name}."
        with os.scandir(self.root) as entries:
            leftovers = [
                e.path
                for e in entries
                if e.name.startswith(prefix)
                and e.name.endswith(".tmp")
                and len(e.name) >= len(prefix) + 4
            ]
        for leftover in leftovers:
            Path(leftover).unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        # No fsync of the directory: should a crash undo the removal, the copy is back as a
        # leftover of a stored clip, which the upload queue verifies against the store and
        # removes again. Nothing rests on the removal being durable.


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _owner_alive(name: str) -> bool:
    pid_text = name.split(".", 1)[0]
    if not pid_text.isdecimal():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _gone(e: OSError) -> VolumeGoneError:
    return VolumeGoneError(f"recorder vanished while reading: {e.strerror}")


def _spool_error(e: OSError, root: Path) -> StorageError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(
            f"the spool at {root} is full; the copy was abandoned and nothing was marked ingested",
            remedy="free space on the spool disk (or move paths.spool_dir) and dock again: "
            "the recorder still holds every file",
        )
    return StorageError(f"cannot write to the spool at {root}: {e.strerror}")
