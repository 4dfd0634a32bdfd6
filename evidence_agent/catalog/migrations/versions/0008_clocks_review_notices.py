"""clocks: legal reviews, public notices and statistics reports

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

Three new tables, nothing changed in the existing ones: the legal review of a case before its
decision (requested, due, opinion), public notices of decisions (decision day, publication,
revocation, withdrawal) and the statistics reports produced. Days are the station's local
days, as the working-day clocks count them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "legal_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        _time("requested_at"),
        sa.Column("requested_on", sa.Date(), nullable=False),
        sa.Column("requested_by", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("case_file_sha256", sa.String(length=64), nullable=False),
        sa.Column("incomplete_override", sa.Boolean(), nullable=False),
        sa.Column("working_days", sa.Integer(), nullable=False),
        sa.Column("due", sa.Date(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("opinion", sa.String(), nullable=True),
        sa.Column("opinion_reason", sa.String(), nullable=True),
        sa.Column("reviewer", sa.String(), nullable=True),
        _time("given_at", nullable=True),
        sa.Column("given_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_legal_reviews_case_id", "legal_reviews", ["case_id"], unique=False)

    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("persons", sa.String(), nullable=False),
        sa.Column("minors", sa.Boolean(), nullable=False),
        sa.Column("decision_date", sa.Date(), nullable=False),
        sa.Column("due", sa.Date(), nullable=False),
        _time("recorded_at"),
        sa.Column("recorded_by", sa.String(), nullable=False),
        sa.Column("published_on", sa.Date(), nullable=True),
        sa.Column("published_text", sa.String(), nullable=True),
        sa.Column("published_sha256", sa.String(length=64), nullable=True),
        sa.Column("revoked_on", sa.Date(), nullable=True),
        sa.Column("withdrawal_due", sa.Date(), nullable=True),
        sa.Column("withdrawn_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )
    op.create_index("ix_notices_case_id", "notices", ["case_id"], unique=False)

    op.create_table(
        "statistics_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        _time("produced_at"),
        sa.Column("produced_by", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_statistics_reports_year", "statistics_reports", ["year"], unique=False)


def downgrade() -> None:
    op.drop_table("statistics_reports")
    op.drop_table("notices")
    op.drop_table("legal_reviews")
