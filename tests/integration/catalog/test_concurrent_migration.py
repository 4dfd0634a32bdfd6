"""Stations starting at once on a fresh catalog: every one migrates, the schema is made once."""

from __future__ import annotations

import fcntl
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from evidence_agent.catalog.database import (
    MIGRATION_LOCK_KEY,
    SQLITE_LOCK_SUFFIX,
    head_revision,
    migrate,
    open_engine,
    schema_is_current,
)
from tests.services.postgres import Database

STATIONS = 4
TIMEOUT = 120.0


def _start_station(url: str, barrier: Any, results: Any) -> None:
    """One station process: open the catalog, wait for the others, migrate."""
    engine = open_engine(url)
    try:
        barrier.wait(timeout=TIMEOUT)
        migrate(engine)
        results.put("ok")
    except BaseException as e:  # noqa: BLE001 - reported by the test
        results.put(f"{type(e).__name__}: {e}")
    finally:
        engine.dispose()


def migrate_at_once(url: str, stations: int = STATIONS) -> list[str]:
    """Start `stations` processes that all migrate the catalog at `url` at the same moment."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    barrier = context.Barrier(stations)
    results = context.Queue()
    processes = [
        context.Process(target=_start_station, args=(url, barrier, results), name=f"station-{i}")
        for i in range(stations)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=TIMEOUT) for _ in processes]
    for process in processes:
        process.join(timeout=TIMEOUT)
    assert all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes]
    return outcomes


def assert_migrated_once(url: str) -> None:
    engine = open_engine(url)
    try:
        assert schema_is_current(engine)
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
            assert [tuple(v) for v in versions] == [(head_revision(),)]
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("clips")}
            assert "ix_clips_officer_start_end" in indexes
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_stations_starting_at_once_on_a_fresh_postgresql_catalog(
    postgres_database: Database,
) -> None:
    outcomes = migrate_at_once(postgres_database.url)

    assert outcomes == ["ok"] * STATIONS
    assert_migrated_once(postgres_database.url)


def test_stations_starting_at_once_on_a_fresh_sqlite_catalog(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"

    outcomes = migrate_at_once(url)

    assert outcomes == ["ok"] * STATIONS
    assert_migrated_once(url)


def migrate_while_locked(url: str, release: Callable[[], object]) -> None:
    """Migrate in a thread while the migration lock is held elsewhere: nothing happens until
    `release` is called, then the migration completes."""
    engine = open_engine(url)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(engine)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    thread = threading.Thread(target=run, name="migrate")
    try:
        thread.start()
        thread.join(timeout=1.5)
        assert thread.is_alive(), "the migration did not wait for the lock"
        assert "alembic_version" not in sa.inspect(engine).get_table_names()
        release()
        thread.join(timeout=TIMEOUT)
        assert not thread.is_alive() and errors == []
    finally:
        engine.dispose()
    assert_migrated_once(url)


@pytest.mark.postgres
def test_a_migration_waits_for_the_documented_advisory_lock(postgres_database: Database) -> None:
    with psycopg.connect(postgres_database.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        migrate_while_locked(
            postgres_database.url,
            lambda: holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,)),
        )
        # ... and the station released it: it is free for the next one.
        row = holder.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
        assert row == (True,)


def test_a_sqlite_migration_waits_for_the_lock_file(tmp_path: Path) -> None:
    database = tmp_path / "catalog.sqlite3"
    with open(f"{database}{SQLITE_LOCK_SUFFIX}", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        migrate_while_locked(f"sqlite:///{database}", lambda: fcntl.flock(holder, fcntl.LOCK_UN))
