"""Custody events: who did what to which piece of evidence, when and why, as canonical JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring as _quote
from typing import Any

from evidence_agent.custody.canonical import canonical_json

EVENT_VERSION = 1


@dataclass(frozen=True)
class CustodyEvent:
    """One action on evidence. Writers build it with `vocabulary.EventType.event`, which puts
    the plain strings of an EventType and a Subject in `type` and `subject_kind`."""

    type: str
    subject_kind: str
    subject_id: str
    actor: str
    reason: str
    sha256: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def entry_document(
    event: CustodyEvent, *, station_id: str, seq: int, time: datetime
) -> dict[str, Any]:
    """The leaf's JSON document; everything an auditor needs is inside it."""
    return _document(event, station_id, seq, format_time(time))


def _document(event: CustodyEvent, station_id: str, seq: int, time: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "v": EVENT_VERSION,
        "station": station_id,
        "seq": seq,
        "time": time,
        "type": event.type,
        "subject": {"kind": event.subject_kind, "id": event.subject_id},
        "actor": event.actor,
        "reason": event.reason,
        "data": event.data,
    }
    if event.sha256 is not None:
        doc["sha256"] = event.sha256
    return doc


def encode_entry(event: CustodyEvent, *, station_id: str, seq: int, time: datetime) -> bytes:
    return canonical_json(entry_document(event, station_id=station_id, seq=seq, time=time))


def encode_entries(
    events: Sequence[CustodyEvent], *, station_id: str, first_seq: int, time: datetime
) -> list[bytes]:
    """The entries of events appended together at ``time``, numbered from ``first_seq``:
    each is ``encode_entry`` of its event."""
    stamp = format_time(time)
    return [
        _encode_document(event, station_id, seq, stamp)
        for seq, event in enumerate(events, first_seq)
    ]


def _encode_document(event: CustodyEvent, station_id: str, seq: int, time: str) -> bytes:
    """``canonical_json(_document(...))``, with the envelope's keys written in their RFC 8785
    order instead of sorted on each append (tests/unit/custody compares the two)."""
    texts = (event.actor, event.reason, station_id, event.subject_id, event.subject_kind, time)
    sha = event.sha256
    if (
        any(type(t) is not str for t in texts)
        or type(event.type) is not str
        or (sha is not None and type(sha) is not str)
        or type(event.data) is not dict
    ):
        return canonical_json(_document(event, station_id, seq, time))
    try:
        head = (f'{{"actor":{_quote(event.actor)},"data":').encode()
        tail = (
            f',"reason":{_quote(event.reason)},"seq":{seq}'
            + ("" if sha is None else f',"sha256":{_quote(sha)}')
            + f',"station":{_quote(station_id)}'
            + f',"subject":{{"id":{_quote(event.subject_id)},"kind":{_quote(event.subject_kind)}}}'
            + f',"time":{_quote(time)},"type":{_quote(event.type)},"v":{EVENT_VERSION}}}'
        ).encode()
    except UnicodeEncodeError:  # a lone surrogate: the reference path names the error
        return canonical_json(_document(event, station_id, seq, time))
    return head + canonical_json(event.data) + tail


def format_time(value: datetime) -> str:
    """RFC 3339 UTC with microseconds: one spelling per instant, so hashes are stable."""
    if value.tzinfo is None:
        raise ValueError("custody times must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
