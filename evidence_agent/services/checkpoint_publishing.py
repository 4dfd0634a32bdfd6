"""Custody checkpoints published to the bucket under Object Lock, beside the verifier key."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlmodel import col, select

from evidence_agent.adapters.s3.errors import StoreUnavailableError
from evidence_agent.catalog.models import CustodyCheckpoint
from evidence_agent.domain.retention import artefact_retain_until
from evidence_agent.errors import EvidenceError, IntegrityError
from evidence_agent.io.atomic import write_atomically
from evidence_agent.ports import StoredObject
from evidence_agent.services.station import Station

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
PUBLISHED_FILE = "published-checkpoints.json"  # in the data directory


@dataclass
class PublishReport:
    published: list[str] = field(default_factory=list)  # object keys
    failed: str | None = None
    integrity_failure: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "failed": self.failed,
            "integrity_failure": self.integrity_failure,
        }


@runtime_checkable
class ArtefactStore(Protocol):
    """A store that keeps small artefacts under Object Lock (S3ObjectStore)."""

    def describe(self) -> str: ...

    def put_bytes(self, key: str, data: bytes, retain_until: datetime | None) -> StoredObject: ...


def checkpoint_key(station_id: str, size: int) -> str:
    """Where a station's checkpoint of a tree size is published, under the store's prefix."""
    return f"{CHECKPOINT_DIR}/{station_id}/{size}.note"


def verifier_key_name(station_id: str) -> str:
    """Where a station's note verifier key is published, beside its checkpoints."""
    return f"{CHECKPOINT_DIR}/{station_id}/station.vkey"


def publish_checkpoints(station: Station, *, force: bool = False) -> PublishReport:
    """Put the station's signed checkpoints that are not in the bucket yet, at
    `<prefix>checkpoints/<station>/<size>.note` (and its verifier key beside them), with
    COMPLIANCE retention for the longest dated class of the station's retention policy.

    Call it after a transaction that made a checkpoint has committed. Never raises for the
    store being away: the checkpoints stay in the catalog and go with the next call (the upload
    queue's retry calls it). Skipped (quickly) while the store is known to be away unless
    `force`. A different note already published under the same name is an integrity failure:
    logged as an error and reported, never overwritten. Nothing to do for the local store."""
    report = PublishReport()
    store = station.store
    if not isinstance(store, ArtefactStore):
        return report
    away = station.store_away.reason(store)
    if not force and away is not None:
        report.failed = f"{away}; published later"
        return report
    sid = station.settings.station_id
    marker_path = station.settings.data_dir / PUBLISHED_FILE
    with station.publish_lock:
        published = _published_size(marker_path, store.describe(), sid)
        with station.reading() as session:
            rows = list(
                session.exec(
                    select(CustodyCheckpoint)
                    .where(CustodyCheckpoint.station_id == sid)
                    .where(col(CustodyCheckpoint.size) > published)
                    .order_by(col(CustodyCheckpoint.size))
                )
            )
        if not rows:
            return report
        retain_until = artefact_retain_until(station.settings.retention, station.clock.now())
        done = published
        try:
            if published == 0:
                key = station.custody.signer.verifier.key_string()
                store.put_bytes(verifier_key_name(sid), (key + "\n").encode(), retain_until)
            for row in rows:
                stored = store.put_bytes(
                    checkpoint_key(sid, row.size), row.note.encode("utf-8"), retain_until
                )
                report.published.append(stored.key)
                done = row.size
        except IntegrityError as e:
            report.integrity_failure = e.message
            log.error("INTEGRITY: custody checkpoint of %s not published: %s", sid, e.message)
        except EvidenceError as e:
            if isinstance(e, StoreUnavailableError):
                station.store_away.mark(store, str(e))
            report.failed = str(e)
            log.warning(
                "custody checkpoint(s) of %s stay in the catalog, published later: %s", sid, e
            )
        finally:
            if done > published:
                _remember_published(marker_path, store.describe(), sid, done)
    if report.published:
        log.info("published %d custody checkpoint(s) of %s", len(report.published), sid)
    return report


def _published_size(path: Path, store: str, station_id: str) -> int:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    if not isinstance(raw, dict) or raw.get("store") != store or raw.get("station") != station_id:
        return 0
    size = raw.get("size")
    return size if isinstance(size, int) and size > 0 else 0


def _remember_published(path: Path, store: str, station_id: str, size: int) -> None:
    """Best effort: a lost record only makes the next call publish (idempotently) again."""
    record = json.dumps({"store": store, "station": station_id, "size": size}) + "\n"
    try:
        write_atomically(path, record.encode("utf-8"), durable=False)
    except OSError as e:
        log.warning("cannot record published checkpoints in %s: %s", path, e.strerror)
