"""Recorder registry service: enrolment, assignment history, and which docked USB device is which recorder."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import (
    DockSession,
    Officer,
    Recorder,
    RecorderAssignment,
    Unit,
)
from evidence_agent.catalog.queries import undocked_recorders
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.domain.identity import SERIAL_PATTERN
from evidence_agent.domain.text import is_plain_text, shown
from evidence_agent.domain.usb_allowlist import (
    AllowlistEntry,
    classify_device,
    normalize_serial,
    normalize_usb_id,
)
from evidence_agent.errors import InputError, NotFoundError
from evidence_agent.services.station import Station

_BADGE = re.compile(r"[A-Za-z0-9]{1,32}")
_USB_ID = re.compile(r"[0-9a-fA-F]{4}")
_USB_SERIAL = re.compile(r"[\x21-\x7e]{1,126}")  # printable ASCII, as USB string descriptors are


# -- pure: matching a docked device against the registry ---------------------------------------


@dataclass(frozen=True)
class EnrolledDevice:
    """What the registry knows about one enrolled recorder's USB identity."""

    serial: str
    usb_serial: str
    usb_vendor_id: str | None = None
    usb_model_id: str | None = None


@dataclass(frozen=True)
class DeviceMatch:
    """Who a docked USB device is: an enrolled recorder, an allowlisted kind, or unknown."""

    kind: Literal["enrolled", "allowlisted", "unknown"]
    recorder_serial: str | None  # the registry's serial for enrolled recorders
    reason: str

    @property
    def is_recorder(self) -> bool:
        return self.kind != "unknown"


def match_device(
    attributes: Mapping[str, Any],
    enrolled: Iterable[EnrolledDevice],
    allowlist: Sequence[AllowlistEntry],
) -> DeviceMatch:
    """Classify a USB storage device from its udev attributes.

    An enrolled USB serial wins, unless the recorder was enrolled with USB ids the device does
    not show (a stick cloning a recorder's serial is not that recorder). Then the allowlist; then
    unknown, which is never read automatically."""
    usb_serial = _text(attributes.get("ID_SERIAL_SHORT"))
    vendor = _text(attributes.get("ID_VENDOR_ID"))
    model = _text(attributes.get("ID_MODEL_ID"))
    clash = None
    if usb_serial is not None:
        wanted = normalize_serial(usb_serial)
        for device in enrolled:
            if normalize_serial(device.usb_serial) != wanted:
                continue
            wrong = [
                f"{name} {shown or '-'} (enrolled {expected})"
                for name, expected, shown in (
                    ("vendor id", device.usb_vendor_id, vendor),
                    ("model id", device.usb_model_id, model),
                )
                if expected is not None
                and (shown is None or normalize_usb_id(shown) != normalize_usb_id(expected))
            ]
            if wrong:
                clash = (
                    f"USB serial {usb_serial} is enrolled for recorder {device.serial}, "
                    f"but the device shows {', '.join(wrong)}"
                )
                break
            return DeviceMatch(
                "enrolled",
                device.serial,
                f"USB serial {usb_serial} is enrolled recorder {device.serial}",
            )
    if clash is not None:
        return DeviceMatch("unknown", None, clash)
    if classify_device(attributes, (), allowlist) == "recorder":
        return DeviceMatch("allowlisted", None, "matches dock.usb_allowlist")
    ident = " ".join(
        f"{k}={attributes[k]}"
        for k in ("ID_VENDOR_ID", "ID_MODEL_ID", "ID_SERIAL_SHORT")
        if _text(attributes.get(k))
    )
    return DeviceMatch(
        "unknown",
        None,
        f"USB storage {ident or 'without USB identity'} is neither an enrolled recorder "
        "nor in dock.usb_allowlist",
    )


def identity_disagreement(registry_serial: str | None, identity_serial: str | None) -> str | None:
    """A message when the volume's identity file names another recorder than the registry."""
    if registry_serial is None or identity_serial is None or registry_serial == identity_serial:
        return None
    return (
        f"the identity file on the recorder enrolled as {registry_serial} says serial "
        f"{identity_serial}; footage is attributed to {registry_serial} (the registry) and the "
        "dock is flagged: check the recorder and its enrolment"
    )


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


# -- the service -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssignmentView:
    officer: str
    officer_name: str
    start: datetime
    end: datetime | None
    actor: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "officer": self.officer,
            "officer_name": self.officer_name,
            "start": format_time(self.start),
            "end": format_time(self.end) if self.end else None,
            "actor": self.actor,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RecorderView:
    serial: str
    enrolled: bool
    vendor: str
    model: str
    usb_serial: str | None
    usb_vendor_id: str | None
    usb_model_id: str | None
    unit: str | None
    enrolled_at: datetime | None
    last_docked_at: datetime | None
    assigned_to: AssignmentView | None
    history: tuple[AssignmentView, ...] = ()
    docks: tuple[dict[str, Any], ...] = ()
    undocked_hours: float | None = None  # set when overdue for docking

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "enrolled": self.enrolled,
            "vendor": self.vendor,
            "model": self.model,
            "usb_serial": self.usb_serial,
            "usb_vendor_id": self.usb_vendor_id,
            "usb_model_id": self.usb_model_id,
            "unit": self.unit,
            "enrolled_at": format_time(self.enrolled_at) if self.enrolled_at else None,
            "last_docked_at": format_time(self.last_docked_at) if self.last_docked_at else None,
            "assigned_to": self.assigned_to.to_json() if self.assigned_to else None,
            "undocked_hours": self.undocked_hours,
            "history": [a.to_json() for a in self.history],
            "docks": list(self.docks),
        }


def enrolled_devices(session: Session) -> list[EnrolledDevice]:
    rows = session.exec(
        select(Recorder)
        .where(col(Recorder.enrolled).is_(True))
        .where(col(Recorder.usb_serial).is_not(None))
    )
    return [
        EnrolledDevice(r.serial, r.usb_serial or "", r.usb_vendor_id, r.usb_model_id) for r in rows
    ]


def enroll(
    station: Station,
    serial: str,
    *,
    reason: str,
    usb_serial: str | None = None,
    usb_vendor_id: str | None = None,
    usb_model_id: str | None = None,
    vendor: str | None = None,
    model: str | None = None,
    unit: str | None = None,
) -> RecorderView:
    """Enrol a recorder (or one already seen on ingest); its USB serial must be nobody else's."""
    problems = _enrolment_problems(serial, usb_serial, usb_vendor_id, usb_model_id)
    _require_reason(reason, problems)
    if problems:
        raise InputError("cannot enrol: " + "; ".join(problems))
    now = station.clock.now()
    with station.transaction() as session:
        recorder = session.exec(select(Recorder).where(Recorder.serial == serial)).first()
        if recorder is not None and recorder.enrolled:
            raise InputError(
                f"recorder {serial} is already enrolled",
                remedy=f"see it with `evidence-agent recorders show {serial}`",
            )
        if usb_serial is not None:
            _refuse_claimed_usb_serial(session, serial, usb_serial)
        unit_row = _unit(session, unit) if unit else None
        if recorder is None:
            recorder = Recorder(serial=serial)
        recorder.enrolled = True
        recorder.enrolled_at = now
        recorder.usb_serial = usb_serial
        recorder.usb_vendor_id = normalize_usb_id(usb_vendor_id) if usb_vendor_id else None
        recorder.usb_model_id = normalize_usb_id(usb_model_id) if usb_model_id else None
        if vendor is not None:
            recorder.vendor = vendor
        if model is not None:
            recorder.model = model
        if unit_row is not None:
            recorder.unit_id = unit_row.id
        session.add(recorder)
        session.flush()
        station.record(
            session,
            EventType.RECORDER_ENROLLED.event(
                serial,
                actor=station.actor,
                reason=reason,
                data={
                    "usb_serial": usb_serial,
                    "usb_vendor_id": recorder.usb_vendor_id,
                    "usb_model_id": recorder.usb_model_id,
                    "vendor": recorder.vendor,
                    "model": recorder.model,
                    "unit": unit,
                    "enrolled_at": format_time(now),
                },
            ),
        )
        return _view(session, recorder, now)


def _enrolment_problems(
    serial: str, usb_serial: str | None, usb_vendor_id: str | None, usb_model_id: str | None
) -> list[str]:
    """What is wrong with a recorder's serial and USB identity as typed."""
    problems = []
    if not SERIAL_PATTERN.fullmatch(serial):
        problems.append(f"serial {serial!r} must be 1-64 letters, digits or '-'")
    if usb_serial is not None and not _USB_SERIAL.fullmatch(usb_serial):
        problems.append(f"USB serial {usb_serial!r} must be printable ASCII without spaces")
    for name, value in (("--vendor-id", usb_vendor_id), ("--model-id", usb_model_id)):
        if value is not None and not _USB_ID.fullmatch(value):
            problems.append(f"{name} {value!r} must be 4 hex digits (as `udevadm info` shows)")
    if (usb_vendor_id or usb_model_id) and usb_serial is None:
        problems.append("--vendor-id and --model-id need --usb-serial")
    return problems


def _refuse_claimed_usb_serial(session: Session, serial: str, usb_serial: str) -> None:
    """Raise when another recorder in the registry has this USB serial: docking could not tell
    the two apart."""
    wanted = normalize_serial(usb_serial)
    for other in session.exec(select(Recorder).where(col(Recorder.usb_serial).is_not(None))):
        if other.serial != serial and normalize_serial(other.usb_serial or "") == wanted:
            raise InputError(
                f"USB serial {usb_serial} is already enrolled for recorder {other.serial}: "
                "two recorders cannot claim the same serial",
                remedy="check the serial with `udevadm info --query=property /dev/sdX`; "
                "a recorder that really reports another's serial cannot be told apart and "
                "must be docked by hand (`evidence-agent ingest MOUNTPOINT --recorder SERIAL`)",
            )


def assign(
    station: Station,
    serial: str,
    badge: str,
    *,
    reason: str,
    at: datetime | None = None,
    officer_name: str | None = None,
) -> RecorderView:
    """Hand a recorder to an officer from `at` (default now); a current holder's assignment ends then.

    Footage is attributed by the assignment in force at its recording time, so the history is
    only ever appended to: an assignment cannot start before the current one began."""
    problems: list[str] = []
    if not _BADGE.fullmatch(badge):
        problems.append(f"badge {badge!r} must be 1-32 letters or digits")
    _require_reason(reason, problems)
    if problems:
        raise InputError("cannot assign: " + "; ".join(problems))
    now = station.clock.now()
    when = _aware(at) if at is not None else now
    with station.transaction() as session:
        recorder = _recorder(session, serial)
        current = _open_assignment(session, recorder)
        officer = _officer(session, badge, officer_name, recorder.unit_id)
        assert recorder.id is not None and officer.id is not None
        previous = None
        if current is not None:
            if current.officer_id == officer.id:
                raise InputError(f"recorder {serial} is already assigned to officer {badge}")
            previous = _end_for_successor(session, current, when)
        else:
            _refuse_overlap_with_last(session, recorder, when)
        session.add(
            RecorderAssignment(
                recorder_id=recorder.id,
                officer_id=officer.id,
                start=when,
                actor=station.actor,
                reason=reason,
            )
        )
        session.flush()
        station.record(
            session,
            EventType.RECORDER_ASSIGNED.event(
                serial,
                actor=station.actor,
                reason=reason,
                data={"officer": badge, "start": format_time(when), "previous_officer": previous},
            ),
        )
        return _view(session, recorder, now)


def _officer(session: Session, badge: str, name: str | None, unit_id: int | None) -> Officer:
    """The officer with this badge, entered in `unit_id` when new; a name fills an empty one."""
    officer = session.exec(select(Officer).where(Officer.badge == badge)).first()
    if officer is None:
        officer = Officer(badge=badge, name=name or "", unit_id=unit_id)
        session.add(officer)
        session.flush()
    elif name and not officer.name:
        officer.name = name
        session.add(officer)
    return officer


def _end_for_successor(session: Session, current: RecorderAssignment, when: datetime) -> str | None:
    """End the current assignment where the next one starts; the badge of who held it."""
    if when <= current.start:
        raise InputError(
            f"the new assignment would start at {format_time(when)}, not after the current "
            f"one began ({format_time(current.start)})",
            remedy="give --at after the current assignment's start, or leave it out",
        )
    current.end = when
    session.add(current)
    held = session.get(Officer, current.officer_id)
    return held.badge if held else None


def _refuse_overlap_with_last(session: Session, recorder: Recorder, when: datetime) -> None:
    """Raise when a new assignment from `when` would start before the recorder's last one ended."""
    last_end = session.exec(
        select(RecorderAssignment.end)
        .where(RecorderAssignment.recorder_id == recorder.id)
        .order_by(col(RecorderAssignment.end).desc())
    ).first()
    if last_end is not None and when < last_end:
        raise InputError(
            f"the new assignment would start at {format_time(when)}, before the last one "
            f"ended ({format_time(last_end)}): assignments never overlap",
            remedy="give --at after the last assignment's end, or leave it out",
        )


def unassign(
    station: Station, serial: str, *, reason: str, at: datetime | None = None
) -> RecorderView:
    """End the recorder's current assignment at `at` (default now)."""
    problems: list[str] = []
    _require_reason(reason, problems)
    if problems:
        raise InputError("cannot unassign: " + "; ".join(problems))
    now = station.clock.now()
    when = _aware(at) if at is not None else now
    with station.transaction() as session:
        recorder = _recorder(session, serial)
        current = _open_assignment(session, recorder)
        if current is None:
            raise InputError(f"recorder {serial} is not assigned to anyone")
        if when <= current.start:
            raise InputError(
                f"the assignment began at {format_time(current.start)}; it cannot end at "
                f"{format_time(when)}"
            )
        current.end = when
        session.add(current)
        officer = session.get(Officer, current.officer_id)
        station.record(
            session,
            EventType.RECORDER_UNASSIGNED.event(
                serial,
                actor=station.actor,
                reason=reason,
                data={
                    "officer": officer.badge if officer else None,
                    "start": format_time(current.start),
                    "end": format_time(when),
                },
            ),
        )
        return _view(session, recorder, now)


def list_recorders(
    session: Session, now: datetime, *, undocked_warn_hours: float, enrolled_only: bool = False
) -> list[RecorderView]:
    query = select(Recorder).order_by(Recorder.serial)
    if enrolled_only:
        query = query.where(col(Recorder.enrolled).is_(True))
    overdue = {
        row["recorder"]: row["hours_undocked"]
        for row in undocked_recorders(session, now, timedelta(hours=undocked_warn_hours))
    }
    return [_view(session, r, now, undocked=overdue.get(r.serial)) for r in session.exec(query)]


def show_recorder(
    session: Session, serial: str, now: datetime, *, undocked_warn_hours: float, docks: int = 10
) -> RecorderView:
    """One recorder with its whole assignment history and its latest docks."""
    recorder = _recorder(session, serial)
    overdue = {
        row["recorder"]: row["hours_undocked"]
        for row in undocked_recorders(session, now, timedelta(hours=undocked_warn_hours))
    }
    history = tuple(
        AssignmentView(o.badge, o.name, a.start, a.end, a.actor, a.reason)
        for a, o in session.exec(
            select(RecorderAssignment, Officer)
            .join(Officer, col(RecorderAssignment.officer_id) == Officer.id)
            .where(RecorderAssignment.recorder_id == recorder.id)
            .order_by(col(RecorderAssignment.start))
        )
    )
    dock_rows = tuple(
        {
            "dock_session": d.id,
            "source": d.source,
            "started_at": format_time(d.started_at),
            "finished_at": format_time(d.finished_at) if d.finished_at else None,
            "state": d.state,
            "clips_new": d.clips_new,
            "clips_known": d.clips_known,
            "clock_skew_seconds": d.clock_skew_seconds,
            "warnings": json.loads(d.warnings or "[]"),
            "error": d.error,
        }
        for d in session.exec(
            select(DockSession)
            .where(DockSession.recorder_id == recorder.id)
            .order_by(col(DockSession.started_at).desc())
            .limit(docks)
        )
    )
    view = _view(session, recorder, now, undocked=overdue.get(recorder.serial))
    return replace(view, history=history, docks=dock_rows)


def _view(
    session: Session, recorder: Recorder, now: datetime, *, undocked: float | None = None
) -> RecorderView:
    current = _open_assignment(session, recorder, at=now)
    assigned = None
    if current is not None:
        officer = session.get(Officer, current.officer_id)
        assigned = AssignmentView(
            officer.badge if officer else "?",
            officer.name if officer else "",
            current.start,
            current.end,
            current.actor,
            current.reason,
        )
    unit = session.get(Unit, recorder.unit_id) if recorder.unit_id else None
    return RecorderView(
        serial=recorder.serial,
        enrolled=recorder.enrolled,
        vendor=recorder.vendor,
        model=recorder.model,
        usb_serial=recorder.usb_serial,
        usb_vendor_id=recorder.usb_vendor_id,
        usb_model_id=recorder.usb_model_id,
        unit=unit.code if unit else None,
        enrolled_at=recorder.enrolled_at,
        last_docked_at=recorder.last_docked_at,
        assigned_to=assigned,
        undocked_hours=undocked,
    )


def _recorder(session: Session, serial: str) -> Recorder:
    recorder = session.exec(select(Recorder).where(Recorder.serial == serial)).first()
    if recorder is None:
        raise NotFoundError(
            f"no recorder {serial} in the registry",
            remedy="enrol it with `evidence-agent recorders enroll SERIAL --reason ...`",
        )
    return recorder


def _open_assignment(
    session: Session, recorder: Recorder, *, at: datetime | None = None
) -> RecorderAssignment | None:
    query = (
        select(RecorderAssignment)
        .where(RecorderAssignment.recorder_id == recorder.id)
        .where(col(RecorderAssignment.end).is_(None))
    )
    if at is not None:
        query = query.where(RecorderAssignment.start <= at)
    return session.exec(query.order_by(col(RecorderAssignment.start).desc())).first()


def _unit(session: Session, code: str) -> Unit:
    unit = session.exec(select(Unit).where(Unit.code == code)).first()
    if unit is None:
        unit = Unit(code=code, name="")
        session.add(unit)
        session.flush()
    return unit


def _require_reason(reason: str, problems: list[str]) -> None:
    if not reason.strip():
        problems.append("--reason must say why (it goes into the custody log)")
    elif not is_plain_text(reason):
        problems.append(f"--reason holds control characters: {shown(reason)}")


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InputError(
            f"time {value.isoformat()} needs a UTC offset (e.g. 2026-11-20T08:00+08:00)"
        )
    return value


def assigned_officer(session: Session, recorder_id: int, at: datetime) -> Officer | None:
    """Who held the recorder at that moment, by the assignment registry."""
    row = session.exec(
        select(RecorderAssignment)
        .where(RecorderAssignment.recorder_id == recorder_id)
        .where(RecorderAssignment.start <= at)
        .where((col(RecorderAssignment.end).is_(None)) | (col(RecorderAssignment.end) > at))
        .order_by(col(RecorderAssignment.start).desc())
    ).first()
    return session.get(Officer, row.officer_id) if row is not None else None
