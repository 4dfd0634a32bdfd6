"""Test doubles that hold a dock at a chosen point, so an unplug or a stop lands mid-dock on purpose."""

from __future__ import annotations

import threading

from evidence_agent.io.spool import CopiedFile, Spool, SpooledFile
from evidence_agent.io.volume_reader import VolumeSource
from evidence_agent.services.station import Station

GATE_TIMEOUT = 30.0


class GatedSpool(Spool):
    """The real spool, but the copy of the `hold_at`-th file waits until the test releases it.

    Files before it are copied (and catalogued) as usual: the dock is caught between two files.
    With `durable`, the hold is after the file is read, before its copy is made durable and
    catalogued: the dock has read the file when another dock may take it first."""

    def __init__(self, spool: Spool, hold_at: int = 2, *, durable: bool = False) -> None:
        super().__init__(spool.root, chunk_bytes=spool.chunk_bytes, sm3=spool.sm3)
        self.hold_at = hold_at
        self.durable = durable
        self.copies = 0
        self.made_durable = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def _hold(self) -> None:
        self.entered.set()
        if not self.release.wait(GATE_TIMEOUT):
            raise AssertionError("the test never released the copy")

    def read_in(self, volume: VolumeSource, rel: bytes) -> CopiedFile:
        self.copies += 1
        if not self.durable and self.copies == self.hold_at:
            self._hold()
        return super().read_in(volume, rel)

    def make_durable(self, copied: CopiedFile, *, sync_dir: bool = True) -> SpooledFile:
        self.made_durable += 1
        if self.durable and self.made_durable == self.hold_at:
            self._hold()
        return super().make_durable(copied, sync_dir=sync_dir)


def gate_spool(station: Station, hold_at: int = 2, *, durable: bool = False) -> GatedSpool:
    gated = GatedSpool(station.spool, hold_at, durable=durable)
    station.spool = gated
    return gated
