"""Disclosure requests and decisions: a clerk asks, another person with the supervisor role decides."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlmodel import Session, col, func, select

from evidence_agent.catalog.models import Case, CaseDocument, Clip, Derivative, Disclosure
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.retention import DeletionApproval, approval_blocker
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.domain.states import ClipState
from evidence_agent.domain.text import check_plain_text
from evidence_agent.errors import EvidenceError, InputError, NotFoundError, PermissionDeniedError
from evidence_agent.services.audit.logged_rows import check_derivative, check_disclosure
from evidence_agent.services.guard import record_view, refuse, require, role_names
from evidence_agent.services.station import Station
from publish.redaction.derivatives import MADE, get_derivative
from review.lookup import get_case, get_clip, json_list, linked_clip_ids

REQUESTED, APPROVED, REFUSED, PRODUCED = "requested", "approved", "refused", "produced"
_MAX_RECIPIENT = 200


@dataclass(frozen=True)
class DisclosureRequest:
    recipient: str | None
    reason: str | None
    case: str | None  # a case: its linked clips and attached documents
    clips: Sequence[str] = ()  # clip ids, id prefixes or SHA-256, beside or instead of a case
    derivatives: Sequence[str] = ()  # redacted derivatives (made), beside or instead of clips


def disclosure_json(session: Session, d: Disclosure) -> dict[str, Any]:
    case = session.get(Case, d.case_id) if d.case_id is not None else None
    return {
        "id": d.id,
        "case": case.number if case else None,
        "clips": json_list(d.clips),
        "documents": [int(x) for x in json_list(d.documents)],
        "derivatives": json_list(d.derivatives),
        "recipient": d.recipient,
        "reason": d.reason,
        "requested_by": d.requested_by,
        "requested_at": format_time(d.requested_at),
        "earlier": json_list(d.earlier),
        "state": d.state,
        "decided_by": d.decided_by,
        "decided_at": format_time(d.decided_at) if d.decided_at else None,
        "decision_reason": d.decision_reason,
        "produced_by": d.produced_by,
        "produced_at": format_time(d.produced_at) if d.produced_at else None,
        "package": d.package,
        "package_sha256": d.package_sha256,
    }


def _refused(
    station: Station,
    caller: Caller,
    action: Action,
    error: EvidenceError,
    reason: str,
    disclosure: str | None,
    **data: Any,
) -> NoReturn:
    refuse(
        station,
        caller,
        action.value,
        error,
        subject_kind=Subject.DISCLOSURE if disclosure else Subject.STATION,
        subject_id=disclosure,
        reason=reason,
        data=data or None,
    )


def _text(value: str | None, what: str, option: str) -> str:
    text = (value or "").strip()
    if not text:
        raise InputError(f"a disclosure needs {what}", remedy=f"give {option} TEXT")
    check_plain_text(text, what)
    return text


def request_disclosure(
    station: Station, caller: Caller, request: DisclosureRequest
) -> dict[str, Any]:
    """Record a request to disclose a case (its footage and documents) or chosen clips to a
    named recipient, with a reason. Earlier disclosures to the same recipient are named in it."""
    action = Action.DISCLOSE_REQUEST
    asked = {"case": request.case, "clips": [*request.clips, *request.derivatives]}
    require(station, caller, action, reason=request.reason or "")
    try:
        reason = _text(request.reason, "a reason", "--reason")
        recipient = _text(request.recipient, "a recipient", "--recipient")
        if len(recipient) > _MAX_RECIPIENT:
            raise InputError(f"the recipient's name is longer than {_MAX_RECIPIENT} characters")
        if not request.case and not request.clips and not request.derivatives:
            raise InputError("name the clips or derivatives to disclose, or a case with --case")
        with station.reading() as session:
            case_id, clips, documents = _resolve(session, request)
            derivatives = [_made_derivative(session, ref) for ref in request.derivatives]
    except EvidenceError as e:
        _refused(station, caller, action, e, request.reason or "", None, **asked)
    now = station.clock.now()
    with station.transaction() as session:
        earlier = [
            d.id
            for d in session.exec(
                select(Disclosure)
                .where(func.lower(Disclosure.recipient) == recipient.lower())
                .order_by(col(Disclosure.requested_at), col(Disclosure.id))
            )
        ]
        row = Disclosure(
            id=str(uuid.uuid4()),
            case_id=case_id,
            clips=json.dumps(clips),
            documents=json.dumps(documents),
            derivatives=json.dumps(derivatives),
            recipient=recipient,
            reason=reason,
            requested_by=caller.actor,
            requested_at=now,
            earlier=json.dumps(earlier),
        )
        session.add(row)
        session.flush()
        shown = disclosure_json(session, row)
        station.record(
            session,
            EventType.DISCLOSURE_REQUESTED.event(
                row.id,
                actor=caller.actor,
                reason=reason,
                data={
                    "case": shown["case"],
                    "clips": clips,
                    "documents": documents,
                    "recipient": recipient,
                    "earlier": earlier,
                    "roles": role_names(caller),
                    **({"derivatives": derivatives} if derivatives else {}),
                },
            ),
        )
        return shown


def _made_derivative(session: Session, ref: str) -> str:
    row: Derivative = get_derivative(session, ref)
    check_derivative(session, row)
    if row.state != MADE:
        raise InputError(f"derivative {row.id} is {row.state}: only a made derivative is disclosed")
    return row.id


def _resolve(
    session: Session, request: DisclosureRequest
) -> tuple[int | None, list[str], list[int]]:
    """The case, the clips in recording order (each in the store) and the case's documents."""
    ids: list[str] = []
    case_id = None
    documents: list[int] = []
    if request.case:
        case = get_case(session, request.case)
        assert case.id is not None
        case_id = case.id
        ids = linked_clip_ids(session, case.id)
        documents = [
            d.id
            for d in session.exec(
                select(CaseDocument)
                .where(CaseDocument.case_id == case.id)
                .order_by(col(CaseDocument.id))
            )
            if d.id is not None
        ]
        if not ids and not documents and not request.clips:
            raise InputError(f"case {case.number} has no footage or documents to disclose")
    clips: dict[str, Clip] = {}
    for ref in [*ids, *request.clips]:
        clip = get_clip(session, ref)
        if clip.state != ClipState.STORED:
            raise InputError(
                f"clip {clip.id} is {clip.state}, not in the store: it cannot be disclosed",
                remedy="a spooled clip can be disclosed once `evidence-agent store` has run",
            )
        clips.setdefault(clip.id, clip)
    ordered = sorted(
        clips.values(), key=lambda c: (c.recorded_start is None, c.recorded_start, c.id)
    )
    return case_id, [c.id for c in ordered], documents


def get_disclosure(session: Session, ref: str) -> Disclosure:
    """A disclosure by its id or a unique prefix of 6 or more characters."""
    ref = ref.strip().lower()
    row = session.get(Disclosure, ref)
    if row is not None:
        return row
    if len(ref) >= 6:
        found = list(
            session.exec(select(Disclosure).where(col(Disclosure.id).startswith(ref)).limit(2))
        )
        if len(found) == 1:
            return found[0]
    raise NotFoundError(
        f"no disclosure {ref!r}", remedy="`evidence-agent disclose list` shows them"
    )


def decide_disclosure(
    station: Station, caller: Caller, ref: str, reason: str | None, *, approve: bool
) -> dict[str, Any]:
    """A supervisor's approval or refusal of a disclosure that another person requested."""
    action = Action.DISCLOSE_APPROVE
    require(station, caller, action, subject_kind=Subject.DISCLOSURE, subject_id=ref[:64])
    try:
        text = _text(reason, "a reason", "--reason")
        with station.reading() as session:
            row = get_disclosure(session, ref)
            check_disclosure(session, row)  # who asked, for what: as logged, not as edited
            disclosure_id, requested_by, state = row.id, row.requested_by, row.state
    except EvidenceError as e:
        _refused(station, caller, action, e, reason or "", ref[:64])
    if state != REQUESTED:
        _refused(
            station,
            caller,
            action,
            InputError(f"disclosure {disclosure_id} is {state}: only a request can be decided"),
            text,
            disclosure_id,
        )
    # Always two persons: evidence leaves the station only with a second person's approval.
    blocker = approval_blocker(
        DeletionApproval.TWO_PERSON, requested_by, caller.actor, "a disclosure"
    )
    if blocker is not None:
        _refused(
            station, caller, action, PermissionDeniedError(f"refused: {blocker}"), text,
            disclosure_id,
        )  # fmt: skip
    with station.transaction() as session:
        current = session.get(Disclosure, disclosure_id)
        assert current is not None
        row = current
        if row.state != REQUESTED:  # decided meanwhile by someone else
            raise InputError(f"disclosure {row.id} was {row.state} meanwhile")
        row.state = APPROVED if approve else REFUSED
        row.decided_by = caller.actor
        row.decided_at = station.clock.now()
        row.decision_reason = text
        session.add(row)
        event = EventType.DISCLOSURE_APPROVED if approve else EventType.DISCLOSURE_REFUSED
        station.record(
            session,
            event.event(
                row.id,
                actor=caller.actor,
                reason=text,
                data={"requested_by": requested_by, "roles": role_names(caller)},
            ),
        )
        return disclosure_json(session, row)


def list_disclosures(
    station: Station, caller: Caller, recipient: str | None = None
) -> list[dict[str, Any]]:
    require(station, caller, Action.DISCLOSE_READ)
    with station.reading() as session:
        query = select(Disclosure).order_by(col(Disclosure.requested_at), col(Disclosure.id))
        if recipient:
            query = query.where(func.lower(Disclosure.recipient) == recipient.strip().lower())
        rows = [disclosure_json(session, d) for d in session.exec(query)]
    record_view(
        station,
        caller,
        EventType.DISCLOSURES_LISTED,
        subject_kind=Subject.STATION,
        subject_id=station.settings.station_id,
        data={"recipient": recipient, "disclosures": [r["id"] for r in rows]},
    )
    return rows


def show_disclosure(station: Station, caller: Caller, ref: str) -> dict[str, Any]:
    """A disclosure with, once produced, the manifests kept of its package."""
    require(station, caller, Action.DISCLOSE_READ, subject_kind=Subject.DISCLOSURE,
            subject_id=ref[:64])  # fmt: skip
    try:
        with station.reading() as session:
            row = get_disclosure(session, ref)
            shown = disclosure_json(session, row)
            shown["manifest"] = row.manifest
            shown["tag_manifest"] = row.tag_manifest
    except EvidenceError as e:
        _refused(station, caller, Action.DISCLOSE_READ, e, "", ref[:64])
    record_view(
        station,
        caller,
        EventType.DISCLOSURE_VIEWED,
        subject_kind=Subject.DISCLOSURE,
        subject_id=shown["id"],
        data={"state": shown["state"]},
    )
    return shown
