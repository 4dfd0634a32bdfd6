"""Case files: cases, the footage and documents linked to them, suggestions, timeline and check."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import Case, CaseClip, CaseDocument, Clip, Unit
from evidence_agent.catalog.queries import ClipView, clip_views
from evidence_agent.config import ReviewRules
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.case_file import case_file_clock, case_file_due
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.domain.states import ClipState
from evidence_agent.domain.text import is_plain_text, shown
from evidence_agent.errors import EvidenceError, InputError, StorageError
from evidence_agent.services.audit.logged_rows import case_as_logged_or_refuse
from evidence_agent.services.guard import read_or_refuse, record_view, refuse, require
from evidence_agent.services.station import Station
from review.case_coverage import case_coverage, incomplete_error, incomplete_override
from review.completeness import CoverageReport
from review.lookup import get_case, get_clip, json_list, linked_clip_ids
from review.retention import apply_retention


@dataclass(frozen=True)
class CaseInput:
    number: str
    title: str
    parties: Sequence[str]
    cause_of_action: str
    enforcement_type: str
    unit: str | None
    officers: Sequence[str]  # badges of the handling officers
    action_start: datetime | None
    action_end: datetime | None


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def case_json(session: Session, case: Case, rules: ReviewRules) -> dict[str, Any]:
    unit = session.get(Unit, case.unit_id) if case.unit_id else None
    assert case.id is not None
    due = case_file_due(case.action_end, rules.case_file_days)
    return {
        "number": case.number,
        "title": case.title,
        "parties": json_list(case.parties),
        "cause_of_action": case.cause_of_action,
        "enforcement_type": case.enforcement_type,
        "full_recording_required": rules.requires_full_recording(case.enforcement_type),
        "unit": unit.code if unit else None,
        "handling_officers": json_list(case.handling_officers),
        "action_start": _t(case.action_start),
        "action_end": _t(case.action_end),
        "case_file_due": _t(due),
        "state": case.state,
        "created_at": _t(case.created_at),
        "closed_at": _t(case.closed_at),
        "clips": len(linked_clip_ids(session, case.id)),
    }


def _case_or_refuse(
    station: Station, caller: Caller, action: Action, ref: str, reason: str = ""
) -> Case:
    return read_or_refuse(
        station,
        caller,
        action.value,
        lambda session: get_case(session, ref),
        subject_kind=Subject.CASE,
        subject_id=ref[:64],
        reason=reason,
    )


def _need_reason(station: Station, caller: Caller, what: str, ref: str, reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        _refuse_on_case(
            station,
            caller,
            what,
            InputError(f"{what.replace('_', ' ')} needs a reason", remedy="give --reason TEXT"),
            ref[:64],
        )
    return text


def _case_to_change(
    station: Station, caller: Caller, what: str, ref: str, reason: str | None
) -> tuple[Case, str]:
    """The case a change names and the change's reason, once the caller's role allows it."""
    require(
        station,
        caller,
        Action.CASE_WRITE,
        subject_kind=Subject.CASE,
        subject_id=ref[:64],
        reason=reason or "",
    )
    text = _need_reason(station, caller, what, ref, reason)
    return _case_or_refuse(station, caller, Action.CASE_WRITE, ref, text), text


def _refuse_on_case(
    station: Station,
    caller: Caller,
    what: str,
    error: EvidenceError,
    case_number: str,
    reason: str = "",
) -> NoReturn:
    refuse(
        station,
        caller,
        what,
        error,
        subject_kind=Subject.CASE,
        subject_id=case_number,
        reason=reason,
    )


# ---------------------------------------------------------------- create, list, close


def create_case(
    station: Station, caller: Caller, data: CaseInput, reason: str | None
) -> dict[str, Any]:
    """Open a case; the enforcement type must be one the station configuration knows."""
    require(
        station,
        caller,
        Action.CASE_WRITE,
        subject_kind=Subject.CASE,
        subject_id=data.number[:64],
        reason=reason or "",
    )
    text = (reason or "").strip() or "case opened"
    number = data.number.strip()
    problems = _case_input_problems(data, number, station.settings.review.enforcement_types)
    if problems:
        _refuse_on_case(
            station,
            caller,
            Action.CASE_WRITE.value,
            InputError("cannot create the case: " + "; ".join(problems)),
            number[:64] or "-",
            text,
        )
    officers = [o.strip() for o in data.officers if o.strip()]
    now = station.clock.now()
    with station.transaction() as session:
        if session.exec(select(Case).where(Case.number == number)).first() is not None:
            raise InputError(
                f"case {number} exists already", remedy="`evidence-agent case show` it"
            )
        case = Case(
            number=number,
            title=data.title,
            parties=json.dumps(list(data.parties), ensure_ascii=False),
            cause_of_action=data.cause_of_action,
            enforcement_type=data.enforcement_type,
            unit_id=_unit_id(session, data.unit) if data.unit else None,
            handling_officers=json.dumps(officers, ensure_ascii=False),
            action_start=data.action_start,
            action_end=data.action_end,
            created_at=now,
            state="open",
        )
        session.add(case)
        session.flush()
        document = case_json(session, case, station.settings.review)
        station.record(
            session,
            EventType.CASE_CREATED.event(
                number,
                actor=caller.actor,
                reason=text,
                data=document,
            ),
        )
    return document


def _case_input_problems(
    data: CaseInput, number: str, enforcement_types: Sequence[str]
) -> list[str]:
    """What is wrong with a new case as typed, each in words for the person who typed it."""
    problems = []
    if not number or len(number) > 64:
        problems.append("the case number must be 1 to 64 characters")
    if data.enforcement_type not in enforcement_types:
        problems.append(
            f"enforcement type {data.enforcement_type!r} is not known; one of "
            + ", ".join(enforcement_types)
        )
    if data.action_start and data.action_end and data.action_end < data.action_start:
        problems.append("the action ends before it starts")
    for what, value in (
        ("title", data.title),
        ("cause of action", data.cause_of_action),
        *(("party", party) for party in data.parties),
        *(("officer", badge) for badge in data.officers),
    ):
        if not is_plain_text(value):
            problems.append(f"the {what} holds control characters: {shown(value)}")
    return problems


def _unit_id(session: Session, code: str) -> int | None:
    """The catalog id of the unit with this code, entered (without a name) when it is new."""
    unit = session.exec(select(Unit).where(Unit.code == code)).first()
    if unit is None:
        unit = Unit(code=code, name="")
        session.add(unit)
        session.flush()
    return unit.id


def list_cases(station: Station, caller: Caller, state: str | None = None) -> list[dict[str, Any]]:
    require(station, caller, Action.CASE_READ)
    with station.reading() as session:
        query = select(Case).order_by(col(Case.created_at).desc(), col(Case.number))
        if state is not None:
            query = query.where(Case.state == state)
        return [case_json(session, c, station.settings.review) for c in session.exec(query)]


def close_case(
    station: Station,
    caller: Caller,
    ref: str,
    reason: str | None,
    *,
    override_incomplete: bool = False,
) -> dict[str, Any]:
    """Close a case. One that needs full recording and whose footage does not cover its action
    window (what `case check` reports) stays open unless the closer overrides, with a reason;
    the override and the gaps it closed over go into the custody log."""
    case, text = _case_to_change(station, caller, "case_close", ref, reason)
    case_as_logged_or_refuse(station, caller, "case_close", case, text)
    incomplete = incomplete_override(station, case)
    if incomplete is not None and not override_incomplete:
        _refuse_on_case(
            station,
            caller,
            "case_close",
            incomplete_error(case, incomplete, "closed"),
            case.number,
            text,
        )
    override = {"incomplete_override": incomplete} if incomplete is not None else {}
    now = station.clock.now()
    with station.transaction() as session:
        row = session.get(Case, case.id)
        assert row is not None
        if row.state == "closed":
            raise InputError(f"case {row.number} is closed already")
        row.state = "closed"
        row.closed_at = now
        session.add(row)
        document = case_json(session, row, station.settings.review)
        station.record(
            session,
            EventType.CASE_CLOSED.event(
                row.number,
                actor=caller.actor,
                reason=text,
                data={"closed_at": _t(now), "clips": document["clips"], **override},
            ),
        )
    return document


# ---------------------------------------------------------------- links


def link_clips(
    station: Station,
    caller: Caller,
    ref: str,
    clip_refs: Sequence[str],
    reason: str | None,
) -> dict[str, Any]:
    """Link clips to a case (who, when, why); linked footage is evidence, kept permanently."""
    return _change_links(station, caller, ref, clip_refs, reason, link=True)


def unlink_clips(
    station: Station,
    caller: Caller,
    ref: str,
    clip_refs: Sequence[str],
    reason: str | None,
) -> dict[str, Any]:
    return _change_links(station, caller, ref, clip_refs, reason, link=False)


def _change_links(
    station: Station,
    caller: Caller,
    ref: str,
    clip_refs: Sequence[str],
    reason: str | None,
    *,
    link: bool,
) -> dict[str, Any]:
    what = "case_link" if link else "case_unlink"
    case, text = _case_to_change(station, caller, what, ref, reason)
    if not clip_refs:
        _refuse_on_case(
            station, caller, what, InputError("name at least one clip"), case.number, text
        )
    clips = read_or_refuse(
        station,
        caller,
        what,
        lambda session: {c.id: c for c in (get_clip(session, r) for r in clip_refs)},
        subject_kind=Subject.CASE,
        subject_id=case.number,
        reason=text,
    )
    if problem := _link_problem(case, clips.values(), link=link):
        _refuse_on_case(station, caller, what, InputError(problem), case.number, text)
    now = station.clock.now()
    changed, unchanged, retention = [], [], []
    with station.transaction() as session:
        for clip in clips.values():
            row = session.get(Clip, clip.id)
            assert row is not None
            if not _set_link(station, session, caller, case, row, text, now, link=link):
                unchanged.append(row.id)
                continue
            changed.append(row.id)
            change = apply_retention(
                station,
                session,
                row,
                actor=caller.actor,
                reason=text,
                cause=f"{'linked to' if link else 'unlinked from'} case {case.number}",
            )
            if change:
                retention.append(change)
    return {
        "case": case.number,
        "linked" if link else "unlinked": changed,
        "unchanged": unchanged,
        "retention_changes": retention,
    }


def _link_problem(case: Case, clips: Iterable[Clip], *, link: bool) -> str | None:
    """Why these clips cannot be linked to, or unlinked from, the case; None when they can."""
    if case.state == "closed":
        return f"case {case.number} is closed: its file does not change"
    if link and (deleted := [c.id for c in clips if c.state == ClipState.DELETED]):
        return "deleted clips cannot be linked: " + ", ".join(deleted)
    return None


def _set_link(
    station: Station,
    session: Session,
    caller: Caller,
    case: Case,
    clip: Clip,
    reason: str,
    now: datetime,
    *,
    link: bool,
) -> bool:
    """Link the clip to the case, or unlink it, with the change in the custody log; False when
    it is so already."""
    assert case.id is not None
    existing = session.get(CaseClip, (case.id, clip.id))
    if (existing is not None) == link:
        return False
    if link:
        session.add(
            CaseClip(
                case_id=case.id, clip_id=clip.id, linked_at=now, actor=caller.actor, reason=reason
            )
        )
    else:
        session.delete(existing)
    station.record(
        session,
        (EventType.CASE_CLIP_LINKED if link else EventType.CASE_CLIP_UNLINKED).event(
            clip.id,
            actor=caller.actor,
            reason=reason,
            sha256=clip.sha256,
            data={"case": case.number},
        ),
    )
    return True


def suggest(
    station: Station,
    caller: Caller,
    ref: str,
    margin: timedelta | None = None,
) -> list[dict[str, Any]]:
    """Clips of the handling officers around the action window that are not linked yet."""
    require(station, caller, Action.CASE_READ, subject_kind=Subject.CASE, subject_id=ref[:64])
    case = _case_or_refuse(station, caller, Action.CASE_READ, ref)
    margin = station.settings.review.suggest_margin if margin is None else margin
    officers = json_list(case.handling_officers)
    if case.action_start is None or not officers:
        _refuse_on_case(
            station,
            caller,
            Action.CASE_READ.value,
            InputError(
                f"case {case.number} needs an action start and handling officers for suggestions"
            ),
            case.number,
        )
    start = case.action_start - margin
    end = (case.action_end or case.action_start) + margin
    with station.reading() as session:
        assert case.id is not None
        linked = set(linked_clip_ids(session, case.id))
        views: list[ClipView] = []
        for badge in officers:
            views.extend(clip_views(session, officer=badge, since=start, until=end))
    rows = [
        v.to_json()
        for v in sorted(
            views, key=lambda v: (v.clip.recorded_start is None, v.clip.recorded_start, v.clip.id)
        )
        if v.clip.id not in linked and v.clip.state != ClipState.DELETED
    ]
    record_view(
        station,
        caller,
        EventType.CASE_VIEWED,
        subject_kind=Subject.CASE,
        subject_id=case.number,
        data={"command": "suggest", "clips": [r["id"] for r in rows]},
    )
    return rows


# ---------------------------------------------------------------- show and timeline


def show_case(station: Station, caller: Caller, ref: str) -> dict[str, Any]:
    """The case, its footage and documents, and a timeline of both."""
    require(station, caller, Action.CASE_READ, subject_kind=Subject.CASE, subject_id=ref[:64])
    case = _case_or_refuse(station, caller, Action.CASE_READ, ref)
    now = station.clock.now()
    with station.reading() as session:
        assert case.id is not None
        document = case_json(session, case, station.settings.review)
        links = {
            link.clip_id: link
            for link in session.exec(select(CaseClip).where(CaseClip.case_id == case.id))
        }
        views = clip_views(session, clip_ids=list(links)) if links else []
        docs = list(
            session.exec(
                select(CaseDocument)
                .where(CaseDocument.case_id == case.id)
                .order_by(col(CaseDocument.id))
            )
        )
    clips = []
    for view in sorted(
        views, key=lambda v: (v.clip.recorded_start is None, v.clip.recorded_start, v.clip.id)
    ):
        row = view.to_json()
        link = links[view.clip.id]
        row["linked_at"] = _t(link.linked_at)
        row["linked_by"] = link.actor
        row["link_reason"] = link.reason
        clips.append(row)
    documents = [
        {
            "id": d.id,
            "name": d.name,
            "sha256": d.sha256,
            "size": d.size,
            "document_time": _t(d.document_time),
            "added_at": _t(d.added_at),
            "added_by": d.actor,
            "reason": d.reason,
        }
        for d in docs
    ]
    clock = case_file_clock(case.action_end, now, station.settings.review.case_file_days)
    document["case_file_days_left"] = (
        clock.days_left if clock is not None and case.state != "closed" else None
    )
    document["footage"] = clips
    document["documents"] = documents
    document["timeline"] = timeline(case, clips, documents, clock.due if clock else None)
    record_view(
        station,
        caller,
        EventType.CASE_VIEWED,
        subject_kind=Subject.CASE,
        subject_id=case.number,
        data={"command": "show", "clips": [c["id"] for c in clips]},
    )
    return document


def timeline(
    case: Case,
    clips: Sequence[dict[str, Any]],
    documents: Sequence[dict[str, Any]],
    case_file_due: datetime | None,
) -> list[dict[str, Any]]:
    """Everything in the case file in time order: the action, footage, documents, deadlines."""
    events: list[dict[str, Any]] = []

    def add(
        time: str | None, kind: str, text: str, ref: str | None = None, end: str | None = None
    ) -> None:
        if time is not None:
            events.append({"time": time, "end": end, "kind": kind, "ref": ref, "text": text})

    add(_t(case.created_at), "case_created", f"case {case.number} opened")
    add(_t(case.action_start), "action_start", f"{case.enforcement_type or 'action'} starts")
    add(_t(case.action_end), "action_end", f"{case.enforcement_type or 'action'} ends")
    for clip in clips:
        who = clip.get("officer") or "?"
        add(
            clip.get("recorded_start"),
            clip.get("media_kind") or "clip",
            f"{clip.get('media_kind') or 'clip'} by officer {who} on recorder {clip.get('recorder') or '?'}",
            clip["id"],
            clip.get("recorded_end"),
        )
    for doc in documents:
        add(
            doc["document_time"] or doc["added_at"],
            "document",
            f"document {doc['name']}",
            str(doc["id"]),
        )
    add(_t(case_file_due), "case_file_due", "case file due")
    add(_t(case.closed_at), "case_closed", "case closed")
    return sorted(events, key=lambda e: (e["time"], e["kind"]))


# ---------------------------------------------------------------- documents


def attach_document(
    station: Station,
    caller: Caller,
    ref: str,
    path: Path,
    reason: str | None,
    document_time: datetime | None = None,
    source: BinaryIO | None = None,
) -> dict[str, Any]:
    """Keep a case document in the object store by its hash and list it in the case file.

    `source`: the document already opened by the caller's own process (local API), `path`
    then only names it; else `path` is opened here."""
    case, text = _case_to_change(station, caller, "case_attach", ref, reason)
    if source is None and not path.is_file():
        _refuse_on_case(
            station, caller, "case_attach", InputError(f"{path} is not a file"), case.number, text
        )
    digest, size = _keep_document(station, path, source)
    now = station.clock.now()
    with station.transaction() as session:
        row = CaseDocument(
            case_id=case.id or 0,
            name=path.name,
            sha256=digest,
            size=size,
            document_time=document_time,
            added_at=now,
            actor=caller.actor,
            reason=text,
        )
        session.add(row)
        session.flush()
        station.record(
            session,
            EventType.CASE_DOCUMENT_ADDED.event(
                case.number,
                actor=caller.actor,
                reason=text,
                sha256=digest,
                data={
                    "document": row.id,
                    "name": row.name,
                    "size": size,
                    "store": station.store.describe(),
                },
            ),
        )
        return {
            "case": case.number,
            "document": row.id,
            "name": row.name,
            "sha256": digest,
            "size": size,
        }


def _keep_document(station: Station, path: Path, source: BinaryIO | None) -> tuple[str, int]:
    """Put the file in the object store under its SHA-256 and verify it there; its hash and size.

    A private copy, hashed on the way, is what the store takes: the caller's file may change.
    Not in the spool's incoming area: opening a station empties that."""
    tmp = station.settings.data_dir / f".document-{uuid.uuid4().hex}.part"
    sha = hashlib.sha256()
    size = 0
    try:
        with source or path.open("rb") as src, tmp.open("xb") as dst:
            while chunk := src.read(1 << 20):
                sha.update(chunk)
                dst.write(chunk)
                size += len(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        digest = sha.hexdigest()
        station.store.put(digest, tmp, size, None)
        station.store.verify(digest)
    except OSError as e:
        raise StorageError(f"cannot read or keep {path}: {e.strerror}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return digest, size


# ---------------------------------------------------------------- check


def check_case(
    station: Station, caller: Caller, ref: str
) -> tuple[dict[str, Any], CoverageReport | None]:
    """The coverage of the case's action window by its footage, for a legal reviewer."""
    require(station, caller, Action.CASE_READ, subject_kind=Subject.CASE, subject_id=ref[:64])
    case = _case_or_refuse(station, caller, Action.CASE_READ, ref)
    case_as_logged_or_refuse(station, caller, Action.CASE_READ.value, case)
    result, report = case_coverage(station, case)
    record_view(
        station,
        caller,
        EventType.CASE_VIEWED,
        subject_kind=Subject.CASE,
        subject_id=case.number,
        data={"command": "check", "complete": result["complete"]},
    )
    return result, report
