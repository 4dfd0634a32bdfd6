"""Migration 0002 upgrades a catalog made by 0001 in place, and its tables match the models."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import evidence_agent.catalog.models  # noqa: F401  (the tables on the metadata)
from evidence_agent.catalog.database import _alembic_config, migrate, open_engine

OURS = (
    "retention_grounds",
    "case_documents",
    "retention_requests",
    "ix_custody_entries_event_type",
)


def test_a_0001_catalog_is_upgraded_and_keeps_its_clips(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    config = _alembic_config(engine)
    command.upgrade(config, "0001")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO clips (id, sha256, size, media_kind, source_path, source_path_bytes,"
                " time_source, important, station_id, ingested_at, state, flags, retention_class,"
                " legal_hold) VALUES ('c1', :sha, 1, 'video', 'a.mp4', x'61', 'filename', 0,"
                " 's', '2026-01-01 00:00:00', 'stored', '[]', 'standard', 0)"
            ),
            {"sha": "a" * 64},
        )
    command.upgrade(config, "0002")
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0002"
        row = conn.execute(sa.text("SELECT id, retention_grounds FROM clips")).one()
        assert tuple(row) == ("c1", "[]")
        inspector = sa.inspect(conn)
        assert {"case_documents", "retention_requests"} <= set(inspector.get_table_names())
        indexes = {i["name"] for i in inspector.get_indexes("custody_entries")}
        assert "ix_custody_entries_event_type" in indexes

    command.downgrade(config, "0001")
    with engine.connect() as conn:
        assert "retention_requests" not in sa.inspect(conn).get_table_names()
        assert conn.execute(sa.text("SELECT id FROM clips")).scalar_one() == "c1"

    migrate(engine)  # to the newest revision, as a station does at start
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert [d for d in diff if any(name in repr(d) for name in OURS)] == []
    engine.dispose()
