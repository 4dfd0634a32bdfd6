"""SqlCustodyLog on PostgreSQL with several writers of one station's log at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import rfc8785
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from evidence_agent.catalog.custody_log import SqlCustodyLog, log_origin
from evidence_agent.catalog.database import migrate, open_engine
from evidence_agent.catalog.models import CustodyEntry, CustodyHead
from evidence_agent.custody.events import CustodyEvent, entry_document
from evidence_agent.custody.merkle import MerkleAccumulator, leaf_hash
from evidence_agent.custody.signed_note import Ed25519Signer
from tests.services.postgres import Database

pytestmark = [pytest.mark.postgres]

STATION = "station-pg"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture
def engine(postgres_database: Database) -> Iterator[Engine]:
    engine = open_engine(postgres_database.sqlalchemy_url)
    migrate(engine)
    yield engine
    engine.dispose()


def event(writer: int, i: int) -> CustodyEvent:
    return CustodyEvent(
        type="clip.stored",
        subject_kind="clip",
        subject_id=f"w{writer}-{i}",
        actor=f"service:evidence-agent@{STATION}",
        reason="written once to the object store and read back",
        sha256=f"{writer:032x}{i:032x}",
        data={"writer": writer, "i": i, "size": 1.5 * i, "path": "DCIM/\u674e\U0001f600.MP4"},
    )


def test_writers_of_one_log_leave_no_gaps_and_one_tree(engine: Engine) -> None:
    signer = Ed25519Signer.generate(log_origin(STATION))
    # Threads of one process share a log object (the daemon's docks and store worker); another
    # process has its own. Some transactions roll back after appending.
    shared = SqlCustodyLog(STATION, signer, Clock())
    logs = [shared, shared, shared, SqlCustodyLog(STATION, signer, Clock())]
    rounds = 30
    start = threading.Barrier(len(logs))
    errors: list[Exception] = []
    committed: list[str] = []
    lock = threading.Lock()

    def write(writer: int, log: SqlCustodyLog) -> None:
        try:
            start.wait()
            for i in range(rounds):
                events = [event(writer, 2 * i), event(writer, 2 * i + 1)][: 1 + i % 2]
                try:
                    with Session(engine, expire_on_commit=False) as session, session.begin():
                        when = T0 + timedelta(seconds=i)
                        log.append_many(session, events, time=when)
                        if i % 7 == 3:
                            raise LookupError("the catalog change failed")
                except LookupError:
                    continue
                with lock:
                    committed.extend(e.subject_id for e in events)
        except Exception as e:  # noqa: BLE001 - reported by the test thread below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n, log)) for n, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    with Session(engine) as session:
        rows = list(
            session.exec(
                select(CustodyEntry)
                .where(CustodyEntry.station_id == STATION)
                .order_by(col(CustodyEntry.seq))
            )
        )
        head = session.get(CustodyHead, STATION)
    assert head is not None
    assert [r.seq for r in rows] == list(range(len(rows)))
    assert sorted(r.subject_id or "" for r in rows) == sorted(committed)
    tree = MerkleAccumulator()
    for row in rows:
        doc = json.loads(row.entry)
        assert doc["seq"] == row.seq
        writer, i = doc["data"]["writer"], doc["data"]["i"]
        expected = entry_document(
            event(writer, i), station_id=STATION, seq=row.seq, time=T0 + timedelta(seconds=i // 2)
        )
        assert row.entry == rfc8785.dumps(expected)
        assert row.recorded_at == T0 + timedelta(seconds=i // 2)
        assert row.leaf_hash == leaf_hash(row.entry)
        tree.append(row.leaf_hash)
    assert head.size == len(rows)
    assert head.frontier == b"".join(tree.peaks)
