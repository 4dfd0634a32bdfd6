"""Read-only catalog queries shared by the CLI and the review tools: clip listings and status."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import aliased
from sqlmodel import Session, col, func, select

from evidence_agent.catalog.models import (
    Case,
    Clip,
    DockSession,
    Officer,
    Recorder,
    RecorderAssignment,
    Unit,
)
from evidence_agent.custody.events import format_time
from evidence_agent.domain.case_file import case_file_clock
from evidence_agent.domain.deadline import DeadlineRule, DeadlineState, deadline_state, late_cause
from evidence_agent.domain.flags import Flag
from evidence_agent.domain.states import ClipState, DockState


@dataclass(frozen=True)
class ClipView:
    clip: Clip
    recorder: str | None
    officer: str | None
    officer_name: str | None
    unit: str | None
    limit_hours: int = 24  # deadline.limit_hours, for the lateness of late clips
    docked_at: datetime | None = None  # when the dock that brought the clip in started

    def to_json(self) -> dict[str, Any]:
        c = self.clip
        flags = json.loads(c.flags)
        after = (
            (c.ingested_at - c.recorded_end).total_seconds() if c.recorded_end is not None else None
        )
        late_by = (
            after - self.limit_hours * 3600
            if after is not None and Flag.LATE.value in flags
            else None
        )
        return {
            "id": c.id,
            "sha256": c.sha256,
            "blake3": c.blake3,
            "sm3": c.sm3,
            "size": c.size,
            "media_kind": c.media_kind,
            "source_path": c.source_path,
            "recorder": self.recorder,
            "officer": self.officer,
            "officer_name": self.officer_name,
            "unit": self.unit,
            "recorded_start": _t(c.recorded_start),
            "recorded_end": _t(c.recorded_end),
            "time_source": c.time_source,
            "duration_seconds": c.duration_seconds,
            "video_codec": c.video_codec,
            "audio_codec": c.audio_codec,
            "width": c.width,
            "height": c.height,
            "important": c.important,
            "ingested_at": _t(c.ingested_at),
            "stored_at": _t(c.stored_at),
            "state": c.state,
            "flags": flags,
            # From the end of the recording to hashed-and-catalogued; for clips flagged late,
            # how far past the limit that was.
            "ingested_after_seconds": after,
            "late_by_seconds": late_by,
            "late_cause": late_cause(
                c.recorded_end,
                _aware(self.docked_at),
                c.ingested_at,
                DeadlineRule(limit=timedelta(hours=self.limit_hours)),
            ),
            "retention_class": c.retention_class,
            "retention_until": _t(c.retention_until),
            "station": c.station_id,
        }


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def clip_views(
    session: Session,
    *,
    officer: str | None = None,
    recorder: str | None = None,
    unit: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    state: str | None = None,
    important: bool | None = None,
    clip_ids: list[str] | None = None,
    limit: int | None = None,
    limit_hours: int = 24,
    late: bool | None = None,
) -> list[ClipView]:
    """Clips with their recorder, officer and unit, newest recording first; `late`: only the
    clips that broke the 24-hour rule (flagged late when catalogued), or only the others."""
    rec, off, un = aliased(Recorder), aliased(Officer), aliased(Unit)
    query = (
        select(Clip, rec, off, un)
        .outerjoin(rec, col(Clip.recorder_id) == rec.id)
        .outerjoin(off, col(Clip.officer_id) == off.id)
        .outerjoin(un, col(Clip.unit_id) == un.id)
    )
    if late is not None:
        flagged = col(Clip.flags).contains(f'"{Flag.LATE.value}"')
        query = query.where(flagged if late else ~flagged)
    if officer is not None:
        query = query.where(off.badge == officer)
    if recorder is not None:
        query = query.where(rec.serial == recorder)
    if unit is not None:
        query = query.where(un.code == unit)
    if since is not None:
        query = query.where(col(Clip.recorded_end) >= since)
    if until is not None:
        query = query.where(col(Clip.recorded_start) < until)
    if state is not None:
        query = query.where(Clip.state == state)
    if important is not None:
        query = query.where(Clip.important == important)
    if clip_ids is not None:
        query = query.where(col(Clip.id).in_(clip_ids))
    query = query.order_by(col(Clip.recorded_start).desc(), col(Clip.id))
    if limit is not None:
        query = query.limit(limit)
    rows = list(session.exec(query))
    # When each late clip's dock started, which says whose delay it was (late_cause).
    docks = sorted(
        {
            c.dock_session_id
            for c, _, _, _ in rows
            if c.dock_session_id is not None and Flag.LATE.value in c.flags
        }
    )
    docked_at: dict[str, datetime] = {}
    for first in range(0, len(docks), 500):  # within any database's limit of bound values
        docked_at.update(
            session.exec(
                select(DockSession.id, DockSession.started_at).where(
                    col(DockSession.id).in_(docks[first : first + 500])
                )
            ).all()
        )
    return [
        ClipView(
            c,
            r.serial if r else None,
            o.badge if o else None,
            o.name if o else None,
            u.code if u else None,
            limit_hours,
            docked_at.get(c.dock_session_id) if c.dock_session_id else None,
        )
        for c, r, o, u in rows
    ]


def find_clip(session: Session, ref: str) -> Clip | None:
    """A clip by id, unique id prefix (at least 6 characters) or SHA-256."""
    clip = session.get(Clip, ref)
    if clip is not None:
        return clip
    if len(ref) == 64:
        return session.exec(select(Clip).where(Clip.sha256 == ref.lower())).first()
    if len(ref) >= 6:
        rows = list(
            session.exec(select(Clip).where(col(Clip.id).startswith(ref, autoescape=True)).limit(2))
        )
        if len(rows) == 1:
            return rows[0]
    return None


@dataclass
class StatusView:
    now: datetime
    spooled_clips: int
    spooled_bytes: int
    oldest_spooled: datetime | None
    running_docks: list[dict[str, Any]]
    late: dict[tuple[str, str], int]  # (unit, officer) -> clips catalogued over the limit
    approaching: dict[tuple[str, str], int]  # (unit, officer) -> clips not stored, past warn
    clips_total: int
    last_stored_at: datetime | None
    refused_devices: list[dict[str, Any]] = field(default_factory=list)
    unidentified_docks: list[dict[str, Any]] = field(default_factory=list)
    clock_skew: list[dict[str, Any]] = field(default_factory=list)
    undocked: list[dict[str, Any]] = field(default_factory=list)
    # Open cases whose action has ended, soonest due first; None when not asked for.
    case_files: list[dict[str, Any]] | None = None
    case_file_days: int | None = None

    def to_json(self) -> dict[str, Any]:
        def rows(counts: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
            return [{"unit": u, "officer": o, "clips": n} for (u, o), n in sorted(counts.items())]

        return {
            "now": format_time(self.now),
            "clips_total": self.clips_total,
            "backlog": {
                "spooled_clips": self.spooled_clips,
                "spooled_bytes": self.spooled_bytes,
                "oldest_spooled_at": _t(self.oldest_spooled),
            },
            "docks_running": self.running_docks,
            "over_24_hours": rows(self.late),
            "approaching_24_hours": rows(self.approaching),
            "last_stored_at": _t(self.last_stored_at),
            "refused_devices": self.refused_devices,
            "unidentified_docks": self.unidentified_docks,
            "clock_skew": self.clock_skew,
            "undocked_recorders": self.undocked,
            "case_files": (
                None
                if self.case_files is None
                else {
                    "days": self.case_file_days,
                    "open": len(self.case_files),
                    "overdue": sum(1 for c in self.case_files if c["overdue"]),
                    "cases": self.case_files,
                }
            ),
        }


REFUSED_SHOWN_FOR = timedelta(hours=24)


def station_status(
    session: Session,
    now: datetime,
    rule: DeadlineRule,
    *,
    clock_skew_warn_seconds: float | None = None,
    undocked_warn_hours: float | None = None,
    case_file_days: int | None = None,
) -> StatusView:
    """The station at `now`. `case_file_days` (review.case_file_days) adds the case-file clock of every
    open case whose action has ended; without it `case_files` is None."""
    spooled = session.exec(
        select(
            func.count(), func.coalesce(func.sum(Clip.size), 0), func.min(Clip.ingested_at)
        ).where(Clip.state == ClipState.SPOOLED)
    ).one()
    total = session.exec(select(func.count()).select_from(Clip)).one()
    last_stored = session.exec(select(func.max(Clip.stored_at))).one()
    docks = _running_docks(session)
    late = _late_by_unit_and_officer(session)
    approaching = _approaching_by_unit_and_officer(session, now, rule)
    _, _, oldest = spooled
    return StatusView(
        now=now,
        spooled_clips=spooled[0],
        spooled_bytes=int(spooled[1]),
        oldest_spooled=_aware(oldest),
        running_docks=docks,
        late=late,
        approaching=approaching,
        clips_total=total,
        last_stored_at=_aware(last_stored),
        refused_devices=refused_devices(session, since=now - REFUSED_SHOWN_FOR),
        unidentified_docks=unidentified_docks(session, now, rule),
        clock_skew=(
            []
            if clock_skew_warn_seconds is None
            else clock_skew_warnings(session, clock_skew_warn_seconds)
        ),
        undocked=(
            []
            if undocked_warn_hours is None
            else undocked_recorders(session, now, timedelta(hours=undocked_warn_hours))
        ),
        case_files=(
            None if case_file_days is None else case_file_clocks(session, now, case_file_days)
        ),
        case_file_days=case_file_days,
    )


def _running_docks(session: Session) -> list[dict[str, Any]]:
    """The docks under way, oldest first, with how far each has come."""
    return [
        {
            "dock_session": d.id,
            "recorder": serial,
            "volume": d.volume,
            "source": d.source,
            "started_at": _t(d.started_at),
            "bytes_done": d.bytes_done,
            "bytes_total": d.bytes_total,
            "clock_skew_seconds": d.clock_skew_seconds,
        }
        for d, serial in session.exec(
            select(DockSession, Recorder.serial)
            .outerjoin(Recorder, col(DockSession.recorder_id) == Recorder.id)
            .where(DockSession.state == DockState.RUNNING)
            .order_by(col(DockSession.started_at))
        )
    ]


def _late_by_unit_and_officer(session: Session) -> dict[tuple[str, str], int]:
    """How many clips were catalogued late, by (unit code, badge); "-" where there is none."""
    unit_alias = aliased(Unit)
    late: dict[tuple[str, str], int] = defaultdict(int)
    for badge, unit_code, count in session.exec(
        select(Officer.badge, unit_alias.code, func.count())
        .select_from(Clip)
        .outerjoin(Officer, col(Clip.officer_id) == Officer.id)
        .outerjoin(unit_alias, col(Clip.unit_id) == unit_alias.id)
        .where(col(Clip.flags).contains(f'"{Flag.LATE.value}"'))
        .group_by(Officer.badge, unit_alias.code)
    ):
        late[(unit_code or "-", badge or "-")] += count
    return dict(late)


def _approaching_by_unit_and_officer(
    session: Session, now: datetime, rule: DeadlineRule
) -> dict[tuple[str, str], int]:
    """How many spooled clips are past the rule's warning time at `now`, by (unit code, badge).

    Catalogued clips have met (or missed) the rule already; those still in the spool owe the
    store step, and are shown once they pass the warning time."""
    unit_alias = aliased(Unit)
    approaching: dict[tuple[str, str], int] = defaultdict(int)
    for clip, badge, unit_code in session.exec(
        select(Clip, Officer.badge, unit_alias.code)
        .outerjoin(Officer, col(Clip.officer_id) == Officer.id)
        .outerjoin(unit_alias, col(Clip.unit_id) == unit_alias.id)
        .where(Clip.state == ClipState.SPOOLED)
    ):
        state = deadline_state(clip.recorded_end, clip.ingested_at, clip.stored_at, now, rule)
        if state is DeadlineState.APPROACHING:
            approaching[(unit_code or "-", badge or "-")] += 1
    return dict(approaching)


def case_file_clocks(session: Session, now: datetime, days: int) -> list[dict[str, Any]]:
    """Open cases whose action has ended by `now`, soonest due first, with their case-file clock.

    The action's end starts the clock; a case whose action is still under way has none yet."""
    rows = session.exec(
        select(Case, Unit.code)
        .outerjoin(Unit, col(Case.unit_id) == Unit.id)
        .where(Case.state == "open")
        .where(col(Case.action_end).is_not(None))
        .where(col(Case.action_end) <= now)
        .order_by(col(Case.action_end), col(Case.number))
    )
    cases = []
    for case, unit_code in rows:
        clock = case_file_clock(case.action_end, now, days)
        assert clock is not None  # the query asked for an end
        cases.append(
            {
                "number": case.number,
                "unit": unit_code,
                "action_end": _t(case.action_end),
                "case_file_due": _t(clock.due),
                "case_file_days_left": clock.days_left,
                "overdue": clock.overdue,
                "days_overdue": clock.days_overdue,
            }
        )
    return cases


def refused_devices(session: Session, *, since: datetime) -> list[dict[str, Any]]:
    """USB storage that was docked and not read (unknown, or a serial claimed twice), newest first."""
    rows = session.exec(
        select(DockSession)
        .where(DockSession.state == DockState.REFUSED)
        .where(DockSession.started_at >= since)
        .order_by(col(DockSession.started_at).desc())
    )
    return [
        {
            "dock_session": d.id,
            "device": d.volume,
            "at": _t(d.started_at),
            "reason": d.error,
            "usb": json.loads(d.device_info or "{}"),
        }
        for d in rows
    ]


def unidentified_docks(session: Session, now: datetime, rule: DeadlineRule) -> list[dict[str, Any]]:
    """Docked volumes no recorder could be named for, oldest file first: nothing of them is read,
    and the 24-hour rule runs from their oldest media file's modification time (`deadline`:
    pending, approaching, breached; unknown without media)."""
    rows = session.exec(
        select(DockSession)
        .where(DockSession.state == DockState.UNIDENTIFIED)
        .order_by(col(DockSession.oldest_file_at), col(DockSession.started_at))
    )
    return [
        {
            "dock_session": d.id,
            "source": d.source,
            "volume": d.volume,
            "docked_at": _t(d.started_at),
            "files": d.files_seen,
            "bytes": d.bytes_total or 0,
            "oldest_file_at": _t(d.oldest_file_at),
            "hours_since_oldest_file": (
                None
                if d.oldest_file_at is None
                else round((now - d.oldest_file_at).total_seconds() / 3600, 1)
            ),
            "deadline": deadline_state(d.oldest_file_at, None, None, now, rule).value,
            "usb": json.loads(d.device_info or "{}"),
        }
        for d in rows
    ]


def clock_skew_warnings(session: Session, threshold_seconds: float) -> list[dict[str, Any]]:
    """Recorders whose clock was off by more than the threshold at their latest measured dock."""
    latest = (
        select(
            DockSession.recorder_id,
            func.max(DockSession.started_at).label("started_at"),
        )
        .where(col(DockSession.clock_skew_seconds).is_not(None))
        .group_by(col(DockSession.recorder_id))
        .subquery()
    )
    rows = session.exec(
        select(Recorder.serial, DockSession.clock_skew_seconds, DockSession.started_at)
        .join(DockSession, col(DockSession.recorder_id) == Recorder.id)
        .join(
            latest,
            (latest.c.recorder_id == DockSession.recorder_id)
            & (latest.c.started_at == DockSession.started_at),
        )
        .order_by(Recorder.serial)
    )
    return [
        {"recorder": serial, "clock_skew_seconds": skew, "docked_at": _t(_aware(at))}
        for serial, skew, at in rows
        if skew is not None and abs(skew) > threshold_seconds
    ]


def undocked_recorders(session: Session, now: datetime, limit: timedelta) -> list[dict[str, Any]]:
    """Recorders assigned to an officer now and not docked for longer than `limit`.

    Time counts from the later of the last dock and the start of the assignment: a recorder
    handed out an hour ago is not overdue because it sat in a drawer for a week before."""
    rows = session.exec(
        select(Recorder, RecorderAssignment, Officer)
        .join(RecorderAssignment, col(RecorderAssignment.recorder_id) == Recorder.id)
        .join(Officer, col(RecorderAssignment.officer_id) == Officer.id)
        .where(col(RecorderAssignment.end).is_(None))
        .where(RecorderAssignment.start <= now)
        .order_by(Recorder.serial)
    )
    overdue = []
    for recorder, assignment, officer in rows:
        since = max(filter(None, (recorder.last_docked_at, assignment.start)))
        if now - since > limit:
            overdue.append(
                {
                    "recorder": recorder.serial,
                    "officer": officer.badge,
                    "officer_name": officer.name,
                    "last_docked_at": _t(recorder.last_docked_at),
                    "assigned_since": _t(assignment.start),
                    "hours_undocked": round((now - since).total_seconds() / 3600, 1),
                }
            )
    return overdue


def _aware(value: Any) -> datetime | None:
    """Aggregates bypass the column type on SQLite and come back as naive text or datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
