"""Role decisions and the roles file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evidence_agent.domain.retention import DeletionApproval
from evidence_agent.domain.roles import (
    PERMISSIONS,
    Action,
    Identity,
    Role,
    RoleMap,
    caller_for,
    decide,
    roles_of,
    search_scope,
)
from evidence_agent.errors import ConfigError
from review.settings import (
    build_review_settings,
    load_review_settings,
    load_station_roles,
)

ALICE = Identity("alice", 1001, frozenset({"alice", "records"}))


def test_each_role_may_do_exactly_what_the_table_says() -> None:
    expected = {
        Role.OFFICER: {Action.SEARCH_OWN},
        Role.CLERK: {
            Action.SEARCH_OWN,
            Action.SEARCH,
            Action.CASE_READ,
            Action.CASE_WRITE,
            Action.RETRIEVE,
            Action.RETENTION_READ,
            Action.RETENTION_REQUEST,
            Action.LEGAL_REVIEW_REQUEST,
            Action.CLOCKS_READ,
            Action.NOTICE_WRITE,
            Action.DISCLOSE_READ,
            Action.DISCLOSE_REQUEST,
            Action.PROVE,
            Action.RECORDER_NAME,
            Action.STATUS,
        },
        # A legal opinion is the legal department's own: not even a supervisor gives it.
        Role.SUPERVISOR: set(Action) - {Action.LEGAL_REVIEW_OPINION},
        Role.AUDITOR: {
            Action.SEARCH_OWN,
            Action.SEARCH,
            Action.CASE_READ,
            Action.RETRIEVE,
            Action.ACCESS_LOG,
            Action.RETENTION_READ,
            Action.CLOCKS_READ,
            Action.STATISTICS,
            Action.DISCLOSE_READ,
            Action.AUDIT_EXPORT,
            Action.PROVE,
            Action.STATUS,
            Action.VERIFY,
        },
        Role.ADMIN: {Action.RECORDER_REGISTER},  # the registry; no footage
        Role.REVIEWER: {Action.CASE_READ, Action.CLOCKS_READ, Action.LEGAL_REVIEW_OPINION},
    }
    for role, actions in expected.items():
        allowed = {a for a in Action if decide([role], a).allowed}
        assert allowed == actions, role


def test_the_auditor_changes_nothing() -> None:
    changes = {
        Action.CASE_WRITE,
        Action.RETENTION_REQUEST,
        Action.RETENTION_APPROVE,
        Action.RETENTION_HOLD,
    }
    assert all(Role.AUDITOR not in PERMISSIONS[a] for a in changes)


def test_a_refusal_says_what_was_needed_and_what_the_caller_had() -> None:
    decision = decide([Role.CLERK], Action.RETENTION_APPROVE)
    assert not decision.allowed
    assert "supervisor" in decision.why and "clerk" in decision.why
    assert "no role" in decide([], Action.RETRIEVE).why


def test_roles_come_from_the_user_and_from_each_group() -> None:
    role_map = RoleMap(
        users={"alice": frozenset({Role.CLERK})},
        groups={"records": frozenset({Role.AUDITOR}), "evidence-admin": frozenset({Role.ADMIN})},
    )
    assert roles_of(ALICE, role_map) == {Role.CLERK, Role.AUDITOR}


def test_default_groups_give_roles_without_configuration() -> None:
    someone = Identity("bob", 1002, frozenset({"evidence-supervisor"}))
    assert roles_of(someone, RoleMap()) == {Role.SUPERVISOR}


def test_root_holds_no_role_by_being_root() -> None:
    root = Identity("root", 0, frozenset({"root"}))
    assert roles_of(root, RoleMap()) == frozenset()
    assert roles_of(root, RoleMap(users={"root": frozenset({Role.ADMIN})})) == {Role.ADMIN}


def test_an_officer_searches_only_their_own_badge() -> None:
    role_map = RoleMap(users={"alice": frozenset({Role.OFFICER})}, badges={"alice": "100231"})
    officer = caller_for(ALICE, role_map)
    decision, badge = search_scope(officer, None)
    assert decision.allowed and badge == "100231"
    assert not search_scope(officer, "999999")[0].allowed
    no_badge = caller_for(ALICE, RoleMap(users={"alice": frozenset({Role.OFFICER})}))
    assert not search_scope(no_badge, None)[0].allowed


def test_a_clerk_searches_anyone() -> None:
    clerk = caller_for(ALICE, RoleMap(users={"alice": frozenset({Role.CLERK})}))
    decision, badge = search_scope(clerk, "999999")
    assert decision.allowed and badge == "999999"


def test_roles_file_defaults() -> None:
    settings = build_review_settings({})
    assert settings.deletion_approval is DeletionApproval.TWO_PERSON
    assert settings.roles.groups["evidence-clerk"] == {Role.CLERK}


def test_roles_file_full_example() -> None:
    settings = build_review_settings(
        {
            "roles": {
                "users": {"alice": ["clerk"], "bob": ["supervisor", "auditor"]},
                "groups": {"records": ["clerk"]},
                "officers": {"zhang": "100231"},
                "default_groups": False,
            },
            "review": {"deletion_approval": "supervisor"},
        }
    )
    assert settings.roles.users["bob"] == {Role.SUPERVISOR, Role.AUDITOR}
    assert settings.roles.groups == {"records": frozenset({Role.CLERK})}
    assert settings.roles.badges == {"zhang": "100231"}
    assert settings.deletion_approval is DeletionApproval.SUPERVISOR


def test_roles_file_errors_are_all_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        build_review_settings(
            {
                "roles": {"users": {"alice": ["janitor"]}, "colour": "blue"},
                "review": {"deletion_approval": "nobody", "surprise": 1},
                "extra": {},
            }
        )
    message = caught.value.message
    for words in ("janitor", "roles.colour", "nobody", "review.surprise: unknown key", "[extra]"):
        assert words in message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("standard_retention_days", "retention.standard_days"),
        ("important_retention_days", "retention.important_days"),
        ("case_file_days", "review.case_file_days"),
        ("full_recording_types", "review.full_recording_types"),
        ("gap_tolerance_seconds", "review.gap_tolerance_seconds"),
    ],
)
def test_station_policy_in_the_roles_file_is_refused_with_its_new_place(old: str, new: str) -> None:
    # Retention periods and case rules are the station's configuration now: one place only, so
    # that two files can never disagree on how long evidence is kept.
    with pytest.raises(ConfigError) as caught:
        build_review_settings({"review": {old: 400}})
    assert f"review.{old}: moved to the station configuration as {new}" in caught.value.message
    assert caught.value.exit_code == 4


def test_a_roles_file_others_may_write_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "roles.toml"
    path.write_text('[roles.users]\nalice = ["supervisor"]\n')
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="written by others"):
        load_review_settings(path, trusted_owners={os.getuid()})
    path.chmod(0o644)
    roles = load_review_settings(path, trusted_owners={os.getuid()}).roles
    assert roles.users["alice"] == {Role.SUPERVISOR}


def test_a_missing_roles_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_review_settings(tmp_path / "none.toml", trusted_owners={0}).source is None


def test_the_roles_are_the_stations_own_file(tmp_path: Path) -> None:
    """Who may do what comes from <data_dir>/roles.toml only: a caller's environment cannot
    name another file, and a file owned by anybody but root or the station's account is
    refused (a role-less account cannot make itself supervisor)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "roles.toml").write_text('[roles.users]\nalice = ["supervisor"]\n')
    assert load_station_roles(data, {}).roles.users["alice"] == {Role.SUPERVISOR}
    own = tmp_path / "mine.toml"
    own.write_text('[roles.users]\nmallory = ["supervisor"]\n')
    with pytest.raises(ConfigError, match="EVIDENCE_AGENT_ROLES_FILE is not read"):
        load_station_roles(data, {"EVIDENCE_AGENT_ROLES_FILE": str(own)})
    os.chown(data / "roles.toml", 54321, -1)  # the tests run as root, as a station's admin
    with pytest.raises(ConfigError, match="belongs to uid 54321"):
        load_station_roles(data, {})


def test_the_roles_file_example_in_the_docs_is_valid() -> None:
    import re
    import tomllib

    doc = (Path(__file__).resolve().parents[3] / "docs" / "review.md").read_text(encoding="utf-8")
    section = doc[doc.index("## The roles file") :]
    block = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    settings = build_review_settings(tomllib.loads(block.group(1)))
    assert settings.deletion_approval is DeletionApproval.TWO_PERSON
