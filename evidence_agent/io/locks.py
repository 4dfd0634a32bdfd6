"""Exclusive locks on files (flock(2)): one holder at a time, released when the holder dies."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

_NOTE_LIMIT = 4096


class FileLock:
    """An exclusive flock(2) held on a file until `release` (or the holder's death, however it
    dies: the kernel drops the lock with the last descriptor of the open file)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self, *, remove: bool = False) -> None:
        """Let the lock go; with `remove`, the file goes first (no one is left to find it)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def holder_note() -> str:
    """What a lock's file says of its holder: this process's id and host."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def try_lock(path: Path) -> FileLock | None:
    """Take the lock on `path` (made if missing) without waiting; None when another holds it.

    The holder's note (`holder_note`) is written in the file for whoever finds it held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder_note().encode(), 0)
    except OSError:
        os.close(fd)
        raise
    return FileLock(path, fd)


def is_held(path: Path) -> bool:
    """Whether some process holds the lock on `path` now; a missing file is held by no one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except PermissionError:
        return True  # another account's lock: whether it is held cannot be told, so it is
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # a shared lock just taken goes with the descriptor
    return False


def read_note(path: Path) -> str | None:
    """The note a lock's holder wrote in its file, if any can be read."""
    try:
        with path.open("rb") as f:
            text = f.read(_NOTE_LIMIT).decode("utf-8", errors="replace").strip()
    except OSError:
        return None
    return text or None
