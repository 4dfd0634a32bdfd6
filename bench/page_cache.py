"""Make a recorder volume cold: its files' pages leave the page cache, nothing else does.

Dropping every cache (/proc/sys/vm/drop_caches) would also evict the programs under test (the
agent's interpreter and libraries, ffprobe), which a docking station keeps warm; the footage it
has never read is what is cold. POSIX_FADV_DONTNEED on each clean file evicts just that, and
needs no root."""

from __future__ import annotations

import os
from pathlib import Path


def evict_tree(root: Path) -> int:
    """Flush and evict every regular file under `root`; the number of bytes evicted."""
    os.sync()  # dirty pages are not evicted: write them first
    total = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                total += os.fstat(fd).st_size
            finally:
                os.close(fd)
    return total
