"""Migration 0006 on a catalog made by the earlier migrations: spooled clips move onto the
later-of rule, nothing is ever shortened, stored clips keep the date their lock has."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine
from sqlmodel import Session

from evidence_agent.catalog.database import _alembic_config, migrate, open_engine
from evidence_agent.catalog.models import Clip
from tests.services.postgres import Database

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)


def _value(column: sa.Column[Any]) -> Any:
    samples: dict[type, Any] = {
        str: "x",
        int: 1,
        float: 1.0,
        bool: False,
        bytes: b"x",
        datetime: datetime(2026, 11, 1, tzinfo=UTC),
    }
    return samples[column.type.python_type]


# id: (state, recorded_end, ingested_at, retention_until as the earlier code set it)
CLIPS: dict[str, tuple[str, datetime | None, datetime, datetime | None]] = {
    # recorded two years before it was docked ten days ago: expired on arrival, never uploaded
    "old-footage": ("spooled", NOW - 730 * DAY, NOW - 10 * DAY, NOW - 547 * DAY),
    # the same, but it has waited in the spool longer than its whole period
    "stuck": ("spooled", NOW - 900 * DAY, NOW - 400 * DAY, NOW - 717 * DAY),
    # important, docked an hour after the recording ended, fractions of a second included
    "important": (
        "spooled",
        NOW - DAY,
        NOW - DAY + timedelta(hours=1, microseconds=5),
        NOW - DAY + 1095 * DAY,
    ),
    # already in the store: its date is its lock
    "stored": ("stored", NOW - 30 * DAY, NOW - 29 * DAY, NOW - 30 * DAY + 183 * DAY),
    # kept for good, and deleted: not touched
    "permanent": ("spooled", NOW - 30 * DAY, NOW - 29 * DAY, None),
    "deleted": ("deleted", NOW - 400 * DAY, NOW - 399 * DAY, NOW - 217 * DAY),
    # a longer period (a roles-file setting of before): it keeps it, from its cataloguing
    "longer": ("spooled", NOW - 2 * DAY, NOW - DAY, NOW + 3000 * DAY),
}
EXPECTED = {
    "old-footage": NOW - 10 * DAY + 183 * DAY,
    "stuck": None,  # counted from the upgrade: checked apart
    "important": NOW - DAY + timedelta(hours=1, seconds=1) + 1095 * DAY,
    "stored": NOW - 30 * DAY + 183 * DAY,
    "permanent": None,
    "deleted": NOW - 217 * DAY,
    "longer": NOW + 3001 * DAY,
}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    else:
        database: Database = request.getfixturevalue("postgres_database")
        url = database.sqlalchemy_url
    engine = open_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_spooled_clips_move_onto_the_later_of_rule_and_nothing_is_shortened(
    engine: Engine,
) -> None:
    command.upgrade(_alembic_config(engine), "0005")
    clips = sa.Table("clips", sa.MetaData(), autoload_with=engine)
    base = {c.name: _value(c) for c in clips.c if not c.nullable and c.server_default is None}
    sqlite = engine.dialect.name == "sqlite"

    def as_stored(moment: datetime | None) -> datetime | None:
        return moment.replace(tzinfo=None) if sqlite and moment is not None else moment

    with engine.begin() as conn:
        for n, (clip_id, (state, end, ingested, until)) in enumerate(CLIPS.items()):
            row = {
                **base,
                "id": clip_id,
                "sha256": f"{n:064x}",
                "state": state,
                "recorded_end": as_stored(end),
                "ingested_at": as_stored(ingested),
                "retention_until": as_stored(until),
            }
            conn.execute(clips.insert().values(**row))

    migrate(engine)
    after = datetime.now(UTC)

    with Session(engine) as session:
        dates = {clip_id: session.get(Clip, clip_id) for clip_id in CLIPS}
    for clip_id, clip in dates.items():
        assert clip is not None
        old = CLIPS[clip_id][3]
        if old is not None:
            assert clip.retention_until is not None and clip.retention_until >= old, clip_id
        if clip_id != "stuck":
            assert clip.retention_until == EXPECTED[clip_id], clip_id
    stuck = dates["stuck"]
    assert stuck is not None and stuck.retention_until is not None
    # Its period (183 days) from the upgrade: it can now be locked in the store.
    assert NOW + 183 * DAY <= stuck.retention_until <= after + 183 * DAY + timedelta(seconds=1)
    assert stuck.retention_until.microsecond == 0
