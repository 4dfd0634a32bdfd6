"""The custody log kept in the catalog: appended in the caller's transaction, checkpointed and signed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import CustodyCheckpoint, CustodyEntry, CustodyHead
from evidence_agent.custody.checkpoint import Checkpoint, sign_checkpoint
from evidence_agent.custody.events import CustodyEvent, encode_entry
from evidence_agent.custody.merkle import HASH_SIZE, MerkleAccumulator, leaf_hash
from evidence_agent.custody.signed_note import Ed25519Signer
from evidence_agent.ports import Clock


def log_origin(station_id: str) -> str:
    """The checkpoint origin line (and note key name) of a station's log."""
    return f"evidence-agent/{station_id}"


@dataclass(frozen=True)
class AppendedEntry:
    seq: int
    leaf_hash: bytes


class SqlCustodyLog:
    """A station's log in the catalog tables. Appends join the caller's transaction, so an
    event exists exactly when the catalog change it records does."""

    def __init__(self, station_id: str, signer: Ed25519Signer, clock: Clock) -> None:
        self.station_id = station_id
        self.origin = log_origin(station_id)
        self.signer = signer
        self.clock = clock

    def _head(self, session: Session) -> CustodyHead:
        # Row lock on PostgreSQL (SQLite already holds the database write lock): one writer
        # per station log at a time, so sequence numbers have no gaps and no duplicates.
        head = session.exec(
            select(CustodyHead).where(CustodyHead.station_id == self.station_id).with_for_update()
        ).first()
        if head is None:
            head = CustodyHead(station_id=self.station_id, size=0, frontier=b"")
            session.add(head)
            session.flush()
        return head

    def append(
        self, session: Session, event: CustodyEvent, *, time: datetime | None = None
    ) -> AppendedEntry:
        return self.append_many(session, [event], time=time)[-1]

    def append_many(
        self, session: Session, events: list[CustodyEvent], *, time: datetime | None = None
    ) -> list[AppendedEntry]:
        head = self._head(session)
        frontier = head.frontier
        peaks = [frontier[i : i + HASH_SIZE] for i in range(0, len(frontier), HASH_SIZE)]
        tree = MerkleAccumulator.restore(head.size, peaks)
        when = time or self.clock.now()
        appended = []
        for event in events:
            seq = tree.size
            entry = encode_entry(event, station_id=self.station_id, seq=seq, time=when)
            leaf = leaf_hash(entry)
            tree.append(leaf)
            session.add(
                CustodyEntry(
                    station_id=self.station_id,
                    seq=seq,
                    entry=entry,
                    leaf_hash=leaf,
                    event_type=event.type,
                    subject_id=event.subject_id,
                    recorded_at=when,
                )
            )
            appended.append(AppendedEntry(seq, leaf))
        head.size = tree.size
        head.frontier = b"".join(tree.peaks)
        session.add(head)
        return appended

    def checkpoint(self, session: Session) -> CustodyCheckpoint | None:
        """Sign the current tree head, unless the newest checkpoint already covers it."""
        head = self._head(session)
        if head.size == 0:
            return None
        latest = self.latest_checkpoint(session)
        if latest is not None and latest.size >= head.size:
            return None
        frontier = head.frontier
        peaks = [frontier[i : i + HASH_SIZE] for i in range(0, len(frontier), HASH_SIZE)]
        root = MerkleAccumulator.restore(head.size, peaks).root()
        note = sign_checkpoint(Checkpoint(self.origin, head.size, root), self.signer)
        row = CustodyCheckpoint(
            station_id=self.station_id, size=head.size, note=note, created_at=self.clock.now()
        )
        session.add(row)
        return row

    def latest_checkpoint(self, session: Session) -> CustodyCheckpoint | None:
        return session.exec(
            select(CustodyCheckpoint)
            .where(CustodyCheckpoint.station_id == self.station_id)
            .order_by(col(CustodyCheckpoint.size).desc())
            .limit(1)
        ).first()


def decode_entry(entry: bytes) -> dict[str, object]:
    doc = json.loads(entry)
    if not isinstance(doc, dict):
        raise ValueError("custody entry is not a JSON object")
    return doc
