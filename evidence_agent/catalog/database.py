"""Catalog engine: opens SQLite (WAL) or PostgreSQL and brings the schema up to date with Alembic."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from evidence_agent.errors import StorageError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# The PostgreSQL advisory lock held while a station migrates a shared catalog: the ASCII bytes of
# "evidence" read as one big-endian 64-bit integer (7311146925001958245). Documented in
# docs/storage.md; pg_locks shows it as locktype advisory, classid 1702259044, objid 1701733221.
MIGRATION_LOCK_KEY = int.from_bytes(b"evidence", "big")
# SQLite: the lock file next to the database file (`catalog.sqlite3.migrate-lock`).
SQLITE_LOCK_SUFFIX = ".migrate-lock"

log = logging.getLogger(__name__)


def _normalise_url(url: str) -> str:
    # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


def open_engine(url: str) -> Engine:
    """Engine for the catalog URL; SQLite gets WAL, full fsync and a busy timeout."""
    url = _normalise_url(url)
    if url.startswith("sqlite"):
        db_path = sa.engine.make_url(url).database
        if db_path:
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling is off so that BEGIN IMMEDIATE below takes the write
    # lock at the start: two writers then wait for each other instead of failing on upgrade.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # evidence: a commit survives a power cut
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


# Execution option of an engine whose sessions only read (Station.reading).
READ_ONLY = "catalog_read_only"


def _sqlite_begin(conn: Connection) -> None:
    # In WAL mode a reader takes no lock: it sees the last commit and waits for no writer
    # (a dock's copy thread asks what it took before, while its catalogue thread writes).
    sql = "BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
    # On the driver's connection: every transaction starts here, and SQLAlchemy's statement
    # execution costs several times SQLite's own BEGIN.
    with driver_errors_wrapped(conn, sql, ()):
        conn.connection.driver_connection.execute(sql)  # type: ignore[union-attr]


@contextmanager
def driver_errors_wrapped(conn: Connection, sql: str, parameters: Any) -> Iterator[None]:
    """Raise the driver's errors from a statement run on its own cursor as SQLAlchemy's
    execution would have (sa.exc.DBAPIError and its subclasses), so callers see one kind."""
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as e:
        raise sa.exc.DBAPIError.instance(
            sql, parameters, e, dbapi.Error, dialect=conn.dialect
        ) from e


def _alembic_config(engine: Engine, connection: Connection | None = None) -> Config:
    """Alembic's configuration; env.py migrates on `connection` when given, else on `engine`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a station keeps its data across upgrades.

    Stations starting together on one catalog migrate one after the other: the first brings the
    schema to the head, the others then find it there and change nothing. Without the lock two
    of them would both create the tables of a fresh catalog, and one would fail."""
    where = engine.url.render_as_string(hide_password=True)
    try:
        if engine.dialect.name == "postgresql":
            with _postgres_migration_lock(engine) as connection:
                command.upgrade(_alembic_config(engine, connection), "head")
        else:
            with _sqlite_migration_lock(engine):
                command.upgrade(_alembic_config(engine), "head")
    except SQLAlchemyError as e:
        raise StorageError(
            f"cannot migrate the catalog at {where}: {e}",
            remedy="check catalog.url and that the database is reachable and writable",
        ) from e
    except OSError as e:
        raise StorageError(
            f"cannot lock the catalog at {where} for its migration: {e}",
            remedy="check that the catalog's directory is writable by the station's user",
        ) from e


@contextmanager
def _postgres_migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection holding the session-level advisory lock MIGRATION_LOCK_KEY.

    Session-level rather than transaction-level so that the lock outlasts every commit Alembic
    makes (one per migration, were a migration to need it), and Alembic runs on this very
    connection. The lock is taken and its transaction committed before Alembic starts, so
    Alembic begins its own transaction and reads the schema version only once it holds the lock."""
    key = {"key": MIGRATION_LOCK_KEY}
    with engine.connect() as connection:
        if not connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), key).scalar_one():
            log.info("waiting for another station to finish migrating the catalog")
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), key)
        connection.commit()
        try:
            yield connection
        finally:
            try:
                connection.rollback()  # a failed migration leaves its transaction aborted
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), key)
                connection.commit()
            except SQLAlchemyError as e:
                # The lock belongs to the server session: closing the connection, instead of
                # returning it to the pool, releases it. The migration's own outcome stands.
                log.warning("cannot release the catalog migration lock, closing its session: %s", e)
                connection.invalidate()


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """An exclusive flock(2) on a file next to the database file, for the whole upgrade.

    BEGIN IMMEDIATE alone is not enough: SQLite's DDL is not transactional for Alembic, which
    reads the schema version once, then commits after each migration. Between two of those
    commits another process could read the same old version and run the same migration again."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield  # a private in-memory database, or a URI we do not parse: nobody to race
        return
    # Read-only suffices for flock, so a lock file made by another account of the station
    # (readable by all) still serves.
    fd = os.open(f"{database}{SQLITE_LOCK_SUFFIX}", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        yield
    finally:
        os.close(fd)


def head_revision() -> str | None:
    """The newest revision of the catalog schema."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def schema_is_current(engine: Engine) -> bool:
    head = head_revision()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head
