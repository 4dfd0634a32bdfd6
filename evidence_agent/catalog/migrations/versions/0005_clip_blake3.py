"""clips: BLAKE3 of the ingest read, which retrievals check

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

The spool hashes every original with BLAKE3 besides SHA-256, in the same read. A retrieval
checks the BLAKE3 (several times faster than SHA-256 on one core), so that verifying what it
hands over costs next to nothing beside the copy itself. Clips ingested before this revision
have none, and their retrievals check SHA-256 as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: no copy of the table, however many clips it holds.
    op.add_column("clips", sa.Column("blake3", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_column("blake3")
