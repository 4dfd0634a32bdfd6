"""Retention classes and deletion rules, as pure functions over a clip's facts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from evidence_agent.domain.states import ClipState

# National rule: enforcement recordings are kept at least six months. A station may keep them
# longer (retention.standard_days, retention.important_days), never shorter.
NATIONAL_MINIMUM = timedelta(days=183)
DEFAULT_IMPORTANT = timedelta(days=3 * 365)


class RetentionClass(StrEnum):
    STANDARD = "standard"  # the station's standard period, at least the national minimum
    IMPORTANT = "important"  # marked important on the recorder: the station's longer period
    PERMANENT = "permanent"  # kept for good: never due, never deleted


class Ground(StrEnum):
    """Why a clip is kept for good, from the rules."""

    CASE_EVIDENCE = "case_evidence"  # linked to a case: follows from the links, never set by hand
    OBSTRUCTION = "obstruction"  # shows obstruction of officers
    MAJOR_EMERGENCY = "major_emergency"
    MASS_INCIDENT = "mass_incident"
    MAJOR_COMPLEX = "major_complex"  # another major or complex matter


SETTABLE_GROUNDS = tuple(g for g in Ground if g is not Ground.CASE_EVIDENCE)


class DeletionApproval(StrEnum):
    TWO_PERSON = "two-person"  # one person requests, a different supervisor approves
    SUPERVISOR = "supervisor"  # a supervisor alone, with a reason


@dataclass(frozen=True)
class RetentionPolicy:
    """The station's retention: one period per dated class; every ground keeps a clip for good.

    The grounds are the national rules' and not the station's to choose: a configuration edit
    must never end the permanent keeping of evidence."""

    standard: timedelta = NATIONAL_MINIMUM
    important: timedelta = DEFAULT_IMPORTANT

    def __post_init__(self) -> None:
        if self.standard < NATIONAL_MINIMUM:
            raise ValueError(f"standard retention must be at least {NATIONAL_MINIMUM.days} days")
        if self.important < self.standard:
            raise ValueError("important retention must not be shorter than standard retention")

    @property
    def longest(self) -> timedelta:
        """The longest dated class: what artefacts that vouch for clips (checkpoints) are kept."""
        return max(self.standard, self.important)


@dataclass(frozen=True)
class ClipFacts:
    """What retention depends on."""

    recorded_end: datetime | None
    ingested_at: datetime
    important: bool
    linked_cases: int
    grounds: frozenset[Ground]  # set by supervisors; CASE_EVIDENCE is derived from links
    legal_hold: bool
    state: str  # spooled, stored, deleted
    # What the catalog holds now. Deletion waits for the later of this and the rules: a
    # retention once given (and the store's lock with it) is never cut short by a rule change.
    kept_class: str = RetentionClass.STANDARD.value
    kept_until: datetime | None = None


@dataclass(frozen=True)
class Retention:
    cls: RetentionClass
    until: datetime | None  # None: permanent
    grounds: tuple[Ground, ...]


def retention_for(facts: ClipFacts, policy: RetentionPolicy) -> Retention:
    """The class and keep-until time that the rules give a clip: the catalog's `retention_until`
    and the store's lock alike.

    Permanent as soon as any ground holds; case links are a ground of their own. A dated class
    counts from the later of the end of the recording and the clip's cataloguing, so that a
    clip recorded long before it was docked (a recorder's clock reset, old footage found on a
    card) never arrives already expired. Dates are rounded up to the whole second: what an
    object store keeps (S3 Object Lock dates are whole seconds) is then the catalog's date."""
    grounds = set(facts.grounds) - {Ground.CASE_EVIDENCE}
    if facts.linked_cases > 0:
        grounds.add(Ground.CASE_EVIDENCE)
    ordered = tuple(sorted(grounds))
    if grounds:
        return Retention(RetentionClass.PERMANENT, None, ordered)
    start = max(facts.ingested_at, facts.recorded_end or facts.ingested_at)
    if facts.important:
        return Retention(RetentionClass.IMPORTANT, whole_second(start + policy.important), ordered)
    return Retention(RetentionClass.STANDARD, whole_second(start + policy.standard), ordered)


def retention_at_cataloguing(
    recorded_end: datetime | None, catalogued_at: datetime, important: bool, policy: RetentionPolicy
) -> Retention:
    """A new clip's retention: no case links, grounds or hold yet."""
    facts = ClipFacts(
        recorded_end=recorded_end,
        ingested_at=catalogued_at,
        important=important,
        linked_cases=0,
        grounds=frozenset(),
        legal_hold=False,
        state=ClipState.SPOOLED,
    )
    return retention_for(facts, policy)


def artefact_retain_until(policy: RetentionPolicy, now: datetime) -> datetime:
    """How long an artefact written now (a signed checkpoint, its verifier key) stays locked:
    the longest dated class, so that it outlives every dated clip it vouches for."""
    return whole_second(now + policy.longest)


def whole_second(moment: datetime) -> datetime:
    """`moment` rounded up to the whole second (never earlier)."""
    if moment.microsecond == 0:
        return moment
    return moment.replace(microsecond=0) + timedelta(seconds=1)


def deletion_blockers(facts: ClipFacts, policy: RetentionPolicy, now: datetime) -> list[str]:
    """Every reason the clip may not be deleted now; empty when it may (with approval)."""
    blockers = []
    if facts.state == ClipState.DELETED:
        blockers.append("the clip is already deleted")
    elif facts.state != ClipState.STORED:
        blockers.append(f"the clip is {facts.state}, not stored: only stored clips are deleted")
    if facts.legal_hold:
        blockers.append("the clip is under legal hold")
    retention = retention_for(facts, policy)
    if retention.cls is RetentionClass.PERMANENT:
        grounds = ", ".join(retention.grounds)
        blockers.append(f"the clip is kept permanently ({grounds})")
    elif facts.kept_class == RetentionClass.PERMANENT.value:
        blockers.append("the catalog keeps the clip permanently")
    else:
        until = max(u for u in (retention.until, facts.kept_until) if u is not None)
        if until > now:
            blockers.append(f"the clip is kept until {until.isoformat()}")
    return blockers


def is_due(facts: ClipFacts, policy: RetentionPolicy, now: datetime) -> bool:
    return not deletion_blockers(facts, policy, now)


def approval_blocker(
    mode: DeletionApproval, requested_by: str | None, approver: str, what: str = "a deletion"
) -> str | None:
    """Why `approver` may not approve `what` (a deletion, a disclosure) requested by
    `requested_by`, or None.

    The approver's supervisor role is checked by the role decision; this is the two-person rule."""
    if mode is DeletionApproval.SUPERVISOR:
        return None
    if requested_by is None:
        return (
            f"{what} needs a request by another person first "
            "(`evidence-agent retention request CLIP --reason ...`)"
        )
    if requested_by == approver:
        return f"the person who requested {what} cannot also approve it (two-person rule)"
    return None


def parse_grounds(names: Iterable[str]) -> frozenset[Ground]:
    """Grounds as stored in the catalog (JSON list of names); unknown names are kept out."""
    known = {g.value: g for g in Ground}
    return frozenset(known[n] for n in names if n in known)
