"""The roles file: who may do what (roles by OS user and group, deletion approval); read once."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence_agent.domain.retention import DeletionApproval
from evidence_agent.domain.roles import DEFAULT_GROUPS, Role, RoleMap, parse_roles
from evidence_agent.errors import ConfigError
from evidence_agent.services.roles_changes import ROLES_FILE_NAME

# Read by earlier releases, which let any caller name their own roles file: now refused.
FORMER_ENV_ROLES_FILE = "EVIDENCE_AGENT_ROLES_FILE"

_ROLES_KEYS = ("users", "groups", "officers", "default_groups")
# Station policy that earlier releases read from this file: refused with where it is now, so
# that no period or rule is set in two places that could disagree.
_MOVED = {
    "full_recording_types": "review.full_recording_types",
    "other_enforcement_types": "review.other_enforcement_types",
    "gap_tolerance_seconds": "review.gap_tolerance_seconds",
    "suggest_margin_minutes": "review.suggest_margin_minutes",
    "case_file_days": "review.case_file_days",
    "standard_retention_days": "retention.standard_days",
    "important_retention_days": "retention.important_days",
}


@dataclass(frozen=True)
class ReviewSettings:
    """The people's side of review; the station's rules are in its configuration (Settings)."""

    roles: RoleMap = field(default_factory=RoleMap)
    deletion_approval: DeletionApproval = DeletionApproval.TWO_PERSON
    source: Path | None = None


def load_station_roles(data_dir: Path, environ: Mapping[str, str] | None = None) -> ReviewSettings:
    """Who may do what at the station of `data_dir`: its `roles.toml`, from nowhere a caller
    chooses (no environment variable, no option), and only when root or the station's own
    account owns it and nobody else may write it."""
    env = os.environ if environ is None else environ
    if env.get(FORMER_ENV_ROLES_FILE):
        raise ConfigError(
            f"${FORMER_ENV_ROLES_FILE} is not read: a caller must not choose who has which role",
            remedy=f"unset it; roles are in {data_dir / ROLES_FILE_NAME} (kept by root or the "
            "station's account) and the evidence-* groups",
        )
    try:
        station_owner = data_dir.stat().st_uid
    except OSError:
        station_owner = 0  # no station there yet: only root's file counts
    return load_review_settings(data_dir / ROLES_FILE_NAME, trusted_owners={0, station_owner})


def load_review_settings(path: Path, *, trusted_owners: set[int]) -> ReviewSettings:
    """Read the file at `path`; a missing file means the defaults (roles from OS groups only).

    The file decides who may see and hand over evidence, so one owned by anybody but
    `trusted_owners`, or that others than its owner may write, is refused."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return ReviewSettings()
    except OSError as e:
        raise ConfigError(f"cannot read the roles file {path}: {e.strerror}") from e
    if info.st_uid not in trusted_owners:
        raise ConfigError(
            f"the roles file {path} belongs to uid {info.st_uid}, not to root or the station's "
            f"account (uid {', '.join(str(u) for u in sorted(trusted_owners))}): refused",
            remedy=f"an administrator keeps it: chown root {path}",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"the roles file {path} may be written by others (mode {info.st_mode & 0o777:o})",
            remedy=f"chmod go-w {path}",
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the roles file {path}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"the roles file {path} is not valid TOML: {e}") from e
    return build_review_settings(raw, source=path)


def build_review_settings(raw: Mapping[str, Any], *, source: Path | None = None) -> ReviewSettings:
    """Validate the whole file at once; the error names every bad key."""
    problems: list[str] = []
    for section in raw:
        if section not in ("roles", "review"):
            problems.append(f"[{section}]: unknown section (expected [roles] and [review])")
    roles_raw = _table(raw, "roles", problems)
    review_raw = _table(raw, "review", problems)

    for key in roles_raw:
        if key not in _ROLES_KEYS:
            problems.append(f"roles.{key}: unknown key")
    users = _role_table(roles_raw, "users", problems)
    groups = _role_table(roles_raw, "groups", problems)
    default_groups = roles_raw.get("default_groups", True)
    if not isinstance(default_groups, bool):
        problems.append("roles.default_groups: expected true or false")
        default_groups = True
    officers_raw = _table(roles_raw, "officers", problems, prefix="roles.")
    officers = {}
    for user, badge in officers_raw.items():
        if isinstance(badge, str) and badge:
            officers[user] = badge
        else:
            problems.append(f"roles.officers.{user}: expected a badge number as a string")

    approval = DeletionApproval.TWO_PERSON
    for key, value in review_raw.items():
        if key in _MOVED:
            problems.append(
                f"review.{key}: moved to the station configuration as {_MOVED[key]} "
                "(see config/evidence-agent.toml); remove it here"
            )
        elif key != "deletion_approval":
            problems.append(f"review.{key}: unknown key")
        elif not isinstance(value, str) or value not in {m.value for m in DeletionApproval}:
            problems.append(
                f"review.deletion_approval: {value!r} is not one of "
                + ", ".join(m.value for m in DeletionApproval)
            )
        else:
            approval = DeletionApproval(value)

    if problems:
        where = f" in {source}" if source else ""
        raise ConfigError(
            f"{len(problems)} bad key(s) in the roles file{where}: " + "; ".join(problems),
            remedy="see docs/review.md, 'The roles file', for every key with an example",
        )
    role_groups: dict[str, frozenset[Role]] = dict(DEFAULT_GROUPS) if default_groups else {}
    for group, roles in groups.items():
        role_groups[group] = role_groups.get(group, frozenset()) | roles
    return ReviewSettings(
        roles=RoleMap(users=users, groups=role_groups, badges=officers),
        deletion_approval=approval,
        source=source,
    )


def _table(
    raw: Mapping[str, Any], key: str, problems: list[str], prefix: str = ""
) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"{prefix}{key}: expected a table")
        return {}
    return value


def _role_table(
    roles_raw: Mapping[str, Any], key: str, problems: list[str]
) -> dict[str, frozenset[Role]]:
    result = {}
    for name, value in _table(roles_raw, key, problems, prefix="roles.").items():
        where = f"roles.{key}.{name}"
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(f"{where}: expected a list of role names")
            continue
        try:
            result[name] = parse_roles(value, where)
        except ValueError as e:
            problems.append(str(e))
    return result
