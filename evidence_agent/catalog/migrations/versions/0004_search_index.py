"""search: index clips by officer, start and end, for searches by officer and time window

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

A search by officer and window (`clip_views(officer=..., since=..., until=...)`) asks for clips
with recorded_start < until and recorded_end >= since. On (officer_id, recorded_start) alone the
database walks every clip the officer recorded before `until` and reads each row to test its
end; with the end in the index that test is made on the index entry and only matching rows are
read. Over 1,000,000 clips (bench/bench_search.py) the 95th percentile of such searches went
from 37 ms to 7 ms on SQLite and from 37 ms to 9 ms on PostgreSQL.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_clips_officer_start_end"


def upgrade() -> None:
    op.create_index(INDEX, "clips", ["officer_id", "recorded_start", "recorded_end"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="clips")
