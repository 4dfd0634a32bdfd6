"""Output directories (an audit bundle, a notice site, a statistics report), written by whoever may.

A command that writes a directory of output names its files relative to the directory the
caller chose. Locally this process writes them (LocalDirectory); for a caller of the local API
the caller's own process opens every file and passes the descriptor (services/local_api.py
PeerOutput), so the station's account never writes a path a caller chose and what lands is the
caller's, with their rights. The bytes themselves go through the descriptors, never the wire.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import uuid
from pathlib import Path, PurePosixPath
from typing import Protocol

from evidence_agent.errors import InputError, StorageError
from evidence_agent.services.copy_out import DirectoryTarget, Target

ABSENT, EMPTY, FULL, FILE = "absent", "empty", "full", "file"  # what state() says


class OutputDirectory(Protocol):
    """A directory whose files are written by relative names ("" is the directory itself)."""

    @property
    def path(self) -> Path:
        """The directory, as messages and events name it."""
        ...

    def state(self, rel: str) -> str:
        """ABSENT, EMPTY (a directory with nothing in it), FULL (a directory with something in
        it) or FILE (anything else there)."""
        ...

    def make(self, rel: str) -> Path:
        """A directory made with its parents if absent; its resolved path."""
        ...

    def create(self, rel: str, mode: int) -> int:
        """A new file (never an existing one) and a descriptor to write it (the caller closes
        it); `mode` masked by the writer's umask."""
        ...

    def rename(self, rel: str, new: str) -> None:
        """`rel` takes the name `new`, replacing a file or an empty directory there."""
        ...

    def sync(self, rel: str) -> None:
        """A directory's entries made durable (fsync)."""
        ...

    def remove(self, rel: str) -> None:
        """A file or a tree this command made, gone (nothing if absent)."""
        ...

    def files(self) -> dict[str, int]:
        """Every file in the directory and below, by relative name ("/"-separated), with its
        size; anything but a regular file or a directory counts as size -1."""
        ...

    def target(self, rel: str) -> Target:
        """The directory `rel` as a target of verified copies (copy_out.Target)."""
        ...


def relative(rel: str) -> PurePosixPath:
    """A name inside the directory: never absolute, never through `..`."""
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts:
        raise InputError(f"{rel!r} is not a name inside the output directory")
    return path


class LocalDirectory:
    """An output directory this process writes itself."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _at(self, rel: str) -> Path:
        return self.path / relative(rel) if rel else self.path

    def state(self, rel: str) -> str:
        path = self._at(rel)
        try:
            found = os.stat(path)
        except FileNotFoundError:
            return ABSENT
        except OSError as e:
            raise StorageError(f"cannot look at {path}: {e.strerror}") from e
        if not stat.S_ISDIR(found.st_mode):
            return FILE
        try:
            with os.scandir(path) as entries:
                return FULL if any(True for _ in entries) else EMPTY
        except OSError as e:
            raise StorageError(f"cannot list {path}: {e.strerror}") from e

    def make(self, rel: str) -> Path:
        path = self._at(rel)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError as e:
            raise InputError(f"{path} is not a directory") from e
        except OSError as e:
            raise StorageError(f"cannot create the directory {path}: {e.strerror}") from e
        return path.resolve()

    def create(self, rel: str, mode: int) -> int:
        path = self._at(rel)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(path, flags, mode)
        except OSError as e:
            raise StorageError(f"cannot create {path}: {e.strerror}") from e

    def rename(self, rel: str, new: str) -> None:
        try:
            os.replace(self._at(rel), self._at(new))
        except OSError as e:
            raise StorageError(f"cannot name {self._at(new)}: {e.strerror}") from e

    def sync(self, rel: str) -> None:
        path = self._at(rel)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise StorageError(f"cannot sync the directory {path}: {e.strerror}") from e

    def remove(self, rel: str) -> None:
        path = self._at(rel)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def files(self) -> dict[str, int]:
        found: dict[str, int] = {}
        try:
            for top, dirs, names in os.walk(self.path):
                here = Path(top).relative_to(self.path)
                for name in names + [d for d in dirs if os.path.islink(Path(top) / d)]:
                    info = os.stat(Path(top) / name, follow_symlinks=False)
                    size = info.st_size if stat.S_ISREG(info.st_mode) else -1
                    found[(here / name).as_posix()] = size
        except OSError as e:
            raise StorageError(f"cannot list {self.path}: {e.strerror}") from e
        return found

    def target(self, rel: str) -> DirectoryTarget:
        return DirectoryTarget(self._at(rel))


def output_directory(out: OutputDirectory) -> OutputDirectory:
    """A directory to write files into beside others, made when missing; a file there is
    refused."""
    if out.state("") == FILE:
        raise InputError(f"{out.path} is not a directory")
    out.make("")
    return out


def write_all(fd: int, data: bytes) -> None:
    """Every byte of `data` to `fd`, then synced. Raises OSError."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def write_whole(out: OutputDirectory, rel: str, data: bytes, *, mode: int = 0o666) -> str:
    """`rel` given the bytes `data` all at once (a temporary file beside it, synced, renamed
    over it, the directory synced): never seen half-written. Returns their SHA-256."""
    name = relative(rel)
    temp = str(name.with_name(f".{name.name}.{uuid.uuid4().hex}.tmp"))
    fd = out.create(temp, mode)
    try:
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        out.rename(temp, rel)
    except OSError as e:
        out.remove(temp)
        raise StorageError(f"cannot write {out.path / rel}: {e.strerror}") from e
    except BaseException:
        out.remove(temp)
        raise
    parent = str(name.parent)
    out.sync("" if parent == "." else parent)
    return hashlib.sha256(data).hexdigest()
