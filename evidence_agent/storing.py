"""Store service: spooled clips written to the object store, read back, verified, then reclaimed."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import select

from evidence_agent.catalog.models import Clip
from evidence_agent.custody.events import CustodyEvent, format_time
from evidence_agent.errors import EvidenceError, IntegrityError
from evidence_agent.spool import check_digest
from evidence_agent.station import Station

log = logging.getLogger(__name__)


@dataclass
class StoreReport:
    stored: list[str] = field(default_factory=list)  # clip ids
    failed: dict[str, str] = field(default_factory=dict)  # clip id -> message
    integrity_failures: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "failed": self.failed,
            "integrity_failures": self.integrity_failures,
        }


def store_clip(station: Station, sha256: str) -> str | None:
    """Put one spooled clip in the store, verify it against its ingest hash, mark it stored.

    Returns the clip id, or None when there was nothing to do (already stored)."""
    with station.reading() as session:
        clip = session.exec(select(Clip).where(Clip.sha256 == sha256)).first()
    if clip is None or clip.state != "spooled":
        return None
    path = station.spool.path_of(sha256)
    if not path.exists():
        raise IntegrityError(
            f"clip {clip.id} is catalogued as spooled but its copy {path} is missing",
            remedy="dock the recorder again (it is never cleared before a verified store) "
            "and run `evidence-agent verify`",
        )
    station.store.put(sha256, path, clip.size, clip.retention_until)
    stored = station.store.verify(sha256)
    check_digest(sha256, stored.sha256, f"stored copy of clip {clip.id}")
    now = station.clock.now()
    with station.transaction() as session:
        row = session.get(Clip, clip.id)
        assert row is not None
        if row.state != "spooled":
            return None
        row.state = "stored"
        row.stored_at = now
        session.add(row)
        station.record(
            session,
            CustodyEvent(
                type="clip.stored",
                subject_kind="clip",
                subject_id=clip.id,
                actor=station.actor,
                reason="written once to the object store and read back: hash equals the ingest hash",
                sha256=sha256,
                data={
                    "store": station.store.describe(),
                    "key": stored.key,
                    "size": stored.size,
                    "stored_at": format_time(now),
                    "retain_until": format_time(clip.retention_until)
                    if clip.retention_until
                    else None,
                },
            ),
        )
    station.spool.remove(sha256)  # only now: the verified stored copy stands in for it
    log.info("clip %s stored and verified in %s", clip.id, station.store.describe())
    return clip.id


def store_pending(station: Station) -> StoreReport:
    """Store every clip still waiting in the spool (after an outage, or a crash)."""
    with station.reading() as session:
        pending = list(session.exec(select(Clip.sha256).where(Clip.state == "spooled")))
    report = StoreReport()
    for sha256 in pending:
        _store_into(station, sha256, report)
    return report


def _store_into(station: Station, sha256: str, report: StoreReport) -> None:
    try:
        clip_id = store_clip(station, sha256)
    except IntegrityError as e:
        report.integrity_failures[sha256] = e.message
        log.error("integrity failure storing %s: %s", sha256, e.message)
        return
    except EvidenceError as e:
        report.failed[sha256] = str(e)
        log.warning("clip %s stays in the spool: %s", sha256[:12], e)
        return
    if clip_id is not None:
        report.stored.append(clip_id)


class StoreWorker:
    """A thread that stores clips as ingest catalogues them, so storing overlaps copying."""

    def __init__(self, station: Station) -> None:
        self.station = station
        self.report = StoreReport()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="store-worker", daemon=True)

    def start(self) -> StoreWorker:
        self._thread.start()
        return self

    def submit(self, sha256: str) -> None:
        self._queue.put(sha256)

    def _run(self) -> None:
        while (sha256 := self._queue.get()) is not None:
            _store_into(self.station, sha256, self.report)

    def finish(self) -> StoreReport:
        """Wait for everything submitted to be stored (or to fail) and stop the thread."""
        self._queue.put(None)
        self._thread.join()
        return self.report
