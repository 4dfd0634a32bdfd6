"""SQLite catalog: a reading session never waits for a writer (WAL), a writer still locks."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from evidence_agent.catalog.models import Clip, Unit
from evidence_agent.config import build_settings
from evidence_agent.services.station import Station, open_station


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    st = open_station(
        build_settings({}, {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")}), actor="user:t"
    )
    yield st
    st.close()


def test_a_read_during_a_write_transaction_does_not_wait(station: Station) -> None:
    seen: list[int] = []
    with station.transaction() as writer:
        writer.add(Unit(code="330100000000", name="first"))
        writer.flush()

        def read() -> None:
            with station.reading() as session:
                seen.append(len(session.exec(select(Unit)).all()))

        reader = threading.Thread(target=read)
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive(), "the reader waited for the writer"
    assert seen == [0]  # it saw the last commit, not the writer's uncommitted row


def test_a_write_transaction_holds_the_write_lock_from_its_start(station: Station) -> None:
    database = station.engine.url.database
    assert database is not None
    with station.transaction() as writer:
        writer.exec(select(Clip)).all()  # only read so far: the lock is taken at BEGIN
        other = sqlite3.connect(database, timeout=0.1, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()


def test_a_writer_that_cannot_get_the_lock_gets_sqlalchemys_error(station: Station) -> None:
    # BEGIN IMMEDIATE runs on the driver's connection: a lock it cannot get must still surface
    # as SQLAlchemy's OperationalError, as any other statement's would.
    database = station.engine.url.database
    assert database is not None
    sa.event.listen(
        station.engine, "connect", lambda conn, _record: conn.execute("PRAGMA busy_timeout=50")
    )
    station.engine.dispose()  # new connections, with the short timeout
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sa.exc.OperationalError, match="locked"), station.transaction() as s:
            s.exec(select(Clip)).all()
    finally:
        holder.close()
    with station.transaction() as s:  # the lock is free again: the station writes as before
        s.add(Unit(code="330100000000", name="after"))
    with station.reading() as session:
        assert [u.name for u in session.exec(select(Unit))] == ["after"]
