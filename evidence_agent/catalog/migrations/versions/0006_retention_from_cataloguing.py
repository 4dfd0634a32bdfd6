"""clips: retention counted from the later of the end of the recording and cataloguing

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

Retention used to count from the end of the recording alone, so a clip recorded more than its
period before it was docked arrived already expired: the object store refused a lock in the past
and the clip stayed in the spool, never uploaded. It now counts from the later of the end of the
recording and the clip's cataloguing (evidence_agent/domain/retention.py).

Clips still waiting in the spool move onto that rule, each keeping the period it was given
(its old date less the moment that date was counted from): the new date is that period from the
later of the two moments, rounded up to the whole second. A clip that waited in the spool longer
than its whole period would still be past: it is counted from this upgrade, the moment it can
first reach the store. A date is only ever moved later: this is evidence, and a lock once given
is never cut short.

Clips already in the store keep their date. It is the store's lock too, which a migration cannot
reach, and the catalog must say what the store keeps; their deletion still waits for the new
rule, which the deletion check applies beside the catalog's date. Clips kept for good (no date)
and deleted clips are not touched. The downgrade changes nothing: a later date suits the earlier
code as well.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_clips = sa.table(
    "clips",
    sa.column("id", sa.String()),
    sa.column("state", sa.String()),
    sa.column("recorded_end", sa.DateTime(timezone=True)),
    sa.column("ingested_at", sa.DateTime(timezone=True)),
    sa.column("retention_until", sa.DateTime(timezone=True)),
)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite gives back the naive UTC time the catalog stored; PostgreSQL an aware one.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _whole_second(moment: datetime) -> datetime:
    if moment.microsecond == 0:
        return moment
    return moment.replace(microsecond=0) + timedelta(seconds=1)


def later_retention(
    recorded_end: datetime | None, ingested_at: datetime, until: datetime, now: datetime
) -> datetime:
    """A spooled clip's date under the later-of rule, with the period it had; never earlier."""
    period = until - (recorded_end or ingested_at)
    start = max(ingested_at, recorded_end or ingested_at)
    moved = _whole_second(start + period)
    if moved <= now:
        moved = _whole_second(now + period)
    return max(until, moved)


def upgrade() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    rows = bind.execute(
        sa.select(
            _clips.c.id, _clips.c.recorded_end, _clips.c.ingested_at, _clips.c.retention_until
        )
        .where(_clips.c.state == "spooled")
        .where(_clips.c.retention_until.is_not(None))
    ).all()
    for clip_id, recorded_end, ingested_at, until in rows:
        old = _utc(until)
        assert old is not None  # selected for it
        ingested = _utc(ingested_at)
        assert ingested is not None  # NOT NULL
        new = later_retention(_utc(recorded_end), ingested, old, now)
        if new == old:
            continue
        stored = new.replace(tzinfo=None) if bind.dialect.name == "sqlite" else new
        bind.execute(sa.update(_clips).where(_clips.c.id == clip_id).values(retention_until=stored))


def downgrade() -> None:
    pass  # dates were only moved later, which the earlier code keeps as they are
