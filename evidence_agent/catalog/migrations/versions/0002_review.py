"""review: case documents, retention requests, retention grounds, custody index by type

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing clips get no supervisor-set grounds: their class still follows from their
    # "important" mark and their case links, as before.
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retention_grounds", sa.String(), nullable=False, server_default="[]")
        )

    op.create_table(
        "case_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("document_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("case_documents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_case_documents_case_id"), ["case_id"], unique=False)

    op.create_table(
        "retention_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clip_id", sa.String(length=36), nullable=False),
        sa.Column("requested_by", sa.String(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("retention_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_retention_requests_clip_id"), ["clip_id"], unique=False
        )

    with op.batch_alter_table("custody_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_custody_entries_event_type"), ["event_type"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("custody_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_custody_entries_event_type"))
    with op.batch_alter_table("retention_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_retention_requests_clip_id"))
    op.drop_table("retention_requests")
    with op.batch_alter_table("case_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_documents_case_id"))
    op.drop_table("case_documents")
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_column("retention_grounds")
