"""The custody logs and catalog rows read from the live catalog, in one consistent snapshot."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from hmac import compare_digest
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from evidence_agent.catalog.models import (
    Case,
    CaseClip,
    Clip,
    CustodyCheckpoint,
    CustodyEntry,
    CustodyHead,
    Officer,
    Recorder,
    Unit,
)
from evidence_agent.custody.audit_report import AuditReport
from evidence_agent.custody.catalog_rows import CatalogSnapshot
from evidence_agent.custody.events import format_time
from evidence_agent.custody.merkle import leaf_hash
from evidence_agent.custody.signed_note import Ed25519Verifier
from evidence_agent.custody.verification import CheckpointInput
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.errors import EvidenceError

ENTRY_CHUNK = 20_000


@contextmanager
def snapshot(engine: Engine) -> Iterator[Session]:
    """One consistent read of the catalog.

    SQLite: the agent's engine begins every transaction IMMEDIATE, so writers wait (up to their
    busy timeout) while the log is read; PostgreSQL: a read-only REPEATABLE READ transaction.
    """
    if engine.dialect.name == "postgresql":
        engine = engine.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
    with Session(engine) as session, session.begin():
        yield session


def station_ids(session: Session) -> set[str]:
    """Every station whose log the catalog holds (a shared catalog holds several)."""
    return set(session.exec(select(CustodyHead.station_id)))


def entries(
    session: Session, station_id: str, *, below: int | None = None
) -> Iterator[tuple[int, bytes, bytes | None]]:
    """(seq, entry, stored leaf hash) of a station's log, oldest first."""
    query = (
        select(col(CustodyEntry.seq), col(CustodyEntry.entry), col(CustodyEntry.leaf_hash))
        .where(CustodyEntry.station_id == station_id)
        .order_by(col(CustodyEntry.seq))
        .execution_options(yield_per=ENTRY_CHUNK)
    )
    if below is not None:
        query = query.where(col(CustodyEntry.seq) < below)
    for seq, entry, leaf in session.execute(query):
        yield seq, _as_bytes(entry), _as_bytes(leaf) if leaf is not None else None


def entry_chunks(report: AuditReport, session: Session, station_id: str) -> Iterator[list[bytes]]:
    """A station's entries in chunks, each checked against the leaf hash stored beside it
    (step 1)."""
    chunk: list[bytes] = []
    for seq, entry, stored_leaf in entries(session, station_id):
        if stored_leaf is None or not compare_digest(stored_leaf, leaf_hash(entry)):
            report.add(
                1,
                f"entry {seq}",
                "its bytes do not hash to the leaf hash stored beside them: the entry was "
                "changed in the catalog",
                station=station_id,
            )
        chunk.append(entry)
        if len(chunk) == ENTRY_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def checkpoints(session: Session, station_id: str) -> list[CheckpointInput]:
    rows = session.exec(
        select(CustodyCheckpoint)
        .where(CustodyCheckpoint.station_id == station_id)
        .order_by(col(CustodyCheckpoint.size))
    )
    return [CheckpointInput(f"checkpoint {r.size}", r.size, r.note) for r in rows]


def key_from_log(report: AuditReport, session: Session, station_id: str) -> Ed25519Verifier | None:
    """Another station's key, as its log recorded it at first start (key.created)."""
    for _, entry, _ in entries(session, station_id, below=1):
        try:
            doc = json.loads(entry)
            return Ed25519Verifier.from_key_string(doc["data"]["verifier_key"])
        except (ValueError, KeyError, TypeError, EvidenceError):
            break
    report.add(
        1,
        "station key",
        "the log's first entry does not record the station's key",
        station=station_id,
    )
    return None


def catalog_rows(
    session: Session, station_id: str, *, unlogged_cases: bool = False
) -> CatalogSnapshot:
    """A station's clip rows, case links and cases, in the spelling step 4 and a bundle use.

    A case is the station's whose log created it; ``unlogged_cases`` adds the cases no log
    created (the local station's snapshot names them: added behind every log's back)."""
    query = (
        select(Clip, Recorder.serial, Officer.badge, Unit.code)
        .outerjoin(Recorder, col(Clip.recorder_id) == col(Recorder.id))
        .outerjoin(Officer, col(Clip.officer_id) == col(Officer.id))
        .outerjoin(Unit, col(Clip.unit_id) == col(Unit.id))
        .where(Clip.station_id == station_id)
        .order_by(col(Clip.ingested_at), col(Clip.id))
    )
    clips = [clip_row(c, serial, badge, code) for c, serial, badge, code in session.exec(query)]
    link_query = (
        select(Case.number, CaseClip.clip_id)
        .join(Case, col(Case.id) == col(CaseClip.case_id))
        .join(Clip, col(Clip.id) == col(CaseClip.clip_id))
        .where(Clip.station_id == station_id)
        .order_by(col(Case.number), col(CaseClip.clip_id))
    )
    links = [{"case": number, "clip": clip_id} for number, clip_id in session.exec(link_query)]
    return CatalogSnapshot(
        clips=clips, case_clips=links, cases=case_rows(session, station_id, unlogged_cases)
    )


def case_rows(session: Session, station_id: str, unlogged: bool) -> list[dict[str, Any]]:
    creators: dict[str, set[str]] = {}
    for number, sid in session.exec(
        select(col(CustodyEntry.subject_id), col(CustodyEntry.station_id)).where(
            CustodyEntry.event_type == EventType.CASE_CREATED
        )
    ):
        creators.setdefault(str(number), set()).add(sid)
    query = (
        select(Case, Unit.code)
        .outerjoin(Unit, col(Case.unit_id) == col(Unit.id))
        .order_by(col(Case.number))
    )
    return [
        case_row(case, code)
        for case, code in session.exec(query)
        if station_id in creators.get(case.number, ()) or (unlogged and case.number not in creators)
    ]


def case_row(case: Case, unit: str | None) -> dict[str, Any]:
    """A catalog case row in the spelling of its case.created event (catalog_rows.CASE_ROW_FIELDS)."""
    return {
        "number": case.number,
        "title": case.title,
        "parties": _json_list(case.parties),
        "cause_of_action": case.cause_of_action,
        "enforcement_type": case.enforcement_type,
        "unit": unit,
        "handling_officers": _json_list(case.handling_officers),
        "action_start": _time(case.action_start),
        "action_end": _time(case.action_end),
        "created_at": _time(case.created_at),
        "state": case.state,
        "closed_at": _time(case.closed_at),
    }


def clip_row(
    clip: Clip, recorder: str | None, officer: str | None, unit: str | None
) -> dict[str, Any]:
    """A catalog clip row in the ingest event's spelling (see cataloguing.ingest_event_data)."""
    return {
        "id": clip.id,
        "sha256": clip.sha256,
        "station": clip.station_id,
        "state": clip.state,
        "stored_at": _time(clip.stored_at),
        "size": clip.size,
        "blake3": clip.blake3,
        "sm3": clip.sm3,
        "media_kind": clip.media_kind,
        "source_path": clip.source_path,
        "source_path_hex": _as_bytes(clip.source_path_bytes).hex(),
        "recorded_start": _time(clip.recorded_start),
        "recorded_end": _time(clip.recorded_end),
        "time_source": clip.time_source,
        "duration_seconds": clip.duration_seconds,
        "ingested_at": _time(clip.ingested_at),
        "recorder": recorder,
        "officer": officer,
        "unit": unit,
        "important": clip.important,
        "flags": _json_list(clip.flags),
        "dock_session": clip.dock_session_id,
        **keeping_fields(clip),
    }


def keeping_fields(clip: Clip) -> dict[str, Any]:
    """The fields of a clip row that review.retention's events fix (catalog_rows.KEEPING_FIELDS)."""
    return {
        "legal_hold": clip.legal_hold,
        "retention_grounds": _json_list(clip.retention_grounds),
        "retention_class": clip.retention_class,
        "retention_until": _time(clip.retention_until),
    }


def subject_entries(
    session: Session, subject_ids: Iterable[str], types: Iterable[str]
) -> list[tuple[str, int, bytes]]:
    """(station, seq, entry) of every event of ``types`` about a few clips or cases, in any
    station's log: read by the subject's index, a few rows each."""
    query = (
        select(col(CustodyEntry.station_id), col(CustodyEntry.seq), col(CustodyEntry.entry))
        .where(col(CustodyEntry.subject_id).in_(list(subject_ids)))
        .where(col(CustodyEntry.event_type).in_([str(t) for t in types]))
        .order_by(col(CustodyEntry.station_id), col(CustodyEntry.seq))
    )
    return [(sid, seq, _as_bytes(entry)) for sid, seq, entry in session.execute(query)]


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _json_list(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # kept as found: the cross-check then names the field


def _as_bytes(value: Any) -> bytes:
    """A BLOB column's value; SQLite lets a hand edit leave TEXT (or a number) in its place."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return str(value).encode("ascii")
