"""A catalog of an earlier release upgrades in place: its clips keep every value."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from sqlmodel import Session

from evidence_agent.catalog.database import _alembic_config, migrate, open_engine
from evidence_agent.catalog.models import Clip


def _value(column: sa.Column[Any]) -> Any:
    kind = column.type.python_type
    samples: dict[type, Any] = {
        str: "x",
        int: 1,
        float: 1.0,
        bool: False,
        bytes: b"x",
        datetime: datetime(2026, 11, 1, tzinfo=UTC),
    }
    return samples[kind]


def test_clips_of_before_blake3_are_kept_and_have_none(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    try:
        command.upgrade(_alembic_config(engine), "0004")
        clips = sa.Table("clips", sa.MetaData(), autoload_with=engine)
        assert "blake3" not in clips.c
        row = {c.name: _value(c) for c in clips.c if not c.nullable and c.server_default is None}
        row.update(id="c1", sha256="a" * 64, size=1234)
        with engine.begin() as conn:
            conn.execute(clips.insert().values(**row))

        migrate(engine)

        with Session(engine) as session:
            clip = session.get(Clip, "c1")
            assert clip is not None
            assert (clip.sha256, clip.size, clip.blake3) == ("a" * 64, 1234, None)
    finally:
        engine.dispose()
