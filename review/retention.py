"""Retention service: classes kept in step with case links, legal hold, and approved deletion."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from sqlmodel import Session, col, func, select

from evidence_agent.catalog.models import CaseClip, Clip, CustodyEntry, RetentionRequest
from evidence_agent.catalog.queries import clip_views
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.retention import (
    SETTABLE_GROUNDS,
    ClipFacts,
    Ground,
    RetentionClass,
    approval_blocker,
    deletion_blockers,
    parse_grounds,
    retention_for,
)
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.domain.states import ClipState
from evidence_agent.errors import (
    EvidenceError,
    InputError,
    IntegrityError,
    PermissionDeniedError,
    StorageError,
)
from evidence_agent.ports import LegalHolding, LockExtending, ObjectDeleting, ObjectStore
from evidence_agent.services.audit.logged_rows import check_clip_keeping, clip_as_logged_or_refuse
from evidence_agent.services.guard import read_or_refuse, record_view, refuse, require
from evidence_agent.services.station import Station
from review.lookup import get_case, get_clip, json_list, linked_clip_ids
from review.settings import ReviewSettings

log = logging.getLogger(__name__)

# The store's side of a clip that is not in the store (still spooled, or deleted): nothing to do.
NOT_IN_STORE = "not in the store: nothing to lock"
UNCHANGED = "unchanged: locks are only extended"


def clip_facts(session: Session, clip: Clip) -> ClipFacts:
    linked = session.exec(
        select(func.count()).select_from(CaseClip).where(CaseClip.clip_id == clip.id)
    ).one()
    return ClipFacts(
        recorded_end=clip.recorded_end,
        ingested_at=clip.ingested_at,
        important=clip.important,
        linked_cases=int(linked),
        grounds=parse_grounds(json_list(clip.retention_grounds)),
        legal_hold=clip.legal_hold,
        state=clip.state,
        kept_class=clip.retention_class,
        kept_until=clip.retention_until,
    )


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def apply_retention(
    station: Station,
    session: Session,
    clip: Clip,
    *,
    actor: str,
    reason: str,
    cause: str,
) -> dict[str, Any] | None:
    """Bring a clip's class and keep-until time in step with the station's retention policy, in
    the caller's transaction; a longer retention extends the store's lock first, to the very
    date the catalog gets (a store that cannot is an error, and the caller's transaction rolls
    back). Returns the change."""
    session.flush()  # the link or ground that caused this must be counted
    new = retention_for(clip_facts(session, clip), station.settings.retention)
    if clip.retention_class == new.cls.value and clip.retention_until == new.until:
        return None
    longer = new.cls is RetentionClass.PERMANENT or (
        clip.retention_class != RetentionClass.PERMANENT.value
        and new.until is not None
        and (clip.retention_until is None or new.until > clip.retention_until)
    )
    if not longer:
        lock = UNCHANGED
    elif clip.state != ClipState.STORED:
        lock = NOT_IN_STORE
    else:
        lock = _extend_in_store(station.store, clip.sha256, new.until)
    change = {
        "from": {"class": clip.retention_class, "until": _t(clip.retention_until)},
        "to": {"class": new.cls.value, "until": _t(new.until)},
        "grounds": [ground.value for ground in new.grounds],
        "cause": cause,
        "store_lock": lock,
    }
    clip.retention_class = new.cls.value
    clip.retention_until = new.until
    session.add(clip)
    station.record(
        session,
        EventType.CLIP_RETENTION_CHANGED.event(
            clip.id,
            actor=actor,
            reason=reason,
            sha256=clip.sha256,
            data=change,
        ),
    )
    return {"clip": clip.id, **change}


# ---------------------------------------------------------------- due


def due(station: Station, caller: Caller) -> list[dict[str, Any]]:
    """Clips past retention that may be deleted with approval, oldest first, with requests."""
    require(station, caller, Action.RETENTION_READ)
    now = station.clock.now()
    with station.reading() as session:
        candidates = session.exec(
            select(Clip)
            .where(Clip.state == ClipState.STORED)
            .where(col(Clip.legal_hold).is_(False))
            .where(Clip.retention_class != RetentionClass.PERMANENT.value)
            .where(col(Clip.retention_until) <= now)
            .order_by(col(Clip.retention_until), col(Clip.id))
        ).all()
        due_ids = [
            c.id
            for c in candidates
            if not deletion_blockers(clip_facts(session, c), station.settings.retention, now)
        ]
        views = {v.clip.id: v for v in clip_views(session, clip_ids=due_ids)} if due_ids else {}
        requests: dict[str, list[RetentionRequest]] = {}
        if due_ids:
            for r in session.exec(
                select(RetentionRequest)
                .where(col(RetentionRequest.clip_id).in_(due_ids))
                .where(RetentionRequest.state == "pending")
            ):
                requests.setdefault(r.clip_id, []).append(r)
    rows = []
    for clip_id in due_ids:
        row = views[clip_id].to_json()
        row["deletion_requests"] = [_request_json(r) for r in requests.get(clip_id, [])]
        rows.append(row)
    record_view(
        station,
        caller,
        EventType.RETENTION_DUE_LISTED,
        subject_kind=Subject.STATION,
        subject_id=station.settings.station_id,
        data={"clips": due_ids, "as_of": format_time(now)},
    )
    return rows


def _request_json(r: RetentionRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "requested_by": r.requested_by,
        "requested_at": _t(r.requested_at),
        "reason": r.reason,
        "state": r.state,
        "decided_by": r.decided_by,
        "decided_at": _t(r.decided_at),
        "decision_reason": r.decision_reason,
    }


# ---------------------------------------------------------------- deletion


def _need_reason(
    station: Station, caller: Caller, action: Action, reason: str | None, clip_ref: str
) -> str:
    text = (reason or "").strip()
    if not text:
        refuse(
            station,
            caller,
            action.value,
            InputError(
                f"{action.value.replace('_', ' ')} needs a reason", remedy="give --reason TEXT"
            ),
            subject_kind=Subject.CLIP,
            subject_id=clip_ref[:64],
        )
    return text


def _clip_or_refuse(
    station: Station, caller: Caller, action: Action, ref: str, reason: str
) -> Clip:
    return read_or_refuse(
        station,
        caller,
        action.value,
        lambda session: get_clip(session, ref),
        subject_kind=Subject.CLIP,
        subject_id=ref[:64],
        reason=reason,
    )


def request_deletion(
    station: Station, caller: Caller, clip_ref: str, reason: str | None
) -> dict[str, Any]:
    """Ask for a clip past retention to be deleted; a supervisor approves (or not) later."""
    require(
        station,
        caller,
        Action.RETENTION_REQUEST,
        subject_kind=Subject.CLIP,
        subject_id=clip_ref[:64],
        reason=reason or "",
    )
    text = _need_reason(station, caller, Action.RETENTION_REQUEST, reason, clip_ref)
    clip = _clip_or_refuse(station, caller, Action.RETENTION_REQUEST, clip_ref, text)
    clip_as_logged_or_refuse(station, caller, Action.RETENTION_REQUEST.value, clip.id, text)
    now = station.clock.now()
    with station.reading() as session:
        blockers = deletion_blockers(clip_facts(session, clip), station.settings.retention, now)
    if blockers:
        refuse(
            station,
            caller,
            Action.RETENTION_REQUEST.value,
            InputError(f"clip {clip.id} may not be deleted: " + "; ".join(blockers)),
            subject_kind=Subject.CLIP,
            subject_id=clip.id,
            sha256=clip.sha256,
            reason=text,
        )
    with station.transaction() as session:
        pending = _pending_request(session, clip.id)
        if pending is not None and pending.requested_by == caller.actor:
            return {"clip": clip.id, "request": _request_json(pending), "new": False}
        request = RetentionRequest(
            clip_id=clip.id, requested_by=caller.actor, requested_at=now, reason=text
        )
        session.add(request)
        session.flush()
        station.record(
            session,
            EventType.RETENTION_DELETION_REQUESTED.event(
                clip.id,
                actor=caller.actor,
                reason=text,
                sha256=clip.sha256,
                data={
                    "request": request.id,
                    "retention_class": clip.retention_class,
                    "retention_until": _t(clip.retention_until),
                },
            ),
        )
        return {"clip": clip.id, "request": _request_json(request), "new": True}


def _pending_request(session: Session, clip_id: str) -> RetentionRequest | None:
    return session.exec(
        select(RetentionRequest)
        .where(RetentionRequest.clip_id == clip_id)
        .where(RetentionRequest.state == "pending")
        .order_by(col(RetentionRequest.requested_at))
    ).first()


@dataclass
class DeletionResult:
    clip: str
    sha256: str
    request: dict[str, Any]
    store: str  # "removed": the store holds no copy any more
    # Kept in the JSON for scripts. Empty: a store that does not remove the object is an error
    # (and the clip stays in the catalog), not a warning.
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "clip": self.clip,
            "sha256": self.sha256,
            "request": self.request,
            "store": self.store,
            "warnings": self.warnings,
        }


def approve_deletion(
    station: Station, caller: Caller, review: ReviewSettings, clip_ref: str, reason: str | None
) -> DeletionResult:
    """A supervisor's approved deletion of a clip past retention: tombstone and store removal.

    Under the two-person rule the request must come from someone else. Both happen in one
    transaction whose last step is the store's removal: when the store refuses (its lock has not
    expired, a legal hold) or cannot be reached, nothing changes in the catalog, the refusal is
    logged, and the store's error is raised. Once done, the catalog row stays (state "deleted")
    with its hash, and the custody log keeps the tombstone for good."""
    action = Action.RETENTION_APPROVE
    require(
        station,
        caller,
        action,
        subject_kind=Subject.CLIP,
        subject_id=clip_ref[:64],
        reason=reason or "",
    )
    text = _need_reason(station, caller, action, reason, clip_ref)
    clip = _clip_or_refuse(station, caller, action, clip_ref, text)
    clip_as_logged_or_refuse(station, caller, action.value, clip.id, text)
    if clip.state == ClipState.DELETED:
        # Tombstoned earlier: by a version of the agent that logged the tombstone first and
        # left the object when the store refused. Only the store's side may be left to do.
        try:
            return _finish_removal(station, caller, clip, text)
        except StorageError as e:
            _store_refused(station, caller, clip, text, e)
    now = station.clock.now()
    with station.reading() as session:
        blockers = deletion_blockers(clip_facts(session, clip), station.settings.retention, now)
        pending = _pending_request(session, clip.id)
    if blockers:
        refuse(
            station,
            caller,
            action.value,
            InputError(f"clip {clip.id} may not be deleted: " + "; ".join(blockers)),
            subject_kind=Subject.CLIP,
            subject_id=clip.id,
            sha256=clip.sha256,
            reason=text,
        )
    blocker = approval_blocker(
        review.deletion_approval, pending.requested_by if pending else None, caller.actor
    )
    if blocker is not None:
        refuse(
            station,
            caller,
            action.value,
            PermissionDeniedError(f"refused: {blocker}"),
            subject_kind=Subject.CLIP,
            subject_id=clip.id,
            sha256=clip.sha256,
            reason=text,
            data={"deletion_approval": review.deletion_approval.value},
        )
    try:
        return _delete(station, caller, review, clip, text, now)
    except (_Blocked, IntegrityError) as e:
        refuse(
            station,
            caller,
            action.value,
            e if isinstance(e, IntegrityError) else InputError(e.message),
            subject_kind=Subject.CLIP,
            subject_id=clip.id,
            sha256=clip.sha256,
            reason=text,
        )
    except StorageError as e:
        _store_refused(station, caller, clip, text, e)


class _Blocked(EvidenceError):
    pass


def _store_refused(
    station: Station, caller: Caller, clip: Clip, reason: str, error: StorageError
) -> NoReturn:
    """The store did not remove the object: the catalog is unchanged; log the refusal, raise."""
    refuse(
        station,
        caller,
        Action.RETENTION_APPROVE.value,
        error,
        subject_kind=Subject.CLIP,
        subject_id=clip.id,
        sha256=clip.sha256,
        reason=reason,
        data={"store": station.store.describe()},
    )


def _delete(
    station: Station, caller: Caller, review: ReviewSettings, clip: Clip, text: str, now: datetime
) -> DeletionResult:
    with station.transaction() as session:
        row = session.get(Clip, clip.id)
        assert row is not None
        # Checked again inside the transaction: a link or hold may have arrived meanwhile.
        late_blockers = deletion_blockers(clip_facts(session, row), station.settings.retention, now)
        if late_blockers:
            raise _Blocked(f"clip {clip.id} may not be deleted: " + "; ".join(late_blockers))
        check_clip_keeping(session, row.id)
        request = _pending_request(session, clip.id)
        if request is None:
            request = RetentionRequest(
                clip_id=clip.id, requested_by=caller.actor, requested_at=now, reason=text
            )
        request.state = "approved"
        request.decided_by = caller.actor
        request.decided_at = now
        request.decision_reason = text
        session.add(request)
        session.flush()
        row.state = ClipState.DELETED
        session.add(row)
        views = clip_views(session, clip_ids=[row.id])
        view = views[0].to_json() if views else {}
        station.record(
            session,
            EventType.CLIP_DELETED.event(
                row.id,
                actor=caller.actor,
                reason=text,
                sha256=row.sha256,
                data={
                    "request": _request_json(request),
                    "deletion_approval": review.deletion_approval.value,
                    "retention_class": row.retention_class,
                    "retention_until": _t(row.retention_until),
                    "size": row.size,
                    "recorded_start": view.get("recorded_start"),
                    "recorded_end": view.get("recorded_end"),
                    "officer": view.get("officer"),
                    "recorder": view.get("recorder"),
                    "unit": view.get("unit"),
                    "source_path": row.source_path,
                    "store": station.store.describe(),
                },
            ),
        )
        # Recorded before the removal it describes, in the same transaction: it commits only
        # if the removal succeeded, and the removal is the transaction's last step, so a failed
        # commit is the only way to lose the object without its tombstone (then `verify` names
        # the missing object and the same `retention delete` records the deletion).
        _record_removed(station, session, caller, row, text)
        _remove_stored_object(station.store, row.sha256)
        return DeletionResult(row.id, row.sha256, _request_json(request), "removed")


def _finish_removal(station: Station, caller: Caller, clip: Clip, reason: str) -> DeletionResult:
    """Remove the object of a clip already tombstoned; `clip.object_removed` once, on success."""
    with station.transaction() as session:
        recorded = session.exec(
            select(func.count())
            .select_from(CustodyEntry)
            .where(CustodyEntry.event_type == EventType.CLIP_OBJECT_REMOVED)
            .where(CustodyEntry.subject_id == clip.id)
        ).one()
        if not recorded:
            _record_removed(station, session, caller, clip, reason)
        _remove_stored_object(station.store, clip.sha256)
    return DeletionResult(clip.id, clip.sha256, {}, "removed")


def _record_removed(
    station: Station, session: Session, caller: Caller, clip: Clip, reason: str
) -> None:
    station.record(
        session,
        EventType.CLIP_OBJECT_REMOVED.event(
            clip.id,
            actor=caller.actor,
            reason=reason,
            sha256=clip.sha256,
            data={"store": station.store.describe(), "outcome": "removed"},
        ),
    )


def _remove_stored_object(store: ObjectStore, sha256: str) -> None:
    """Have the store remove the object for good, or raise: a refusal is never a warning."""
    if not isinstance(store, ObjectDeleting):
        raise StorageError(
            f"{store.describe()} offers no deletion: the clip stays in the catalog",
            remedy="use a store backend that deletes objects (local or s3)",
        )
    store.delete_object(sha256)
    if store.exists(sha256):
        raise StorageError(
            f"{store.describe()} still shows the object {sha256} after removing it; "
            "the clip stays in the catalog",
            remedy="check the store, then run the same `retention delete` again",
        )


# ---------------------------------------------------------------- hold and grounds


def _extend_in_store(store: ObjectStore, sha256: str, until: datetime | None) -> str:
    """Bring the store's lock in step with a longer retention (`until` None: for good); says
    what was done, for the log. A store without locks (the local one) leaves the guard to the
    catalog's retention."""
    if not isinstance(store, LockExtending):
        return f"{store.describe()}: no lock; the catalog's retention is the guard"
    store.extend_retention(sha256, until)
    return "extended" if until is not None else "kept indefinitely"


def _hold_in_store(station: Station, clip: Clip, *, on: bool) -> str:
    """Put the store's legal hold in step with the catalog's (before the catalog changes, in the
    caller's transaction: a store that fails rolls it back); says what was done, for the log."""
    store = station.store
    if clip.state != ClipState.STORED:
        return NOT_IN_STORE
    if not isinstance(store, LegalHolding):
        return f"{store.describe()} has no legal hold: the catalog's hold is the guard"
    store.set_legal_hold(clip.sha256, on)
    return "legal hold set" if on else "legal hold lifted"


def _clips_for(
    station: Station, caller: Caller, action: Action, refs: list[str], case: str | None, reason: str
) -> list[Clip]:
    def read(session: Session) -> list[Clip]:
        ids = list(refs)
        if case:
            found = get_case(session, case)
            assert found.id is not None
            ids.extend(linked_clip_ids(session, found.id))
        if not ids:
            raise InputError("name the clips, or a case with --case")
        return list({c.id: c for c in (get_clip(session, ref) for ref in ids)}.values())

    return read_or_refuse(
        station,
        caller,
        action.value,
        read,
        subject_kind=Subject.CASE if case else Subject.STATION,
        subject_id=case[:64] if case else None,
        reason=reason,
    )


def set_hold(
    station: Station,
    caller: Caller,
    refs: list[str],
    case: str | None,
    reason: str | None,
    *,
    release: bool = False,
) -> list[dict[str, Any]]:
    """Put clips (or a case's clips) under legal hold, or release them: no deletion while held."""
    action = Action.RETENTION_HOLD
    require(station, caller, action, reason=reason or "")
    text = _need_reason(station, caller, action, reason, case or (refs[0] if refs else ""))
    clips = _clips_for(station, caller, action, refs, case, text)
    changed = []
    with station.transaction() as session:
        for clip in clips:
            row = session.get(Clip, clip.id)
            assert row is not None
            if row.state == ClipState.DELETED or row.legal_hold == (not release):
                continue
            lock = _hold_in_store(station, row, on=not release)
            row.legal_hold = not release
            session.add(row)
            station.record(
                session,
                (
                    EventType.CLIP_LEGAL_HOLD_RELEASED if release else EventType.CLIP_LEGAL_HOLD_SET
                ).event(
                    row.id,
                    actor=caller.actor,
                    reason=text,
                    sha256=row.sha256,
                    data={"case": case, "store_lock": lock},
                ),
            )
            changed.append({"clip": row.id, "legal_hold": row.legal_hold, "store_lock": lock})
    return changed


def mark_ground(
    station: Station,
    caller: Caller,
    clip_ref: str,
    ground: str,
    reason: str | None,
) -> dict[str, Any]:
    """Record a ground for permanent keeping (obstruction, major emergency, ...) on a clip."""
    action = Action.RETENTION_HOLD
    require(
        station,
        caller,
        action,
        subject_kind=Subject.CLIP,
        subject_id=clip_ref[:64],
        reason=reason or "",
    )
    text = _need_reason(station, caller, action, reason, clip_ref)
    settable = {g.value: g for g in SETTABLE_GROUNDS}
    if ground not in settable:
        refuse(
            station,
            caller,
            action.value,
            InputError(
                f"{ground!r} is not a ground for permanent keeping",
                remedy="one of "
                + ", ".join(settable)
                + f" ({Ground.CASE_EVIDENCE.value} follows from case links)",
            ),
            subject_kind=Subject.CLIP,
            subject_id=clip_ref[:64],
            reason=text,
        )
    clip = _clip_or_refuse(station, caller, action, clip_ref, text)
    with station.transaction() as session:
        row = session.get(Clip, clip.id)
        assert row is not None
        if row.state == ClipState.DELETED:
            raise InputError(f"clip {row.id} is deleted")
        grounds = set(json_list(row.retention_grounds))
        added = ground not in grounds
        grounds.add(ground)
        row.retention_grounds = json.dumps(sorted(grounds))
        session.add(row)
        if added:
            station.record(
                session,
                EventType.CLIP_RETENTION_GROUND_SET.event(
                    row.id,
                    actor=caller.actor,
                    reason=text,
                    sha256=row.sha256,
                    data={"ground": ground},
                ),
            )
        change = apply_retention(
            station,
            session,
            row,
            actor=caller.actor,
            reason=text,
            cause=f"ground {ground}",
        )
        return {
            "clip": row.id,
            "grounds": sorted(grounds),
            "retention_class": row.retention_class,
            "retention_until": _t(row.retention_until),
            "change": change,
        }
