"""dock_sessions: the oldest media file of a dock no recorder could be named for

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

A volume the daemon cannot identify (no identity file, no serial in its file names, not
enrolled) is kept as a dock session in state `unidentified` until an identity file appears or
an operator names its recorder. Its media files count against the 24-hour rule meanwhile:
their number and bytes go in the existing files_seen and bytes_total, the oldest file's
modification time here. A plain ADD COLUMN: other docks leave it empty.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "dock_sessions", sa.Column("oldest_file_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("dock_sessions", schema=None) as batch_op:
        batch_op.drop_column("oldest_file_at")
