"""The access log: who saw, retrieved or was refused what, when and why, read from the custody log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from evidence_agent.catalog.custody_log import decode_entry
from evidence_agent.catalog.models import CustodyEntry
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.services.guard import record_view, require
from evidence_agent.services.station import Station

# Every event that records a person looking at, taking, or being refused evidence (as plain
# strings: the query goes into the access_log.read event).
ACCESS_TYPES: tuple[str, ...] = tuple(
    t.value
    for t in (
        EventType.CLIPS_SEARCHED,
        EventType.CASE_VIEWED,
        EventType.RETENTION_DUE_LISTED,
        EventType.ACCESS_LOG_READ,
        EventType.CLIP_RETRIEVED,
        EventType.RETRIEVAL_RECEIPT,
        EventType.CLIP_INTEGRITY_FAILED,
        EventType.CLIP_DISCLOSED,
        EventType.DISCLOSURE_PRODUCED,
        EventType.DISCLOSURES_LISTED,
        EventType.DISCLOSURE_VIEWED,
        EventType.CLIP_DERIVATIVE_MADE,
        EventType.ACCESS_REFUSED,
    )
)


@dataclass(frozen=True)
class AccessQuery:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None  # "user:alice" or just "alice"
    subject: str | None = None  # a clip id or a case number
    types: tuple[str, ...] = ACCESS_TYPES
    limit: int | None = 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "since": format_time(self.since) if self.since else None,
            "until": format_time(self.until) if self.until else None,
            "actor": self.actor,
            "subject": self.subject,
            "types": list(self.types),
            "limit": self.limit,
        }


def read_access_log(station: Station, caller: Caller, query: AccessQuery) -> list[dict[str, Any]]:
    """Access events of this station's log, oldest first (the newest `limit` of them).

    Each row is the event exactly as logged (its leaf is what an auditor verifies), plus its
    sequence number. Reading the access log is itself logged."""
    require(station, caller, Action.ACCESS_LOG)
    actor = query.actor
    if actor is not None and ":" not in actor:
        actor = f"user:{actor}"
    with station.reading() as session:
        stmt = select(CustodyEntry).where(
            CustodyEntry.station_id == station.settings.station_id,
            col(CustodyEntry.event_type).in_(query.types),
        )
        if query.since is not None:
            stmt = stmt.where(col(CustodyEntry.recorded_at) >= query.since)
        if query.until is not None:
            stmt = stmt.where(col(CustodyEntry.recorded_at) < query.until)
        if query.subject is not None:
            stmt = stmt.where(CustodyEntry.subject_id == query.subject)
        stmt = stmt.order_by(col(CustodyEntry.seq).desc())
        entries = list(session.exec(stmt))
    rows = []
    for entry in entries:
        doc = decode_entry(entry.entry)
        if actor is not None and doc.get("actor") != actor:
            continue
        rows.append({"seq": entry.seq, **doc})
        if query.limit is not None and len(rows) >= query.limit:
            break
    rows.reverse()
    record_view(
        station,
        caller,
        EventType.ACCESS_LOG_READ,
        subject_kind=Subject.STATION,
        subject_id=station.settings.station_id,
        data={"query": query.to_json(), "entries": len(rows)},
    )
    return rows
