"""docking: USB ids of enrolled recorders, dock progress, device identity and warnings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recorders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("usb_vendor_id", sa.String(length=4), nullable=True))
        batch_op.add_column(sa.Column("usb_model_id", sa.String(length=4), nullable=True))

    # Docks recorded before this revision have no progress, device identity or warnings.
    with op.batch_alter_table("dock_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bytes_total", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("bytes_done", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("device_info", sa.String(), nullable=False, server_default="{}")
        )
        batch_op.add_column(sa.Column("warnings", sa.String(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("dock_sessions", schema=None) as batch_op:
        batch_op.drop_column("warnings")
        batch_op.drop_column("device_info")
        batch_op.drop_column("bytes_done")
        batch_op.drop_column("bytes_total")
    with op.batch_alter_table("recorders", schema=None) as batch_op:
        batch_op.drop_column("usb_model_id")
        batch_op.drop_column("usb_vendor_id")
