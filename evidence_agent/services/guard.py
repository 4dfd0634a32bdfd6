"""Role checks at the edge of each review service: allowed, or a refusal in the custody log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from sqlmodel import Session

from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.roles import Action, Caller, decide
from evidence_agent.domain.text import check_plain_text
from evidence_agent.errors import EvidenceError, PermissionDeniedError
from evidence_agent.services.station import Station

T = TypeVar("T")


def require(
    station: Station,
    caller: Caller,
    action: Action,
    *,
    subject_kind: Subject = Subject.STATION,
    subject_id: str | None = None,
    reason: str = "",
) -> None:
    """Go on when one of the caller's roles allows `action`; else record the refusal and raise.

    What the caller typed (the reason, the case or clip named) is refused first when it holds
    control characters: printed later in a table or the access log, a newline forges a row."""
    _typed_plainly(reason, subject_kind, subject_id)
    decision = decide(caller.roles, action)
    if not decision.allowed:
        refuse(
            station,
            caller,
            action.value,
            role_missing(decision.why),
            subject_kind=subject_kind,
            subject_id=subject_id,
            reason=reason,
        )


def _typed_plainly(reason: str, subject_kind: str, subject_id: str | None) -> None:
    check_plain_text(reason, "reason")
    if subject_id is not None:
        check_plain_text(subject_id, subject_kind)


def role_names(caller: Caller) -> list[str]:
    """The caller's roles as custody events and receipts record them: sorted plain strings."""
    return sorted(role.value for role in caller.roles)


def role_missing(why: str) -> PermissionDeniedError:
    """The refusal of a caller whose roles do not allow an action, with how to get the role."""
    return PermissionDeniedError(
        f"refused: {why}",
        remedy="ask an admin for the role: the roles file or an evidence-* group "
        "(docs/review.md, 'The roles file')",
    )


def refuse(
    station: Station,
    caller: Caller,
    action: str,
    error: EvidenceError,
    *,
    subject_kind: Subject = Subject.STATION,
    subject_id: str | None = None,
    reason: str = "",
    sha256: str | None = None,
    data: dict[str, Any] | None = None,
) -> NoReturn:
    """Record that `action` was refused (who, when, what, why) in its own transaction; raise."""
    record_refusal(
        station,
        caller,
        action,
        error.message,
        subject_kind=subject_kind,
        subject_id=subject_id,
        reason=reason,
        sha256=sha256,
        data=data,
    )
    raise error


def record_refusal(
    station: Station,
    caller: Caller,
    action: str,
    cause: str,
    *,
    subject_kind: Subject = Subject.STATION,
    subject_id: str | None = None,
    reason: str = "",
    sha256: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    with station.transaction() as session:
        station.record(
            session,
            EventType.ACCESS_REFUSED.event(
                subject_id or station.settings.station_id,
                subject_kind=subject_kind,
                actor=caller.actor,
                reason=reason,
                sha256=sha256,
                data={
                    "action": action,
                    "cause": cause,
                    "roles": role_names(caller),
                    **(data or {}),
                },
            ),
        )


def record_view(
    station: Station,
    caller: Caller,
    event_type: EventType,
    *,
    subject_kind: Subject,
    subject_id: str,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """A person saw evidence metadata: who, when, what (the query and what it showed)."""
    with station.transaction() as session:
        station.record(
            session,
            event_type.event(
                subject_id,
                subject_kind=subject_kind,
                actor=caller.actor,
                reason=reason,
                data={"roles": role_names(caller), **(data or {})},
            ),
        )


def read_or_refuse(
    station: Station,
    caller: Caller,
    action: str,
    read: Callable[[Session], T],
    *,
    subject_kind: Subject = Subject.STATION,
    subject_id: str | None = None,
    reason: str = "",
) -> T:
    """Look something up; when it is not there, the refusal is logged once the read is over.

    (On SQLite even a reading session holds the write lock: nothing is written inside one.)"""
    _typed_plainly(reason, subject_kind, subject_id)
    with station.reading() as session:
        try:
            return read(session)
        except EvidenceError as e:
            error = e
    refuse(
        station,
        caller,
        action,
        error,
        subject_kind=subject_kind,
        subject_id=subject_id,
        reason=reason,
    )
