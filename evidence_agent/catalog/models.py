"""Catalog tables, one SQLModel class per entity; times are timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

from evidence_agent.domain.states import ClipState, DockState


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and gives them back aware; refuses naive ones."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use an aware UTC time")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _time(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class Unit(SQLModel, table=True):
    __tablename__ = "units"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=32)
    name: str = ""


class Officer(SQLModel, table=True):
    __tablename__ = "officers"
    id: int | None = Field(default=None, primary_key=True)
    badge: str = Field(unique=True, max_length=32)
    name: str = ""
    unit_id: int | None = Field(default=None, foreign_key="units.id")


class Recorder(SQLModel, table=True):
    __tablename__ = "recorders"
    id: int | None = Field(default=None, primary_key=True)
    serial: str = Field(unique=True, max_length=64)
    vendor: str = ""
    model: str = ""
    usb_serial: str | None = Field(default=None, index=True)
    unit_id: int | None = Field(default=None, foreign_key="units.id")
    enrolled: bool = False  # enrolled by a supervisor; unenrolled rows are recorders seen on ingest
    enrolled_at: datetime | None = _time(default=None)
    last_docked_at: datetime | None = _time(default=None)
    # USB ids given at enrolment (4 hex digits): a device showing the enrolled USB serial with
    # other ids is not taken for this recorder.
    usb_vendor_id: str | None = Field(default=None, max_length=4)
    usb_model_id: str | None = Field(default=None, max_length=4)


class RecorderAssignment(SQLModel, table=True):
    """Who held which recorder when: footage is attributed by the assignment at recording time."""

    __tablename__ = "recorder_assignments"
    id: int | None = Field(default=None, primary_key=True)
    recorder_id: int = Field(foreign_key="recorders.id", index=True)
    officer_id: int = Field(foreign_key="officers.id", index=True)
    start: datetime = _time()
    end: datetime | None = _time(default=None)
    actor: str = ""
    reason: str = ""


class DockSession(SQLModel, table=True):
    __tablename__ = "dock_sessions"
    id: str = Field(primary_key=True, max_length=36)
    station_id: str = Field(index=True, max_length=64)
    recorder_id: int | None = Field(default=None, foreign_key="recorders.id", index=True)
    source: str = ""  # folder, usb, cli
    volume: str = ""
    actor: str = ""
    started_at: datetime = _time()
    finished_at: datetime | None = _time(default=None)
    state: str = DockState.RUNNING  # a DockState
    clock_skew_seconds: float | None = None
    files_seen: int = 0
    clips_new: int = 0
    clips_known: int = 0
    files_not_ingested: int = 0
    error: str | None = None
    # Docking daemon: media bytes on the volume and bytes read so far (progress in `status`),
    # the USB device's udev identity (JSON object) and warnings raised at the dock (JSON list).
    bytes_total: int | None = Field(default=None, sa_type=sa.BigInteger)
    bytes_done: int = Field(default=0, sa_type=sa.BigInteger)
    device_info: str = "{}"
    warnings: str = "[]"
    # An unidentified dock: the modification time of its oldest media file (the 24-hour rule's
    # clock runs from it); its files and bytes are in files_seen and bytes_total.
    oldest_file_at: datetime | None = _time(default=None)


class Clip(SQLModel, table=True):
    __tablename__ = "clips"
    __table_args__ = (
        sa.Index("ix_clips_officer_start", "officer_id", "recorded_start"),
        # Searches by officer and time window test the end on the index entry (migration 0004).
        sa.Index("ix_clips_officer_start_end", "officer_id", "recorded_start", "recorded_end"),
        sa.Index("ix_clips_recorder_start", "recorder_id", "recorded_start"),
        sa.Index("ix_clips_unit_start", "unit_id", "recorded_start"),
    )
    id: str = Field(primary_key=True, max_length=36)
    sha256: str = Field(unique=True, max_length=64)
    # BLAKE3 of the same read (spool.SpooledFile): retrievals check it; None before migration 0005
    blake3: str | None = Field(default=None, max_length=64)
    sm3: str | None = Field(default=None, max_length=64)
    size: int = Field(sa_type=sa.BigInteger)
    media_kind: str = ""  # video, photo, audio
    source_path: str = ""  # as shown to people (undecodable bytes escaped)
    source_path_bytes: bytes = Field(sa_type=sa.LargeBinary)  # exactly as on the recorder
    source_mtime: datetime | None = _time(default=None)
    format_name: str | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None
    recorded_start: datetime | None = _time(default=None, index=True)
    recorded_end: datetime | None = _time(default=None)
    time_source: str = ""  # filename, container, file_mtime
    clock_skew_seconds: float | None = None
    important: bool = False
    unit_id: int | None = Field(default=None, foreign_key="units.id")
    recorder_id: int | None = Field(default=None, foreign_key="recorders.id")
    officer_id: int | None = Field(default=None, foreign_key="officers.id")
    dock_session_id: str | None = Field(default=None, foreign_key="dock_sessions.id")
    station_id: str = Field(max_length=64)
    ingested_at: datetime = _time()  # hashed and catalogued: the 24-hour clock stops here
    stored_at: datetime | None = _time(default=None)
    state: str = Field(default=ClipState.SPOOLED, index=True)  # a ClipState
    flags: str = "[]"  # JSON list of flag names, sorted
    retention_class: str = "standard"
    retention_until: datetime | None = _time(default=None)
    legal_hold: bool = False
    # Grounds for permanent keeping set by a supervisor (obstruction, major emergency, ...):
    # JSON list, sorted. Case links are a ground of their own, read from case_clips.
    retention_grounds: str = "[]"


class ClipSource(SQLModel, table=True):
    """Each time a file was found on a recorder: lets a re-dock skip files already read."""

    __tablename__ = "clip_sources"
    __table_args__ = (sa.UniqueConstraint("recorder_id", "source_path_bytes", "size", "mtime_ns"),)
    id: int | None = Field(default=None, primary_key=True)
    clip_id: str = Field(foreign_key="clips.id", index=True)
    recorder_id: int | None = Field(default=None, foreign_key="recorders.id")
    source_path_bytes: bytes = Field(sa_type=sa.LargeBinary)
    size: int = Field(sa_type=sa.BigInteger)
    mtime_ns: int = Field(sa_type=sa.BigInteger)
    dock_session_id: str | None = Field(default=None, foreign_key="dock_sessions.id")
    seen_at: datetime = _time()


class Case(SQLModel, table=True):
    __tablename__ = "cases"
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, max_length=64)
    title: str = ""
    parties: str = "[]"  # JSON list
    cause_of_action: str = ""
    enforcement_type: str = ""
    unit_id: int | None = Field(default=None, foreign_key="units.id")
    handling_officers: str = "[]"  # JSON list of badges
    action_start: datetime | None = _time(default=None)
    action_end: datetime | None = _time(default=None)
    created_at: datetime = _time()
    closed_at: datetime | None = _time(default=None)
    state: str = "open"


class CaseClip(SQLModel, table=True):
    __tablename__ = "case_clips"
    case_id: int = Field(foreign_key="cases.id", primary_key=True)
    clip_id: str = Field(foreign_key="clips.id", primary_key=True)
    linked_at: datetime = _time()
    actor: str = ""
    reason: str = ""


class CaseDocument(SQLModel, table=True):
    """A written record of a case (decision, report, notice), kept in the object store by hash."""

    __tablename__ = "case_documents"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    name: str
    sha256: str = Field(max_length=64)
    size: int = Field(sa_type=sa.BigInteger)
    document_time: datetime | None = _time(default=None)  # when the document was made
    added_at: datetime = _time()
    actor: str = ""
    reason: str = ""


class RetentionRequest(SQLModel, table=True):
    """A request to delete a clip past retention, and the supervisor's decision on it."""

    __tablename__ = "retention_requests"
    id: int | None = Field(default=None, primary_key=True)
    clip_id: str = Field(foreign_key="clips.id", index=True)
    requested_by: str
    requested_at: datetime = _time()
    reason: str
    state: str = "pending"  # pending, approved, withdrawn
    decided_by: str | None = None
    decided_at: datetime | None = _time(default=None)
    decision_reason: str | None = None


class LegalReview(SQLModel, table=True):
    """A case sent for legal review before its decision, its clock and the reviewer's opinion.

    Days (`requested_on`, `due`, `given_on`) are the station's local days: the clock counts
    working days."""

    __tablename__ = "legal_reviews"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="cases.id", index=True)
    requested_at: datetime = _time()
    requested_on: date
    requested_by: str
    reason: str
    case_file_sha256: str = Field(max_length=64)
    incomplete_override: bool = False
    working_days: int  # the period, extensions included
    due: date
    state: str = "pending"  # pending, given
    opinion: str | None = None  # agree, correct, refer_back
    opinion_reason: str | None = None
    reviewer: str | None = None
    given_at: datetime | None = _time(default=None)
    given_on: date | None = None


class Notice(SQLModel, table=True):
    """A decision to be made public, its publication and withdrawal clocks.

    `body` is the decision's text as the agency wrote it, personal data included; only the
    redacted `published_text` leaves the station."""

    __tablename__ = "notices"
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, max_length=64)
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    kind: str  # penalty, licence, other
    title: str
    body: str
    persons: str = "[]"  # JSON list: natural persons named (parties, third parties)
    minors: bool = False  # a minor is concerned: never published
    decision_date: date
    due: date
    recorded_at: datetime = _time()
    recorded_by: str = ""
    published_on: date | None = None
    published_text: str | None = None
    published_sha256: str | None = Field(default=None, max_length=64)
    revoked_on: date | None = None
    withdrawal_due: date | None = None
    withdrawn_on: date | None = None


class StatisticsReport(SQLModel, table=True):
    """A statistics report produced: its period and the hash of its figures (also logged)."""

    __tablename__ = "statistics_reports"
    id: int | None = Field(default=None, primary_key=True)
    year: int | None = Field(default=None, index=True)  # an annual report's year
    period_start: date
    period_end: date  # the last day counted
    produced_at: datetime = _time()
    produced_by: str = ""
    sha256: str = Field(max_length=64)  # of the figures (JSON)


class Derivative(SQLModel, table=True):
    """A redacted derivative of a clip: the plan, its approval, and once made the new object."""

    __tablename__ = "derivatives"
    id: str = Field(primary_key=True, max_length=36)
    clip_id: str = Field(foreign_key="clips.id", index=True)  # the original, never replaced
    plan: str  # the redaction plan, RFC 8785 JSON
    plan_sha256: str = Field(max_length=64)
    reason: str
    requested_by: str
    requested_at: datetime = _time()
    state: str = "requested"  # requested, approved, refused, made
    decided_by: str | None = None
    decided_at: datetime | None = _time(default=None)
    decision_reason: str | None = None
    made_by: str | None = None
    made_at: datetime | None = _time(default=None)
    sha256: str | None = Field(default=None, max_length=64)  # the derivative's object
    size: int | None = Field(default=None, sa_type=sa.BigInteger)
    duration_seconds: float | None = None
    tool: str | None = None  # the program and version that made it


class Disclosure(SQLModel, table=True):
    """Evidence to be handed to a recipient: the request, the decision on it, and once produced
    the package's manifests and hash, kept so the station can show what left and to whom."""

    __tablename__ = "disclosures"
    id: str = Field(primary_key=True, max_length=36)
    case_id: int | None = Field(default=None, foreign_key="cases.id", index=True)
    clips: str = "[]"  # JSON list of clip ids, in recording order
    documents: str = "[]"  # JSON list of case document ids
    derivatives: str = "[]"  # JSON list of redacted derivatives' ids
    recipient: str = Field(index=True)
    reason: str
    requested_by: str
    requested_at: datetime = _time()
    earlier: str = "[]"  # JSON list of earlier disclosures' ids to the same recipient
    state: str = "requested"  # requested, approved, refused, produced
    decided_by: str | None = None
    decided_at: datetime | None = _time(default=None)
    decision_reason: str | None = None
    produced_by: str | None = None
    produced_at: datetime | None = _time(default=None)
    package: str | None = None  # where the package was written
    package_sha256: str | None = Field(default=None, max_length=64)  # of its tag manifest
    manifest: str | None = None  # manifest-sha256.txt as written
    tag_manifest: str | None = None  # tagmanifest-sha256.txt as written


class CustodyEntry(SQLModel, table=True):
    """One leaf of a station's custody log: the RFC 8785 bytes of an event and their leaf hash."""

    __tablename__ = "custody_entries"
    station_id: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True, sa_type=sa.BigInteger)
    entry: bytes = Field(sa_type=sa.LargeBinary)
    leaf_hash: bytes = Field(sa_type=sa.LargeBinary)
    event_type: str = Field(max_length=64, index=True)  # index: the access log reads by type
    subject_id: str | None = Field(default=None, index=True, max_length=64)
    recorded_at: datetime = _time()


class CustodyHead(SQLModel, table=True):
    """The tree state of a station's log; locking this row serialises the station's appends."""

    __tablename__ = "custody_heads"
    station_id: str = Field(primary_key=True, max_length=64)
    size: int = Field(default=0, sa_type=sa.BigInteger)
    frontier: bytes = Field(default=b"", sa_type=sa.LargeBinary)  # concatenated subtree roots


class CustodyCheckpoint(SQLModel, table=True):
    __tablename__ = "custody_checkpoints"
    station_id: str = Field(primary_key=True, max_length=64)
    size: int = Field(primary_key=True, sa_type=sa.BigInteger)
    note: str
    created_at: datetime = _time()
