"""Read-only access to a recorder volume: safe enumeration and opening without following links."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from evidence_agent.domain.flags import SkipReason
from evidence_agent.errors import InputError

# Errors that mean the device itself went away (unplugged, reset), not that one file is bad.
# An I/O error (EIO) means either: `device_gone` tells them apart.
DEVICE_GONE_ERRNOS = frozenset({errno.ENODEV, errno.ENXIO, errno.ESHUTDOWN, errno.ENOMEDIUM})

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Recorders write a few levels (DCIM/100MEDIA); one descriptor is open per level while listing,
# so the bound also keeps a hostile volume far from the process's open-file limit.
MAX_DEPTH = 64


class VolumeGoneError(InputError):
    """The recorder vanished while it was being read; what was finished is kept, the rest resumes."""


@dataclass(frozen=True)
class VolumeFile:
    """A regular file found on the volume, named by its path relative to the volume root."""

    rel: bytes
    size: int
    mtime_ns: int

    @property
    def display(self) -> str:
        return display_path(self.rel)

    @property
    def name(self) -> str:
        return display_path(os.path.basename(self.rel))


@dataclass(frozen=True)
class SkippedEntry:
    rel: bytes
    reason: SkipReason
    detail: str

    @property
    def display(self) -> str:
        return display_path(self.rel)


@dataclass
class VolumeListing:
    files: list[VolumeFile] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)


class VolumeSource(Protocol):
    """A recorder volume as ingest reads it: listed, each file opened for reading, and asked
    whether an error means the device is gone. `root` is the volume as the catalog names it."""

    @property
    def root(self) -> Path: ...

    def listing(self) -> VolumeListing: ...

    def open_file(self, rel: bytes) -> int: ...

    def gone(self, error: OSError) -> bool: ...


@dataclass(frozen=True)
class LocalVolume:
    """A volume this process reads itself, by its mount point (VolumeSource)."""

    root: Path

    def listing(self) -> VolumeListing:
        return list_volume(self.root)

    def open_file(self, rel: bytes) -> int:
        return open_volume_file(self.root, rel)

    def gone(self, error: OSError) -> bool:
        return device_gone(self.root, error)


def device_gone(root: Path, error: OSError) -> bool:
    """Whether an error reading the volume means the recorder itself is gone: an error that
    says so, or an I/O error after which the volume's root cannot be read either. A bad
    sector or a damaged file gives an I/O error too, and leaves the rest readable."""
    if error.errno in DEVICE_GONE_ERRNOS:
        return True
    if error.errno != errno.EIO:
        return False
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return True
    try:
        os.listdir(fd)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def error_text(error: OSError) -> str:
    """An OS error as a file's reason says it: the system's words and the error's name."""
    name = errno.errorcode.get(error.errno or 0)
    words = error.strerror or str(error)
    return f"{words} ({name})" if name else words


def display_path(raw: bytes) -> str:
    """A path as people read it: undecodable bytes shown as \\xNN escapes, never lost."""
    return raw.decode("utf-8", errors="backslashreplace")


def volume_text(volume: Path) -> str:
    """A volume's mount point as the catalog and the log keep it: its bytes, shown as
    `display_path` shows them (a directory name that is not UTF-8 cannot be stored as it is)."""
    return display_path(os.fsencode(volume))


def list_volume(root: Path) -> VolumeListing:
    """Every entry under `root`: regular files to read, everything else with a reason.

    Symlinks are never followed (not even to media files), other file systems mounted inside
    the volume are not entered, and FIFOs or device files are reported, never opened."""
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError as e:
        raise InputError(
            f"cannot open recorder volume {root}: {e.strerror}",
            remedy="check that the path is a mounted recorder volume (a directory) and readable",
        ) from e
    listing = VolumeListing()
    try:
        root_dev = os.fstat(root_fd).st_dev
        _walk(root, root_fd, root_dev, listing)
    finally:
        os.close(root_fd)
    listing.files.sort(key=lambda f: f.rel)
    return listing


def _walk(root: Path, root_fd: int, root_dev: int, listing: VolumeListing) -> None:
    """Depth first, in name order, with an explicit stack: a volume nested thousands deep is
    listed down to MAX_DEPTH and the rest reported, instead of exhausting Python's stack."""
    stack: list[tuple[int, bytes, Iterator[bytes]]] = []
    entries = _list_dir(root, root_fd, b"", listing)
    if entries is not None:
        stack.append((root_fd, b"", iter(entries)))
    try:
        while stack:
            dir_fd, prefix, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if dir_fd != root_fd:
                    os.close(dir_fd)
                continue
            child = _visit(root, dir_fd, prefix + name, name, root_dev, len(stack), listing)
            if child is not None:
                rel = prefix + name + b"/"
                child_entries = _list_dir(root, child, rel, listing)
                if child_entries is None:
                    os.close(child)
                else:
                    stack.append((child, rel, iter(child_entries)))
    finally:
        for dir_fd, _, _ in stack:
            if dir_fd != root_fd:
                os.close(dir_fd)


def _list_dir(root: Path, dir_fd: int, prefix: bytes, listing: VolumeListing) -> list[bytes] | None:
    try:
        return sorted(_scandir(dir_fd))
    except OSError as e:
        if device_gone(root, e):
            raise VolumeGoneError(f"recorder vanished while listing: {e.strerror}") from e
        listing.skipped.append(SkippedEntry(prefix or b".", SkipReason.UNREADABLE, error_text(e)))
        return None


def _visit(
    root: Path,
    dir_fd: int,
    rel: bytes,
    name: bytes,
    root_dev: int,
    depth: int,
    listing: VolumeListing,
) -> int | None:
    """Record one entry; for a directory to descend into, return its open descriptor."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        listing.skipped.append(SkippedEntry(rel, SkipReason.VANISHED, "gone while listing"))
        return None
    except OSError as e:
        if device_gone(root, e):
            raise VolumeGoneError(f"recorder vanished while listing: {e.strerror}") from e
        listing.skipped.append(SkippedEntry(rel, SkipReason.UNREADABLE, error_text(e)))
        return None
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        target = _readlink(name, dir_fd)
        listing.skipped.append(
            SkippedEntry(rel, SkipReason.SYMLINK, f"symbolic link to {target}, not followed")
        )
    elif st.st_dev != root_dev:
        listing.skipped.append(
            SkippedEntry(
                rel, SkipReason.OTHER_FILESYSTEM, "another file system mounted inside the volume"
            )
        )
    elif stat.S_ISDIR(mode):
        if depth >= MAX_DEPTH:
            listing.skipped.append(
                SkippedEntry(
                    rel, SkipReason.TOO_DEEP, f"nested more than {MAX_DEPTH} directories deep"
                )
            )
            return None
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as e:
            if device_gone(root, e):
                raise VolumeGoneError(f"recorder vanished while listing: {e.strerror}") from e
            listing.skipped.append(SkippedEntry(rel, SkipReason.UNREADABLE, error_text(e)))
    elif stat.S_ISREG(mode):
        listing.files.append(VolumeFile(rel, st.st_size, st.st_mtime_ns))
    else:
        listing.skipped.append(
            SkippedEntry(rel, SkipReason.SPECIAL_FILE, f"{_kind(mode)}, not read")
        )
    return None


def _scandir(dir_fd: int) -> Iterator[bytes]:
    # os.listdir on a descriptor gives str names; re-encode with the file system's codec so
    # that names that are not UTF-8 keep their exact bytes (surrogateescape round-trips).
    for name in os.listdir(dir_fd):
        yield os.fsencode(name)


def _readlink(name: bytes, dir_fd: int) -> str:
    try:
        return display_path(os.readlink(name, dir_fd=dir_fd))
    except OSError:
        return "?"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def open_volume_file(root: Path, rel: bytes) -> int:
    """Open a file for reading, walking each directory without following any link.

    A recorder that swaps a directory for a symlink after listing cannot lead us outside
    the volume: every component is opened relative to its parent with O_NOFOLLOW."""
    parts = rel.split(b"/")
    dir_fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        try:
            fd = os.open(parts[-1], _FILE_FLAGS | os.O_NOATIME, dir_fd=dir_fd)
        except PermissionError:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=dir_fd)  # O_NOATIME needs ownership
    finally:
        os.close(dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InputError(f"{display_path(rel)} is no longer a regular file ({_kind(st.st_mode)})")
    os.set_blocking(fd, True)
    return fd


def read_small_file(volume: VolumeSource, rel: bytes, limit: int) -> bytes | None:
    """A small file (the identity document) read safely; None when absent."""
    try:
        fd = volume.open_file(rel)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(
                f"{display_path(rel)} is a symbolic link; refusing to follow it"
            ) from e
        raise InputError(f"cannot read {display_path(rel)}: {e.strerror}") from e
    try:
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    return data
