"""The review file: roles by OS user and group, and review rules; read once at the entry point."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from evidence_agent.domain.retention import DeletionApproval, RetentionPolicy
from evidence_agent.domain.roles import DEFAULT_GROUPS, Role, RoleMap, parse_roles
from evidence_agent.errors import ConfigError

ENV_ROLES_FILE = "EVIDENCE_AGENT_ROLES_FILE"
ROLES_FILE_NAME = "roles.toml"

# Actions that need full-process audio/video recording under the rules (seizure, forced
# demolition and the like), and those that need it as circumstances require.
DEFAULT_FULL_RECORDING_TYPES = (
    "seizure",
    "sealing",
    "forced_demolition",
    "compulsory_execution",
    "administrative_detention",
)
DEFAULT_OTHER_TYPES = (
    "on_site_inspection",
    "evidence_collection",
    "hearing",
    "service_of_documents",
    "administrative_penalty",
    "licensing",
    "other",
)

_REVIEW_KEYS: dict[str, type | tuple[type, ...]] = {
    "full_recording_types": list,
    "other_enforcement_types": list,
    "deletion_approval": str,
    "gap_tolerance_seconds": (int, float),
    "suggest_margin_minutes": (int, float),
    "standard_retention_days": int,
    "important_retention_days": int,
    "case_file_days": int,
}
_ROLES_KEYS = ("users", "groups", "officers", "default_groups")


@dataclass(frozen=True)
class ReviewSettings:
    roles: RoleMap = field(default_factory=RoleMap)
    full_recording_types: tuple[str, ...] = DEFAULT_FULL_RECORDING_TYPES
    other_enforcement_types: tuple[str, ...] = DEFAULT_OTHER_TYPES
    deletion_approval: DeletionApproval = DeletionApproval.TWO_PERSON
    gap_tolerance: timedelta = timedelta(seconds=2)
    suggest_margin: timedelta = timedelta(minutes=30)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    case_file_days: int = 30  # case file within 30 days of the end of the action
    source: Path | None = None

    @property
    def enforcement_types(self) -> tuple[str, ...]:
        return (*self.full_recording_types, *self.other_enforcement_types)

    def requires_full_recording(self, enforcement_type: str) -> bool:
        return enforcement_type in self.full_recording_types


def roles_file_path(data_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    given = env.get(ENV_ROLES_FILE)
    return Path(given) if given else data_dir / ROLES_FILE_NAME


def load_review_settings(path: Path) -> ReviewSettings:
    """Read the file at `path`; a missing file means the defaults (roles from OS groups only).

    The file decides who may see and hand over evidence, so one that others than its owner
    may write is refused."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return ReviewSettings()
    except OSError as e:
        raise ConfigError(f"cannot read the roles file {path}: {e.strerror}") from e
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

    for key, value in review_raw.items():
        expected = _REVIEW_KEYS.get(key)
        if expected is None:
            problems.append(f"review.{key}: unknown key")
        elif isinstance(value, bool) or not isinstance(value, expected):
            problems.append(f"review.{key}: expected {_type_name(expected)}")
    valid = _valid(review_raw)

    def get(key: str, default: Any) -> Any:
        return review_raw[key] if key in valid else default

    full = _names(
        get("full_recording_types", DEFAULT_FULL_RECORDING_TYPES), "full_recording_types", problems
    )
    other = _names(
        get("other_enforcement_types", DEFAULT_OTHER_TYPES), "other_enforcement_types", problems
    )
    for name in sorted(set(full) & set(other)):
        problems.append(f"review: {name!r} is listed both as full-recording and as other type")
    approval_text = get("deletion_approval", DeletionApproval.TWO_PERSON.value)
    try:
        approval = DeletionApproval(approval_text)
    except ValueError:
        problems.append(
            f"review.deletion_approval: {approval_text!r} is not one of "
            + ", ".join(m.value for m in DeletionApproval)
        )
        approval = DeletionApproval.TWO_PERSON
    tolerance = float(get("gap_tolerance_seconds", 2))
    margin = float(get("suggest_margin_minutes", 30))
    if tolerance < 0:
        problems.append("review.gap_tolerance_seconds: must not be negative")
    if margin < 0:
        problems.append("review.suggest_margin_minutes: must not be negative")
    case_file_days = int(get("case_file_days", 30))
    if case_file_days < 1:
        problems.append("review.case_file_days: must be at least 1")
    policy = RetentionPolicy()
    try:
        policy = RetentionPolicy(
            standard=timedelta(days=int(get("standard_retention_days", policy.standard.days))),
            important=timedelta(days=int(get("important_retention_days", policy.important.days))),
        )
    except ValueError as e:
        problems.append(f"review: {e}")

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
        full_recording_types=tuple(full),
        other_enforcement_types=tuple(other),
        deletion_approval=approval,
        gap_tolerance=timedelta(seconds=tolerance),
        suggest_margin=timedelta(minutes=margin),
        retention=policy,
        case_file_days=case_file_days,
        source=source,
    )


def _valid(review_raw: Mapping[str, Any]) -> set[str]:
    return {
        key
        for key, value in review_raw.items()
        if key in _REVIEW_KEYS
        and not isinstance(value, bool)
        and isinstance(value, _REVIEW_KEYS[key])
    }


def _type_name(expected: type | tuple[type, ...]) -> str:
    if expected is list:
        return "a list"
    if expected is str:
        return "a string"
    return "a number"


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


def _names(value: Any, key: str, problems: list[str]) -> list[str]:
    if not all(isinstance(v, str) and v for v in value):
        problems.append(f"review.{key}: every item must be a non-empty string")
        return [v for v in value if isinstance(v, str) and v]
    return list(value)
