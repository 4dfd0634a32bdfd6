"""Who may do what: roles from OS groups and the roles file, and the pure permission decision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    OFFICER = "officer"  # the metadata of their own footage
    CLERK = "clerk"  # search, cases and links, retrieval with a reason, deletion and disclosure requests
    SUPERVISOR = (
        "supervisor"  # all a clerk does, plus approvals: deletion, disclosure, legal hold, grounds
    )
    AUDITOR = "auditor"  # reads everything, the access log included; changes nothing
    ADMIN = "admin"  # configuration only: no access to evidence through this role
    REVIEWER = "reviewer"  # legal review: reads case files, gives opinions, extends the clock


class Action(StrEnum):
    SEARCH_OWN = "search_own"  # clip metadata of the caller's own badge
    SEARCH = "search"  # clip metadata of anyone
    CASE_READ = "case_read"  # case list, show, suggest, check
    CASE_WRITE = "case_write"  # create, close, link, unlink, attach
    RETRIEVE = "retrieve"  # copy verified footage out of the store
    ACCESS_LOG = "access_log"
    RETENTION_READ = "retention_read"  # retention due
    RETENTION_REQUEST = "retention_request"  # ask for a deletion past retention
    RETENTION_APPROVE = "retention_approve"  # approve a deletion
    RETENTION_HOLD = "retention_hold"  # legal hold, grounds for permanent keeping
    LEGAL_REVIEW_REQUEST = "legal_review_request"  # send a case for legal review
    LEGAL_REVIEW_OPINION = "legal_review_opinion"  # give the opinion, extend the clock
    CLOCKS_READ = "clocks_read"  # legal reviews, notices and what is due
    NOTICE_WRITE = "notice_write"  # record, publish, revoke and withdraw notices; export
    STATISTICS = "statistics"  # produce the statistics report
    DISCLOSE_READ = "disclose_read"  # disclosures: list, show
    DISCLOSE_REQUEST = "disclose_request"  # ask for a disclosure; produce it once approved
    DISCLOSE_APPROVE = "disclose_approve"  # approve or refuse another person's disclosure
    AUDIT_EXPORT = "audit_export"  # the custody log, checkpoints and catalog rows, exported
    PROVE = "prove"  # inclusion proofs of a clip's custody events
    VERIFY = "verify"  # the station's custody chain checked: log, checkpoints, objects, catalog
    STATUS = "status"  # the station's backlog, 24-hour rule per unit and officer, case files due
    # Acts that say whom footage belongs to:
    RECORDER_REGISTER = "recorder_register"  # enrol a recorder, assign it to an officer, unassign
    RECORDER_NAME = (
        "recorder_name"  # name a volume's recorder (`ingest --recorder`, `dock identify`)
    )


# The whole policy in one table; everything not listed is refused.
PERMISSIONS: Mapping[Action, frozenset[Role]] = {
    Action.SEARCH_OWN: frozenset({Role.OFFICER, Role.CLERK, Role.SUPERVISOR, Role.AUDITOR}),
    Action.SEARCH: frozenset({Role.CLERK, Role.SUPERVISOR, Role.AUDITOR}),
    Action.CASE_READ: frozenset({Role.CLERK, Role.SUPERVISOR, Role.AUDITOR, Role.REVIEWER}),
    Action.CASE_WRITE: frozenset({Role.CLERK, Role.SUPERVISOR}),
    # The auditor "reads everything": a retrieval changes no evidence, and is logged like any.
    Action.RETRIEVE: frozenset({Role.CLERK, Role.SUPERVISOR, Role.AUDITOR}),
    Action.ACCESS_LOG: frozenset({Role.SUPERVISOR, Role.AUDITOR}),
    Action.RETENTION_READ: frozenset({Role.CLERK, Role.SUPERVISOR, Role.AUDITOR}),
    Action.RETENTION_REQUEST: frozenset({Role.CLERK, Role.SUPERVISOR}),
    Action.RETENTION_APPROVE: frozenset({Role.SUPERVISOR}),
    Action.RETENTION_HOLD: frozenset({Role.SUPERVISOR}),
    Action.LEGAL_REVIEW_REQUEST: frozenset({Role.CLERK, Role.SUPERVISOR}),
    # The reviewer alone: a legal opinion is given by the legal department, not by whoever
    # handles the case.
    Action.LEGAL_REVIEW_OPINION: frozenset({Role.REVIEWER}),
    Action.CLOCKS_READ: frozenset({Role.CLERK, Role.SUPERVISOR, Role.AUDITOR, Role.REVIEWER}),
    Action.NOTICE_WRITE: frozenset({Role.CLERK, Role.SUPERVISOR}),
    Action.STATISTICS: frozenset({Role.SUPERVISOR, Role.AUDITOR}),
    Action.DISCLOSE_READ: frozenset({Role.CLERK, Role.SUPERVISOR, Role.AUDITOR}),
    Action.DISCLOSE_REQUEST: frozenset({Role.CLERK, Role.SUPERVISOR}),
    Action.DISCLOSE_APPROVE: frozenset({Role.SUPERVISOR}),
    # An export holds every clip's metadata and every retrieval's reason: the access log's
    # readers. A proof shows one clip's events, for whoever may search and hand footage over.
    Action.AUDIT_EXPORT: frozenset({Role.SUPERVISOR, Role.AUDITOR}),
    Action.PROVE: frozenset({Role.CLERK, Role.SUPERVISOR, Role.AUDITOR}),
    # Its findings name clips, cases and the log's entries: the access log's readers too.
    Action.VERIFY: frozenset({Role.SUPERVISOR, Role.AUDITOR}),
    Action.STATUS: frozenset({Role.CLERK, Role.SUPERVISOR, Role.AUDITOR}),
    # The registry says who held each recorder when, so whose footage each clip is: kept by
    # supervisors, and by admins, who set the station up (it touches no footage).
    Action.RECORDER_REGISTER: frozenset({Role.SUPERVISOR, Role.ADMIN}),
    # The people at the desk when a recorder is docked by hand or could not be recognised.
    Action.RECORDER_NAME: frozenset({Role.CLERK, Role.SUPERVISOR}),
}

# OS groups that give a role without any configuration.
DEFAULT_GROUPS: Mapping[str, frozenset[Role]] = {
    f"evidence-{role.value}": frozenset({role}) for role in Role
}


@dataclass(frozen=True)
class Identity:
    """The person running a command, as the operating system knows them."""

    user: str
    uid: int
    groups: frozenset[str] = frozenset()

    @property
    def actor(self) -> str:
        return f"user:{self.user}"


@dataclass(frozen=True)
class RoleMap:
    """Roles by OS user and by OS group, and the badge that is each officer's own footage."""

    users: Mapping[str, frozenset[Role]] = field(default_factory=dict)
    groups: Mapping[str, frozenset[Role]] = field(default_factory=lambda: dict(DEFAULT_GROUPS))
    badges: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    identity: Identity
    roles: frozenset[Role]
    badge: str | None  # the officer's own badge, when the roles file names one

    @property
    def actor(self) -> str:
        return self.identity.actor


@dataclass(frozen=True)
class Decision:
    allowed: bool
    why: str


def roles_of(identity: Identity, role_map: RoleMap) -> frozenset[Role]:
    """The union of the roles given to the user by name and to each of their groups.

    Nobody holds a role by being root or uid 0: a role is always given by name or group, so
    each role holder is a person the custody log can name."""
    roles: set[Role] = set(role_map.users.get(identity.user, frozenset()))
    for group in identity.groups:
        roles |= role_map.groups.get(group, frozenset())
    return frozenset(roles)


def caller_for(identity: Identity, role_map: RoleMap) -> Caller:
    return Caller(identity, roles_of(identity, role_map), role_map.badges.get(identity.user))


def decide(roles: Iterable[Role], action: Action) -> Decision:
    """Whether any of `roles` allows `action`, with a sentence saying why or why not."""
    held = frozenset(roles)
    allowed_by = PERMISSIONS.get(action, frozenset())
    granted = sorted(held & allowed_by)
    if granted:
        return Decision(True, f"allowed to {', '.join(granted)}")
    needed = " or ".join(sorted(allowed_by)) or "no role"
    have = ", ".join(sorted(held)) or "no role"
    return Decision(False, f"{action.value} needs the role {needed}; the caller has {have}")


def search_scope(caller: Caller, officer: str | None) -> tuple[Decision, str | None]:
    """Decide a clip search and the officer filter it must use.

    Clerks, supervisors and auditors search anything. An officer alone sees only their own
    footage: the filter is forced to their badge, and asking for someone else's is refused."""
    wide = decide(caller.roles, Action.SEARCH)
    if wide.allowed:
        return wide, officer
    own = decide(caller.roles, Action.SEARCH_OWN)
    if not own.allowed:
        return own, officer
    if caller.badge is None:
        return (
            Decision(False, "an officer sees their own footage only, and no badge is set for them"),
            officer,
        )
    if officer is not None and officer != caller.badge:
        return Decision(False, "an officer sees the metadata of their own footage only"), officer
    return Decision(True, "allowed to officer (own footage)"), caller.badge


def parse_roles(names: Iterable[str], where: str) -> frozenset[Role]:
    """Role names from the roles file; an unknown one is an error naming where it was."""
    roles = set()
    for name in names:
        try:
            roles.add(Role(name))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ValueError(f"{where}: {name!r} is not a role (one of {known})") from None
    return frozenset(roles)
