"""Report and site files written whole: a temporary name, fsync, rename, so none is seen half-written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from evidence_agent.errors import InputError


def output_directory(directory: Path) -> Path:
    """The directory to write into, made when missing; an existing file there is refused."""
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def write_whole(path: Path, data: bytes) -> str:
    """Write `data` to `path` atomically; its SHA-256."""
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()
