"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "custody_checkpoints",
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("station_id", "size"),
    )
    op.create_table(
        "custody_entries",
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("station_id", "seq"),
    )
    with op.batch_alter_table("custody_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_custody_entries_subject_id"), ["subject_id"], unique=False
        )

    op.create_table(
        "custody_heads",
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("station_id"),
    )
    op.create_table(
        "units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("parties", sa.String(), nullable=False),
        sa.Column("cause_of_action", sa.String(), nullable=False),
        sa.Column("enforcement_type", sa.String(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("handling_officers", sa.String(), nullable=False),
        sa.Column("action_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("action_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["units.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )
    op.create_table(
        "officers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("badge", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["units.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("badge"),
    )
    op.create_table(
        "recorders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.Column("vendor", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("usb_serial", sa.String(), nullable=True),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("enrolled", sa.Boolean(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_docked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["units.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("serial"),
    )
    with op.batch_alter_table("recorders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recorders_usb_serial"), ["usb_serial"], unique=False)

    op.create_table(
        "dock_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("recorder_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("volume", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("clock_skew_seconds", sa.Float(), nullable=True),
        sa.Column("files_seen", sa.Integer(), nullable=False),
        sa.Column("clips_new", sa.Integer(), nullable=False),
        sa.Column("clips_known", sa.Integer(), nullable=False),
        sa.Column("files_not_ingested", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["recorder_id"],
            ["recorders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dock_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dock_sessions_recorder_id"), ["recorder_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_dock_sessions_station_id"), ["station_id"], unique=False
        )

    op.create_table(
        "recorder_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recorder_id", sa.Integer(), nullable=False),
        sa.Column("officer_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["officers.id"],
        ),
        sa.ForeignKeyConstraint(
            ["recorder_id"],
            ["recorders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recorder_assignments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recorder_assignments_officer_id"), ["officer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_recorder_assignments_recorder_id"), ["recorder_id"], unique=False
        )

    op.create_table(
        "clips",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("sm3", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_kind", sa.String(), nullable=False),
        sa.Column("source_path", sa.String(), nullable=False),
        sa.Column("source_path_bytes", sa.LargeBinary(), nullable=False),
        sa.Column("source_mtime", sa.DateTime(timezone=True), nullable=True),
        sa.Column("format_name", sa.String(), nullable=True),
        sa.Column("video_codec", sa.String(), nullable=True),
        sa.Column("audio_codec", sa.String(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("recorded_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("time_source", sa.String(), nullable=False),
        sa.Column("clock_skew_seconds", sa.Float(), nullable=True),
        sa.Column("important", sa.Boolean(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=True),
        sa.Column("recorder_id", sa.Integer(), nullable=True),
        sa.Column("officer_id", sa.Integer(), nullable=True),
        sa.Column("dock_session_id", sa.String(), nullable=True),
        sa.Column("station_id", sa.String(length=64), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("flags", sa.String(), nullable=False),
        sa.Column("retention_class", sa.String(), nullable=False),
        sa.Column("retention_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dock_session_id"],
            ["dock_sessions.id"],
        ),
        sa.ForeignKeyConstraint(
            ["officer_id"],
            ["officers.id"],
        ),
        sa.ForeignKeyConstraint(
            ["recorder_id"],
            ["recorders.id"],
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["units.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256"),
    )
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.create_index(
            "ix_clips_officer_start", ["officer_id", "recorded_start"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_clips_recorded_start"), ["recorded_start"], unique=False
        )
        batch_op.create_index(
            "ix_clips_recorder_start", ["recorder_id", "recorded_start"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_clips_state"), ["state"], unique=False)
        batch_op.create_index("ix_clips_unit_start", ["unit_id", "recorded_start"], unique=False)

    op.create_table(
        "case_clips",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("clip_id", sa.String(), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
        ),
        sa.ForeignKeyConstraint(
            ["clip_id"],
            ["clips.id"],
        ),
        sa.PrimaryKeyConstraint("case_id", "clip_id"),
    )
    op.create_table(
        "clip_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clip_id", sa.String(), nullable=False),
        sa.Column("recorder_id", sa.Integer(), nullable=True),
        sa.Column("source_path_bytes", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("dock_session_id", sa.String(), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["clip_id"],
            ["clips.id"],
        ),
        sa.ForeignKeyConstraint(
            ["dock_session_id"],
            ["dock_sessions.id"],
        ),
        sa.ForeignKeyConstraint(
            ["recorder_id"],
            ["recorders.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("recorder_id", "source_path_bytes", "size", "mtime_ns"),
    )
    with op.batch_alter_table("clip_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clip_sources_clip_id"), ["clip_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("clip_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clip_sources_clip_id"))

    op.drop_table("clip_sources")
    op.drop_table("case_clips")
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_index("ix_clips_unit_start")
        batch_op.drop_index(batch_op.f("ix_clips_state"))
        batch_op.drop_index("ix_clips_recorder_start")
        batch_op.drop_index(batch_op.f("ix_clips_recorded_start"))
        batch_op.drop_index("ix_clips_officer_start")

    op.drop_table("clips")
    with op.batch_alter_table("recorder_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recorder_assignments_recorder_id"))
        batch_op.drop_index(batch_op.f("ix_recorder_assignments_officer_id"))

    op.drop_table("recorder_assignments")
    with op.batch_alter_table("dock_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dock_sessions_station_id"))
        batch_op.drop_index(batch_op.f("ix_dock_sessions_recorder_id"))

    op.drop_table("dock_sessions")
    with op.batch_alter_table("recorders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recorders_usb_serial"))

    op.drop_table("recorders")
    op.drop_table("officers")
    op.drop_table("cases")
    op.drop_table("units")
    op.drop_table("custody_heads")
    with op.batch_alter_table("custody_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_custody_entries_subject_id"))

    op.drop_table("custody_entries")
    op.drop_table("custody_checkpoints")
