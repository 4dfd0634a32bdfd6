"""Spool space: free space and the backlog on the spool's file system, warned of before it fills."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evidence_agent.io.spool import Spool
from evidence_agent.services.station import Station

log = logging.getLogger(__name__)

LOW_SPACE_FACTOR = 2  # "low" below this many times ingest.min_spool_free_bytes
LOW_SPACE_SHARE = 0.10  # ... or below this share of the spool's file system


@dataclass(frozen=True)
class SpoolSpace:
    """Free space on the spool's file system, what waits in it, and a warning before it fills."""

    root: str
    free_bytes: int
    total_bytes: int
    waiting_clips: int
    waiting_bytes: int
    min_free_bytes: int
    level: str  # "ok", "low" (warn), "critical" (below ingest.min_spool_free_bytes)
    message: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "free_bytes": self.free_bytes,
            "total_bytes": self.total_bytes,
            "waiting_clips": self.waiting_clips,
            "waiting_bytes": self.waiting_bytes,
            "min_free_bytes": self.min_free_bytes,
            "level": self.level,
            "message": self.message,
        }


def spool_space(spool: Spool, min_free_bytes: int) -> SpoolSpace | None:
    """Free space and backlog of the spool; None when the spool does not exist yet."""
    try:
        usage = os.statvfs(spool.root)
        pending = spool.pending()
    except OSError:
        return None
    free = usage.f_bavail * usage.f_frsize
    total = usage.f_blocks * usage.f_frsize
    waiting = 0
    for name in pending:
        with contextlib.suppress(OSError):
            waiting += (spool.root / name).stat().st_size
    level, message = _space_level(spool.root, free, total, len(pending), waiting, min_free_bytes)
    return SpoolSpace(
        str(spool.root), free, total, len(pending), waiting, min_free_bytes, level, message
    )


def _space_level(
    root: Path, free: int, total: int, clips: int, waiting: int, min_free: int
) -> tuple[str, str | None]:
    gib = 1 << 30
    backlog = (
        f"; {clips} clip(s), {waiting / gib:.1f} GiB, wait in it for the object store"
        if clips
        else ""
    )
    if free < min_free:
        return "critical", (
            f"the spool at {root} has {free / gib:.1f} GiB free, less than "
            f"ingest.min_spool_free_bytes ({min_free / gib:.1f} GiB){backlog}: a dock may fail "
            "for lack of space (the recorder keeps its files). Bring the object store back "
            "(`evidence-agent store` uploads and reclaims) or free space"
        )
    if free < LOW_SPACE_FACTOR * min_free or (total and free < LOW_SPACE_SHARE * total):
        return "low", (
            f"the spool at {root} is filling: {free / gib:.1f} GiB free of "
            f"{total / gib:.1f} GiB{backlog}. Check the object store (`evidence-agent storage "
            "check`) before the spool fills"
        )
    return "ok", None


def watch_spool_space(station: Station) -> SpoolSpace | None:
    """Check the spool's free space and log a warning (an error when critical) before it fills.

    For the daemon's timers and `status`; `store_pending` calls it after each retry."""
    space = spool_space(station.spool, station.settings.ingest.min_spool_free_bytes)
    if space is not None and space.message is not None:
        if space.level == "critical":
            log.error("%s", space.message)
        else:
            log.warning("%s", space.message)
    return space
