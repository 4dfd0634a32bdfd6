"""SqlCustodyLog on a temporary SQLite catalog: entry bytes, sequence numbers and tree head."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import rfc8785
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from evidence_agent.catalog.custody_log import SqlCustodyLog, log_origin
from evidence_agent.catalog.database import migrate, open_engine
from evidence_agent.catalog.models import CustodyEntry, CustodyHead
from evidence_agent.custody.checkpoint import open_checkpoint
from evidence_agent.custody.events import CustodyEvent, encode_entry, entry_document
from evidence_agent.custody.merkle import HASH_SIZE, MerkleAccumulator, leaf_hash
from evidence_agent.custody.signed_note import Ed25519Signer

STATION = "station-7"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class StepClock:
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        self.t += timedelta(milliseconds=1)
        return self.t


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer.generate(log_origin(STATION))


def make_log(signer: Ed25519Signer) -> SqlCustodyLog:
    return SqlCustodyLog(STATION, signer, StepClock())


def event(i: int) -> CustodyEvent:
    """Events of the shapes the station writes, with the values canonical JSON finds hard."""
    data: dict[str, object] = {
        "dock_session": f"d05ae261-{i:04d}",
        "duration_seconds": [600.0, 600.033, 1e21, 1e-7, None][i % 5],
        "flags": ["late"] if i % 3 else [],
        "important": i % 2 == 0,
        "officer": "李娜",
        "source_path": f'DCIM/100MEDIA/A\u20ac\U0001f600\n"{i}".MP4',
        "size": 1_000_000_000 + i,
        "nested": {"\ufb33": 1, "\U0001f600": 2, "a": [True, None, -(2**53) + 1]},
    }
    return CustodyEvent(
        type="clip.ingested" if i % 2 else "clip.stored",
        subject_kind="clip",
        subject_id=f"1da9e1cc-{i:08d}",
        actor="service:evidence-agent@station-7",
        reason="read once from the docked recorder into the spool, hashed and catalogued",
        sha256=f"{i:064x}" if i % 4 else None,
        data=data,
    )


def append(engine: Engine, log: SqlCustodyLog, events: list[CustodyEvent]) -> None:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        log.append_many(session, events)


def check_log(engine: Engine) -> list[CustodyEntry]:
    """The stored log is gap-free from 0, each leaf hash is its entry's, the head is its tree."""
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
    tree = MerkleAccumulator()
    for row in rows:
        assert row.leaf_hash == leaf_hash(row.entry)
        assert json.loads(row.entry)["seq"] == row.seq
        tree.append(row.leaf_hash)
    assert head.size == len(rows)
    assert head.frontier == b"".join(tree.peaks)
    return rows


def test_entries_are_the_rfc8785_bytes_of_their_events(
    engine: Engine, signer: Ed25519Signer
) -> None:
    log = make_log(signer)
    events = [event(i) for i in range(40)]
    batches = [events[0:1], events[1:3], events[3:4], events[4:30], events[30:40]]
    times: list[datetime] = []
    for batch in batches:
        when = T0 + timedelta(seconds=len(times))
        times.extend([when] * len(batch))
        with Session(engine, expire_on_commit=False) as session, session.begin():
            appended = log.append_many(session, batch, time=when)
        assert [a.seq for a in appended] == list(range(len(times) - len(batch), len(times)))
    rows = check_log(engine)
    assert len(rows) == 40
    for i, (row, ev, when) in enumerate(zip(rows, events, times, strict=True)):
        doc = entry_document(ev, station_id=STATION, seq=i, time=when)
        # Byte-identical to the reference RFC 8785 implementation, as auditors recompute it.
        assert row.entry == rfc8785.dumps(doc)
        assert row.entry == encode_entry(ev, station_id=STATION, seq=i, time=when)
        assert row.event_type == ev.type
        assert row.subject_id == ev.subject_id
        assert row.recorded_at == when


def test_rows_are_stored_as_the_orm_stores_them(engine: Engine, signer: Ed25519Signer) -> None:
    """Same column values and SQLite storage classes as an ORM insert (queries compare them)."""
    log = make_log(signer)
    when = datetime(2026, 11, 21, 1, 30, 1, 250, tzinfo=ZoneInfo("Asia/Shanghai"))
    ev = event(1)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        log.append(session, ev, time=when)
        session.add(
            CustodyEntry(
                station_id="orm",
                seq=0,
                entry=encode_entry(ev, station_id=STATION, seq=0, time=when),
                leaf_hash=b"\x00" * HASH_SIZE,
                event_type=ev.type,
                subject_id=ev.subject_id,
                recorded_at=when,
            )
        )
    raw = (
        "SELECT seq, entry, event_type, subject_id, recorded_at, typeof(entry), "
        "typeof(leaf_hash), typeof(recorded_at) FROM custody_entries WHERE station_id = :s"
    )
    with engine.connect() as conn:
        ours = conn.execute(sa.text(raw), {"s": STATION}).one()
        orm = conn.execute(sa.text(raw), {"s": "orm"}).one()
        head = conn.execute(sa.text("SELECT typeof(frontier) FROM custody_heads")).scalar()
    assert tuple(ours) == tuple(orm)
    assert ours[4] == "2026-11-20 17:30:01.000250"
    assert head == "blob"


def test_a_second_writer_of_the_same_log_is_followed(engine: Engine, signer: Ed25519Signer) -> None:
    # Two processes of one station (the daemon and a command) append to one log by turns.
    daemon, command = make_log(signer), make_log(signer)
    for i in range(12):
        append(engine, daemon if i % 3 else command, [event(2 * i), event(2 * i + 1)][: 1 + i % 2])
    assert len(check_log(engine)) == sum(1 + i % 2 for i in range(12))


def test_a_rolled_back_append_leaves_no_trace(engine: Engine, signer: Ed25519Signer) -> None:
    log = make_log(signer)
    append(engine, log, [event(0), event(1)])
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        log.append_many(session, [event(2)])
        raise RuntimeError("the catalog change failed")
    append(engine, log, [event(3)])
    rows = check_log(engine)
    assert [json.loads(r.entry)["subject"]["id"] for r in rows] == [
        event(i).subject_id for i in (0, 1, 3)
    ]


def test_a_head_of_the_same_size_but_another_tree_is_followed(
    engine: Engine, signer: Ed25519Signer
) -> None:
    # The log object's own append rolled back after another writer appended as many events:
    # the stored head has the size it last wrote, but another frontier.
    log, other = make_log(signer), make_log(signer)
    append(engine, log, [event(0)])
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        log.append_many(session, [event(1)])
        raise RuntimeError("rolled back")
    append(engine, other, [event(2)])
    append(engine, log, [event(3)])
    rows = check_log(engine)
    assert [r.seq for r in rows] == [0, 1, 2]
    assert json.loads(rows[1].entry)["subject"]["id"] == event(2).subject_id


def test_appends_are_visible_in_their_transaction(engine: Engine, signer: Ed25519Signer) -> None:
    log = make_log(signer)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        assert log.append_many(session, []) == []
        assert session.get(CustodyHead, STATION) is not None  # made, as before
        log.append_many(session, [event(0), event(1)])
        log.append(session, event(2))
        seqs = list(session.exec(select(CustodyEntry.seq).order_by(col(CustodyEntry.seq))))
        assert seqs == [0, 1, 2]
        made = log.checkpoint(session)
        assert made is not None and made.size == 3
        assert log.checkpoint(session) is None  # the newest checkpoint covers the head
    check_log(engine)
    with Session(engine) as session:
        latest = log.latest_checkpoint(session)
    assert latest is not None
    root = MerkleAccumulator()
    root.extend(r.leaf_hash for r in check_log(engine))
    note = open_checkpoint(latest.note, signer.verifier, origin=log.origin)
    assert (note.size, note.root_hash) == (3, root.root())


def test_an_empty_log_has_no_checkpoint(engine: Engine, signer: Ed25519Signer) -> None:
    log = make_log(signer)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        assert log.checkpoint(session) is None


def test_a_driver_error_in_an_append_is_sqlalchemys_error_and_commits_nothing(
    engine: Engine, signer: Ed25519Signer
) -> None:
    # The append runs its statements on the driver's cursor: its errors must still be the
    # ones SQLAlchemy raises, which the service layer turns into messages and exit codes.
    log = make_log(signer)
    append(engine, log, [event(0)])
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON custody_entries "
            "BEGIN SELECT RAISE(ABORT, 'entries refused by the test'); END"
        )
    with pytest.raises(sa.exc.IntegrityError, match="entries refused by the test"):
        append(engine, log, [event(1), event(2)])
    with Session(engine) as session:
        head = session.exec(select(CustodyHead)).one()
        assert head.size == 1
        assert len(session.exec(select(CustodyEntry)).all()) == 1
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse")
    append(engine, log, [event(1)])  # the head guess missed; the append reads the head again
    with Session(engine) as session:
        assert [r.seq for r in session.exec(select(CustodyEntry))] == [0, 1]
