"""Redacted derivatives: a plan requested for a clip, approved by another person, then made and kept."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, NoReturn

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import Clip, Derivative
from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.redaction import parse_plan
from evidence_agent.domain.retention import DeletionApproval, approval_blocker
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.domain.states import ClipState
from evidence_agent.domain.text import check_plain_text
from evidence_agent.errors import EvidenceError, InputError, NotFoundError, PermissionDeniedError
from evidence_agent.services.audit.logged_rows import check_derivative
from evidence_agent.services.derivatives import check_plan, produce_derivative
from evidence_agent.services.guard import refuse, require, role_names
from evidence_agent.services.station import Station
from review.lookup import get_clip

REQUESTED, APPROVED, REFUSED, MADE = "requested", "approved", "refused", "made"


def derivative_json(d: Derivative) -> dict[str, Any]:
    return {
        "id": d.id,
        "clip": d.clip_id,
        "plan": json.loads(d.plan),
        "plan_sha256": d.plan_sha256,
        "reason": d.reason,
        "requested_by": d.requested_by,
        "requested_at": format_time(d.requested_at),
        "state": d.state,
        "decided_by": d.decided_by,
        "decided_at": format_time(d.decided_at) if d.decided_at else None,
        "decision_reason": d.decision_reason,
        "made_by": d.made_by,
        "made_at": format_time(d.made_at) if d.made_at else None,
        "sha256": d.sha256,
        "size": d.size,
        "duration_seconds": d.duration_seconds,
        "tool": d.tool,
    }


def _refused(
    station: Station, caller: Caller, action: Action, error: EvidenceError, reason: str, ref: str
) -> NoReturn:
    refuse(station, caller, action.value, error, subject_kind=Subject.CLIP, subject_id=ref[:64],
           reason=reason)  # fmt: skip


def _reason(value: str | None) -> str:
    text = (value or "").strip()
    if not text:
        raise InputError("a derivative needs a reason", remedy="give --reason TEXT")
    check_plain_text(text, "reason")
    return text


def request_derivative(
    station: Station, caller: Caller, clip_ref: str, plan_doc: Any, reason: str | None
) -> dict[str, Any]:
    """Ask for a redacted derivative of a stored video clip by a plan; another person approves."""
    action = Action.DISCLOSE_REQUEST
    require(station, caller, action, subject_kind=Subject.CLIP, subject_id=clip_ref[:64],
            reason=reason or "")  # fmt: skip
    try:
        text = _reason(reason)
        plan = parse_plan(plan_doc)
        with station.reading() as session:
            clip = get_clip(session, clip_ref)
        if clip.state != ClipState.STORED:
            raise InputError(f"clip {clip.id} is {clip.state}, not in the store")
        check_plan(clip, plan)
    except EvidenceError as e:
        _refused(station, caller, action, e, reason or "", clip_ref)
    plan_bytes = canonical_json(plan.to_json())
    with station.transaction() as session:
        row = Derivative(
            id=str(uuid.uuid4()),
            clip_id=clip.id,
            plan=plan_bytes.decode(),
            plan_sha256=hashlib.sha256(plan_bytes).hexdigest(),
            reason=text,
            requested_by=caller.actor,
            requested_at=station.clock.now(),
        )
        session.add(row)
        station.record(
            session,
            EventType.DERIVATIVE_REQUESTED.event(
                clip.id,
                actor=caller.actor,
                reason=text,
                sha256=clip.sha256,
                data={
                    "derivative": row.id,
                    "plan": plan.to_json(),
                    "plan_sha256": row.plan_sha256,
                    "roles": role_names(caller),
                },
            ),
        )
        return derivative_json(row)


def get_derivative(session: Session, ref: str) -> Derivative:
    ref = ref.strip().lower()
    row = session.get(Derivative, ref)
    if row is None and len(ref) >= 6:
        found = list(
            session.exec(select(Derivative).where(col(Derivative.id).startswith(ref)).limit(2))
        )
        row = found[0] if len(found) == 1 else None
    if row is None:
        raise NotFoundError(f"no derivative {ref!r}")
    return row


def decide_derivative(
    station: Station, caller: Caller, ref: str, reason: str | None, *, approve: bool
) -> dict[str, Any]:
    """A supervisor other than the requester approves or refuses a derivative's plan."""
    action = Action.DISCLOSE_APPROVE
    require(station, caller, action, subject_kind=Subject.CLIP, subject_id=ref[:64])
    try:
        text = _reason(reason)
        with station.reading() as session:
            row = get_derivative(session, ref)
            check_derivative(session, row)
            derivative_id, clip_id, requested_by = row.id, row.clip_id, row.requested_by
            state = row.state
        if state != REQUESTED:
            raise InputError(f"derivative {derivative_id} is {state}: only a request is decided")
        blocker = approval_blocker(
            DeletionApproval.TWO_PERSON, requested_by, caller.actor, "a derivative"
        )
        if blocker is not None:
            raise PermissionDeniedError(f"refused: {blocker}")
    except EvidenceError as e:
        _refused(station, caller, action, e, reason or "", ref)
    with station.transaction() as session:
        current = session.get(Derivative, derivative_id)
        assert current is not None
        current.state = APPROVED if approve else REFUSED
        current.decided_by = caller.actor
        current.decided_at = station.clock.now()
        current.decision_reason = text
        session.add(current)
        event = EventType.DERIVATIVE_APPROVED if approve else EventType.DERIVATIVE_REFUSED
        station.record(
            session,
            event.event(
                clip_id,
                actor=caller.actor,
                reason=text,
                data={
                    "derivative": derivative_id,
                    "requested_by": requested_by,
                    "roles": role_names(caller),
                },
            ),
        )
        return derivative_json(current)


def make(station: Station, caller: Caller, ref: str) -> dict[str, Any]:
    """Make an approved derivative: a new object with its own hash, linked to its original in
    the custody log (parent hash, tool and version, the plan); the original is never replaced."""
    action = Action.DISCLOSE_REQUEST
    require(station, caller, action, subject_kind=Subject.CLIP, subject_id=ref[:64])
    try:
        with station.reading() as session:
            row = get_derivative(session, ref)
            check_derivative(session, row)  # the plan approved is the plan made
            if row.state != APPROVED:
                raise InputError(
                    f"derivative {row.id} is {row.state}: only an approved plan is made",
                    remedy="a supervisor other than the requester approves it with "
                    "`evidence-agent redact approve`",
                )
            clip = session.get(Clip, row.clip_id)
            assert clip is not None
            plan_doc = json.loads(row.plan)
        made = produce_derivative(station, clip, parse_plan(plan_doc))
    except EvidenceError as e:
        _refused(station, caller, action, e, "", ref)
    with station.transaction() as session:
        current = session.get(Derivative, row.id)
        assert current is not None
        current.state = MADE
        current.made_by = caller.actor
        current.made_at = station.clock.now()
        current.sha256 = made.sha256
        current.size = made.size
        current.duration_seconds = made.duration_seconds
        current.tool = made.tool
        session.add(current)
        station.record(
            session,
            EventType.CLIP_DERIVATIVE_MADE.event(
                clip.id,
                actor=caller.actor,
                reason=current.reason,
                sha256=made.sha256,
                data={
                    "derivative": current.id,
                    "parent_sha256": clip.sha256,
                    "plan": plan_doc,
                    "plan_sha256": current.plan_sha256,
                    "tool": made.tool,
                    "size": made.size,
                    "duration_seconds": made.duration_seconds,
                    "store": station.store.describe(),
                    "retain_until": None,
                    "roles": role_names(caller),
                },
            ),
        )
        return derivative_json(current)
