"""The custody log kept in the catalog: appended in the caller's transaction, checkpointed and signed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session, SQLModel, col, select

from evidence_agent.catalog.database import driver_errors_wrapped
from evidence_agent.catalog.models import CustodyCheckpoint, CustodyEntry, CustodyHead
from evidence_agent.custody.checkpoint import Checkpoint, sign_checkpoint
from evidence_agent.custody.events import CustodyEvent, encode_entries
from evidence_agent.custody.merkle import HASH_SIZE, MerkleAccumulator, leaf_hash
from evidence_agent.custody.signed_note import Ed25519Signer
from evidence_agent.errors import StorageError
from evidence_agent.ports import Clock


def log_origin(station_id: str) -> str:
    """The checkpoint origin line (and note key name) of a station's log."""
    return f"evidence-agent/{station_id}"


@dataclass(frozen=True)
class AppendedEntry:
    seq: int
    leaf_hash: bytes


def _table(model: type[SQLModel]) -> sa.Table:
    table = sa.inspect(model).local_table
    assert isinstance(table, sa.Table)
    return table


# Appends run inside the caller's write transaction, which holds the SQLite write lock (or the
# station's head row lock on PostgreSQL) for as long as they take: they use Core statements,
# compiled once and run on the transaction's driver cursor (_DriverStatement), instead of ORM
# objects, whose construction, head query and unit-of-work flush cost more than the durable
# commit itself (bench/bench_custody_log.py).
_ENTRIES = _table(CustodyEntry)
_HEADS = _table(CustodyHead)
_CHECKPOINTS = _table(CustodyCheckpoint)

# Row lock on PostgreSQL (SQLite already holds the database write lock): one writer per
# station log at a time, so sequence numbers have no gaps and no duplicates.
_LOCK_HEAD = (
    sa.select(_HEADS.c.size, _HEADS.c.frontier)
    .where(_HEADS.c.station_id == sa.bindparam("b_station"))
    .with_for_update()
)
_CREATE_HEAD = sa.insert(_HEADS)
_MOVE_HEAD = (
    sa.update(_HEADS)
    .where(_HEADS.c.station_id == sa.bindparam("b_station"))
    .where(_HEADS.c.size == sa.bindparam("b_old_size"))
    .where(_HEADS.c.frontier == sa.bindparam("b_old_frontier"))
    .values(size=sa.bindparam("b_size"), frontier=sa.bindparam("b_frontier"))
)
_INSERT_ENTRIES = sa.insert(_ENTRIES)
_LATEST_CHECKPOINT_SIZE = sa.select(sa.func.max(_CHECKPOINTS.c.size)).where(
    _CHECKPOINTS.c.station_id == sa.bindparam("b_station")
)


@dataclass(frozen=True)
class _Batch:
    """Events made into rows from a tree head: the rows, the head after them, the receipts."""

    head: tuple[int, bytes]
    rows: list[dict[str, Any]]
    appended: list[AppendedEntry]


class _DriverStatement:
    """A Core statement compiled once for a dialect and run on the transaction's DBAPI cursor.

    The SQL and the bound values are what SQLAlchemy's own execution would send (the dialect's
    compiler, each type's bind processor); skipped is its per-execution machinery (compiled
    cache lookup, execution context, result set-up, event dispatch), which on these small
    statements costs more than SQLite's own work. Driver errors are raised as SQLAlchemy's
    (catalog.database.driver_errors_wrapped).
    """

    def __init__(self, statement: sa.ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        if compiled.escaped_bind_names:
            raise ValueError("bind names must not need escaping")  # ours never do
        self.sql = compiled.string
        self._positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        self._processors = []
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self._processors.append((name, process))

    def _parameters(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = dict(values)
        for name, process in self._processors:
            values[name] = process(values[name])
        if self._positions is None:
            return values
        return tuple([values[name] for name in self._positions])

    def execute(self, conn: Connection, values: dict[str, Any]) -> int:
        """Run once; return the number of rows it changed."""
        return self._run(conn, [self._parameters(values)])

    def execute_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        self._run(conn, [self._parameters(row) for row in rows])

    def _run(self, conn: Connection, parameters: list[Any]) -> int:
        # The statements must join the caller's transaction, which session.connection() began.
        assert conn.in_transaction()
        cursor = conn.connection.cursor()
        try:
            with driver_errors_wrapped(conn, self.sql, parameters):
                if len(parameters) == 1:
                    cursor.execute(self.sql, parameters[0])
                else:
                    cursor.executemany(self.sql, parameters)
            return int(cursor.rowcount)
        finally:
            cursor.close()


@dataclass(frozen=True)
class _AppendStatements:
    move_head: _DriverStatement
    insert_entries: _DriverStatement

    @classmethod
    def compile(cls, dialect: Dialect) -> _AppendStatements:
        return cls(
            _DriverStatement(_MOVE_HEAD, dialect), _DriverStatement(_INSERT_ENTRIES, dialect)
        )


class SqlCustodyLog:
    """A station's log in the catalog tables. Appends join the caller's transaction, so an
    event exists exactly when the catalog change it records does."""

    def __init__(self, station_id: str, signer: Ed25519Signer, clock: Clock) -> None:
        self.station_id = station_id
        self.origin = log_origin(station_id)
        self.signer = signer
        self.clock = clock
        # The tree head (size, frontier) as this object last read or wrote it: a guess that
        # saves reading the head before each append. An append from it moves the head only if
        # the stored head still equals it, so another writer, a rolled-back transaction or an
        # edited row makes the guess miss, never the log wrong.
        self._head_guess: tuple[int, bytes] | None = None
        self._statements: dict[Dialect, _AppendStatements] = {}

    def append(
        self, session: Session, event: CustodyEvent, *, time: datetime | None = None
    ) -> AppendedEntry:
        return self.append_many(session, [event], time=time)[-1]

    def append_many(
        self, session: Session, events: list[CustodyEvent], *, time: datetime | None = None
    ) -> list[AppendedEntry]:
        conn = self._connection(session)
        when = time or self.clock.now()
        guess = self._head_guess
        if guess is not None and events:
            batch = self._batch(guess, events, when)
            # The UPDATE checks the guess and takes the head's row lock (PostgreSQL) in one
            # statement; entries are inserted only once their sequence numbers are ours.
            if self._move_head(conn, guess, batch.head):
                return self._insert(conn, batch)
        head = self._lock_head(session, conn)
        if not events:
            return []
        batch = self._batch(head, events, when)
        if not self._move_head(conn, head, batch.head):
            # Cannot happen while the head is locked; if it does, commit nothing.
            raise StorageError(
                f"the custody log head of station {self.station_id} moved during an append"
            )
        return self._insert(conn, batch)

    def _connection(self, session: Session) -> Connection:
        # What an ORM query of the head did first: the caller's pending changes take their
        # locks before the head's, in the same order as they always have.
        if session.autoflush:
            session.flush()
        return session.connection()

    def _lock_head(self, session: Session, conn: Connection) -> tuple[int, bytes]:
        """The station's tree head, locked until the transaction ends; made if missing."""
        row = conn.execute(_LOCK_HEAD, {"b_station": self.station_id}).first()
        if row is not None:
            head = (row[0], row[1])
        else:
            try:
                # Two first appends at once (PostgreSQL): the second insert waits for the first
                # transaction and fails if it commits; the savepoint keeps this transaction,
                # which then locks the head the other one made.
                with session.begin_nested():
                    # The SAVEPOINT is emitted when the session hands out its connection.
                    session.connection().execute(
                        _CREATE_HEAD, {"station_id": self.station_id, "size": 0, "frontier": b""}
                    )
                head = (0, b"")
            except sa.exc.IntegrityError:
                row = conn.execute(_LOCK_HEAD, {"b_station": self.station_id}).one()
                head = (row[0], row[1])
        self._head_guess = head
        return head

    def _batch(self, head: tuple[int, bytes], events: list[CustodyEvent], when: datetime) -> _Batch:
        size, frontier = head
        peaks = [frontier[i : i + HASH_SIZE] for i in range(0, len(frontier), HASH_SIZE)]
        tree = MerkleAccumulator.restore(size, peaks)
        entries = encode_entries(events, station_id=self.station_id, first_seq=size, time=when)
        rows = []
        appended = []
        for seq, (event, entry) in enumerate(zip(events, entries, strict=True), size):
            leaf = leaf_hash(entry)
            tree.append(leaf)
            rows.append(
                {
                    "station_id": self.station_id,
                    "seq": seq,
                    "entry": entry,
                    "leaf_hash": leaf,
                    "event_type": event.type,
                    "subject_id": event.subject_id,
                    "recorded_at": when,
                }
            )
            appended.append(AppendedEntry(seq, leaf))
        return _Batch((tree.size, b"".join(tree.peaks)), rows, appended)

    def _compiled(self, conn: Connection) -> _AppendStatements:
        statements = self._statements.get(conn.dialect)
        if statements is None:
            statements = self._statements[conn.dialect] = _AppendStatements.compile(conn.dialect)
        return statements

    def _move_head(self, conn: Connection, old: tuple[int, bytes], new: tuple[int, bytes]) -> bool:
        moved = self._compiled(conn).move_head.execute(
            conn,
            {
                "b_station": self.station_id,
                "b_old_size": old[0],
                "b_old_frontier": old[1],
                "b_size": new[0],
                "b_frontier": new[1],
            },
        )
        if moved != 1:
            self._head_guess = None
            return False
        self._head_guess = new
        return True

    def _insert(self, conn: Connection, batch: _Batch) -> list[AppendedEntry]:
        self._compiled(conn).insert_entries.execute_many(conn, batch.rows)
        return batch.appended

    def checkpoint(self, session: Session) -> CustodyCheckpoint | None:
        """Sign the current tree head, unless the newest checkpoint already covers it."""
        conn = self._connection(session)
        size, frontier = self._lock_head(session, conn)
        if size == 0:
            return None
        latest = conn.execute(_LATEST_CHECKPOINT_SIZE, {"b_station": self.station_id}).scalar()
        if latest is not None and latest >= size:
            return None
        peaks = [frontier[i : i + HASH_SIZE] for i in range(0, len(frontier), HASH_SIZE)]
        root = MerkleAccumulator.restore(size, peaks).root()
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
        row = CustodyCheckpoint(
            station_id=self.station_id, size=size, note=note, created_at=self.clock.now()
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
