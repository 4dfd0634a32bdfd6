"""The roles file as `roles grant`/`revoke` edit it: one account's roles changed, the rest kept."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from evidence_agent.errors import ConfigError, InputError
from review.roles_admin import edit_user_roles

SOURCE = Path("/var/lib/evidence-agent/roles.toml")
FILE = """\
# Kept by the records office's administrator.
[roles]
default_groups = true

[roles.users]
"wang.fang" = ["clerk"]  # records desk
"li.qiang" = ["supervisor"]

[review]
deletion_approval = "two-person"
"""


def test_a_grant_adds_the_role_and_keeps_comments_and_other_people() -> None:
    edited = edit_user_roles(FILE, "wang.fang", grant=["auditor"], source=SOURCE)
    assert edited.granted == ("auditor",) and edited.revoked == ()
    raw = tomllib.loads(edited.text)
    assert raw["roles"]["users"] == {"wang.fang": ["auditor", "clerk"], "li.qiang": ["supervisor"]}
    assert "# Kept by the records office's administrator." in edited.text
    assert raw["review"]["deletion_approval"] == "two-person"


def test_a_new_person_and_a_new_file() -> None:
    edited = edit_user_roles("", "zhao.min", grant=["auditor"], source=SOURCE)
    assert tomllib.loads(edited.text) == {"roles": {"users": {"zhao.min": ["auditor"]}}}


def test_revoking_the_last_role_removes_the_person() -> None:
    edited = edit_user_roles(FILE, "li.qiang", revoke=["supervisor"], source=SOURCE)
    assert edited.revoked == ("supervisor",)
    assert "li.qiang" not in tomllib.loads(edited.text)["roles"]["users"]


def test_only_what_changes_is_reported() -> None:
    edited = edit_user_roles(FILE, "wang.fang", grant=["clerk", "reviewer"], source=SOURCE)
    assert edited.granted == ("reviewer",)


@pytest.mark.parametrize(
    ("grant", "revoke", "message"),
    [
        (["clerk"], [], "nothing to change"),
        ([], ["auditor"], "nothing to change"),
        (["wizard"], [], "'wizard' is not a role"),
        (["clerk"], ["clerk"], "given and taken"),
    ],
)
def test_no_change_and_unknown_roles_are_errors(
    grant: list[str], revoke: list[str], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        edit_user_roles(FILE, "wang.fang", grant=grant, revoke=revoke, source=SOURCE)


def test_a_file_the_station_would_refuse_is_not_written() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        edit_user_roles(FILE + "[roles.extra]\n", "wang.fang", grant=["auditor"], source=SOURCE)
    with pytest.raises(ConfigError, match="not valid TOML"):
        edit_user_roles("[roles\n", "wang.fang", grant=["auditor"], source=SOURCE)


def test_a_name_with_a_newline_is_refused() -> None:
    with pytest.raises(InputError):
        edit_user_roles(FILE, "wang\nfang", grant=["clerk"], source=SOURCE)
