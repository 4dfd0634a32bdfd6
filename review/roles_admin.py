"""An administrator's edit of the roles file: roles given to or taken from one account, the whole file checked before it is written."""

from __future__ import annotations

import tomllib
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from evidence_agent.domain.roles import Role, parse_roles
from evidence_agent.domain.text import check_plain_text
from evidence_agent.errors import ConfigError, InputError
from review.settings import build_review_settings


@dataclass(frozen=True)
class Edited:
    """The roles file's new text, and what changed for the account (roles in sorted order)."""

    text: str
    granted: tuple[str, ...]
    revoked: tuple[str, ...]


def edit_user_roles(
    text: str, user: str, *, grant: Sequence[str] = (), revoke: Sequence[str] = (), source: Path
) -> Edited:
    """`text` (the roles file, "" when there is none) with `grant` added to and `revoke` taken
    from `user`'s roles under [roles.users]; comments and everything else kept as they were.

    A role the account already has (or does not have) is no change; nothing to change at all is
    an error, so that no empty roles.changed is logged. The new file must load as the station
    would load it."""
    check_plain_text(user, "account name")
    try:
        wanted = parse_roles(grant, "grant")
        dropped = parse_roles(revoke, "revoke")
    except ValueError as e:
        raise InputError(str(e)) from None
    if wanted & dropped:
        raise InputError("a role cannot be given and taken in one command")
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as e:
        raise ConfigError(f"the roles file {source} is not valid TOML: {e}") from e
    users = _users_table(document, source)
    held = _held(users, user, source)
    after = (held | wanted) - dropped
    if after == held:
        have = ", ".join(sorted(held)) or "no role"
        raise InputError(f"{user} has {have} by name in {source}: nothing to change")
    if after:
        users[user] = list(_names(after))
    elif user in users:
        del users[user]
    new_text = tomlkit.dumps(document)
    build_review_settings(tomllib.loads(new_text), source=source)
    return Edited(new_text, _names(after - held), _names(held - after))


def _users_table(document: tomlkit.TOMLDocument, source: Path) -> MutableMapping[str, Any]:
    # A table may be split across the file ([roles] ... [review] ... [roles.x]): tomlkit then
    # hands out a proxy over its parts, a mapping like a table.
    roles = document.get("roles")
    if roles is None:
        roles = tomlkit.table()
        document["roles"] = roles
    users = roles.get("users") if isinstance(roles, MutableMapping) else None
    if users is None and isinstance(roles, MutableMapping):
        users = tomlkit.table()
        roles["users"] = users
    if not isinstance(users, MutableMapping):
        raise ConfigError(
            f"[roles.users] in {source} is not a table",
            remedy="see docs/review.md, 'The roles file'",
        )
    return users


def _held(users: MutableMapping[str, Any], user: str, source: Path) -> frozenset[Role]:
    names = users.get(user, [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"roles.users.{user} in {source}: expected a list of roles")
    try:
        return parse_roles(names, f"roles.users.{user}")
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None


def _names(roles: frozenset[Role]) -> tuple[str, ...]:
    return tuple(sorted(role.value for role in roles))
