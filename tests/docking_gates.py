"""Test doubles that hold a dock at a chosen point, so an unplug or a stop lands mid-dock on purpose."""

from __future__ import annotations

import threading
from pathlib import Path

from evidence_agent.io.spool import CopiedFile, Spool
from evidence_agent.services.station import Station

GATE_TIMEOUT = 30.0


class GatedSpool(Spool):
    """The real spool, but the copy of the `hold_at`-th file waits until the test releases it.

    Files before it are copied (and catalogued) as usual: the dock is caught between two files."""

    def __init__(self, spool: Spool, hold_at: int = 2) -> None:
        super().__init__(spool.root, chunk_bytes=spool.chunk_bytes, sm3=spool.sm3)
        self.hold_at = hold_at
        self.copies = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def read_in(self, volume_root: Path, rel: bytes) -> CopiedFile:
        self.copies += 1
        if self.copies == self.hold_at:
            self.entered.set()
            if not self.release.wait(GATE_TIMEOUT):
                raise AssertionError("the test never released the copy")
        return super().read_in(volume_root, rel)


def gate_spool(station: Station, hold_at: int = 2) -> GatedSpool:
    gated = GatedSpool(station.spool, hold_at)
    station.spool = gated
    return gated
