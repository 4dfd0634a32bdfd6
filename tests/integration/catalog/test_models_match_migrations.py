"""The models describe the schema the migrations make: Alembic's autogenerate finds nothing to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import evidence_agent.catalog.models  # noqa: F401  (the tables on the metadata)
from evidence_agent.catalog.database import migrate, open_engine
from tests.services.postgres import Database


def model_drift(engine: Engine) -> list[Any]:
    """What `alembic revision --autogenerate` would write to bring the database to the models.

    Tables, columns, types, nullability, indexes, unique and foreign keys are compared. Server
    defaults are not (Alembic's default): 0002 and 0003 add NOT NULL columns with a server
    default to fill the rows already there, and the models set those values in Python."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    try:
        yield engine
    finally:
        engine.dispose()


def test_a_migrated_sqlite_catalog_matches_the_models(sqlite_engine: Engine) -> None:
    migrate(sqlite_engine)

    assert model_drift(sqlite_engine) == []


@pytest.mark.postgres
def test_a_migrated_postgresql_catalog_matches_the_models(postgres_database: Database) -> None:
    engine = open_engine(postgres_database.url)
    try:
        migrate(engine)

        assert model_drift(engine) == []
    finally:
        engine.dispose()


def test_the_drift_check_sees_an_index_the_models_lack(sqlite_engine: Engine) -> None:
    """The check itself works: an index made by hand in the database is reported."""
    migrate(sqlite_engine)
    with sqlite_engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX ix_clips_by_hand ON clips (station_id)")

    drift = model_drift(sqlite_engine)

    assert [(d[0], d[1].name) for d in drift] == [("remove_index", "ix_clips_by_hand")]
