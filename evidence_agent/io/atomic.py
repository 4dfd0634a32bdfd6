"""Atomic, durable file writes: a file is either its old bytes or its new ones, never a mix."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (a rename, a link, an unlink) survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: Path, data: bytes, *, mode: int = 0o666, durable: bool = True, replace: bool = True
) -> None:
    """Give `path` the bytes `data` all at once, through a temporary file beside it.

    `replace` renames the temporary file over `path`; without it the temporary file is linked
    to `path`, which raises FileExistsError when `path` exists: never an overwrite. `durable`
    syncs the file before it takes the name and the directory after; without it a crash may
    leave the old file (or none), never a partial one. `mode` is masked by the umask, as with
    open(). Raises OSError; the temporary file is gone either way."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
        fsync_dir(path.parent)
