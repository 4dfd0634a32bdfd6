"""The PostgreSQL fixture works: a fresh database per test on the suite's own server."""

from __future__ import annotations

import psycopg
import pytest

from tests.services.postgres import Database, PostgresServer

pytestmark = pytest.mark.postgres


def test_a_fresh_database_accepts_a_table(postgres_database: Database) -> None:
    with psycopg.connect(postgres_database.url) as conn:
        conn.execute("CREATE TABLE clip (sha256 text PRIMARY KEY, size bigint NOT NULL)")
        conn.execute("INSERT INTO clip VALUES (%s, %s)", ("ab" * 32, 42))
        row = conn.execute("SELECT size, current_database(), version() FROM clip").fetchone()
    assert row is not None
    assert row[0] == 42
    assert row[1] == postgres_database.name
    assert "PostgreSQL 15" in row[2]
    assert postgres_database.sqlalchemy_url.startswith("postgresql+psycopg://")


def test_each_test_gets_an_empty_database(
    postgres_database: Database, postgres_server: PostgresServer
) -> None:
    with psycopg.connect(postgres_database.url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)
    assert postgres_server.url().startswith("postgresql://postgres:")
    assert "127.0.0.1" in postgres_database.url
