"""End to end: a station installed as a service, used by people under their own OS accounts.

The station, its accounts and its daemon are tests/e2e/installed.py's. Who each person is
comes from the kernel; nothing they set in their environment counts."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.installed import EA, Station


def test_the_station_is_private_and_its_socket_for_the_group(station: Station) -> None:
    assert station.data.stat().st_mode & 0o777 == 0o700
    peek = subprocess.run(
        ["runuser", "-u", station.accounts.clerk, "--", "ls", str(station.data)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert peek.returncode != 0  # the clerk cannot read the station's files themselves
    info = station.socket.stat()
    assert info.st_mode & 0o777 == 0o660
    assert info.st_gid == grp.getgrnam(station.accounts.group).gr_gid  # the daemon's group
    assert info.st_uid == pwd.getpwnam(station.accounts.service).pw_uid


def test_a_clerk_searches_and_retrieves_under_their_own_name(station: Station) -> None:
    clerk = station.accounts.clerk
    assert station.videos, "the demo's clips were found by the clerk's search"
    clip = station.videos[0]
    home = station.base / f"home-{clerk}"
    home.mkdir(mode=0o700)
    os.chown(home, pwd.getpwnam(clerk).pw_uid, -1)
    target = home / "for-court"

    report = station.json_as(
        clerk, "retrieve", clip["id"], "--to", str(target), "--reason", "court request 2026-117"
    )

    (item,) = report["handed_over"]
    copy = target / item["file"]
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == clip["sha256"]
    # Written by the clerk's own process, with the clerk's rights: the clerk's file.
    assert copy.stat().st_uid == pwd.getpwnam(clerk).pw_uid
    assert copy.stat().st_mode & 0o777 == 0o444
    receipt = json.loads(Path(report["receipt"]).read_text())
    assert receipt["actor"] == f"user:{clerk}" and receipt["roles"] == ["clerk"]

    seen = station.access_log("--actor", clerk)
    kinds = {(e["type"], e["actor"]) for e in seen}
    assert ("clips.searched", f"user:{clerk}") in kinds
    assert ("clip.retrieved", f"user:{clerk}") in kinds
    retrieved = [e for e in seen if e["type"] == "clip.retrieved"][-1]
    assert retrieved["reason"] == "court request 2026-117"


def test_the_station_listings_go_through_the_daemon_with_a_role(station: Station) -> None:
    clerk, outsider = station.accounts.clerk, station.accounts.outsider
    status = station.json_as(clerk, "status")
    assert status["station"] and "backlog" in status
    listed = station.json_as(clerk, "clips", "list")
    assert {c["id"] for c in station.videos} <= {c["id"] for c in listed}
    seen = station.access_log("--actor", clerk, "--type", "clips.searched")
    assert seen[-1]["data"]["query"]["command"] == "clips list"
    for args in (["status"], ["clips", "list"]):
        refused = station.as_user(outsider, *args)
        assert refused.returncode == 5, refused.stderr


def test_a_supervisor_keeps_the_recorder_registry_under_their_own_name(station: Station) -> None:
    clerk, supervisor = station.accounts.clerk, station.accounts.supervisor
    serial = "R" + uuid.uuid4().hex[:7].upper()
    refused = station.as_user(clerk, "recorders", "enroll", serial, "--reason", "a new recorder")
    assert refused.returncode == 5, refused.stderr
    station.json_as(supervisor, "recorders", "enroll", serial, "--reason", "a new recorder")
    station.json_as(supervisor, "recorders", "assign", serial, "100231", "--reason", "day shift")
    shown = station.json_as(clerk, "recorders", "show", serial)
    assert shown["enrolled"] and shown["assigned_to"]["officer"] == "100231"
    assert shown["history"][-1]["actor"] == f"user:{supervisor}"
    assert "clocks" in station.json_as(clerk, "status")  # status through the station's table


def test_a_clerk_proves_a_clip_and_keeps_the_proof_file_as_their_own(station: Station) -> None:
    clerk, outsider = station.accounts.clerk, station.accounts.outsider
    clip = station.videos[0]["id"]
    home = station.base / f"proof-{clerk}"
    home.mkdir(mode=0o700)
    shutil.chown(home, clerk, clerk)
    proof = home / "proof.json"
    done = station.json_as(clerk, "prove", clip, "--out", str(proof))
    assert done["clip"] == clip and json.loads(proof.read_text()) == done
    assert proof.stat().st_uid == pwd.getpwnam(clerk).pw_uid
    refused = station.as_user(outsider, "prove", clip)
    assert refused.returncode == 5, refused.stderr


def test_an_account_without_a_role_is_refused_and_logged_under_its_name(station: Station) -> None:
    outsider = station.accounts.outsider
    refused = station.as_user(outsider, "clips", "search", "--officer", "100231")
    assert refused.returncode == 5, refused.stderr
    assert "remedy: ask an admin for the role" in refused.stderr
    refusals = station.access_log("--type", "access.refused", "--actor", outsider)
    assert refusals and refusals[-1]["actor"] == f"user:{outsider}"
    assert refusals[-1]["data"]["roles"] == []


@pytest.mark.parametrize("variable", ["USER", "LOGNAME", "SUDO_UID", "SUDO_USER"])
def test_the_environment_names_nobody(station: Station, variable: str) -> None:
    """A clerk who says they are the supervisor (or root) is still the clerk."""
    clerk, supervisor = station.accounts.clerk, station.accounts.supervisor
    claim = "0" if variable == "SUDO_UID" else supervisor
    done = station.as_user(clerk, "access-log", "--json", **{variable: claim})
    assert done.returncode == 5, done.stderr  # the access log is for supervisors and auditors
    last = station.access_log("--type", "access.refused")[-1]
    assert last["actor"] == f"user:{clerk}" and last["data"]["action"] == "access_log"


def test_a_supervisor_approves_a_deletion_a_clerk_requested_never_their_own(
    station: Station,
) -> None:
    clerk, supervisor = station.accounts.clerk, station.accounts.supervisor
    first, second = [v for v in station.videos if v["retention_class"] == "standard"][-2:]

    requested = station.json_as(
        clerk, "retention", "request", first["id"], "--reason", "past retention, no case"
    )
    assert requested["request"]["requested_by"] == f"user:{clerk}"
    not_theirs = station.as_user(clerk, "retention", "delete", first["id"], "--reason", "ok")
    assert not_theirs.returncode == 5, not_theirs.stderr  # a clerk cannot approve

    deleted = station.json_as(
        supervisor, "retention", "delete", first["id"], "--reason", "approved"
    )
    assert deleted["clip"] == first["id"] and deleted["store"] == "removed"

    # One person cannot both ask and approve: the two-person rule.
    station.json_as(supervisor, "retention", "request", second["id"], "--reason", "past retention")
    own = station.as_user(supervisor, "retention", "delete", second["id"], "--reason", "mine")
    assert own.returncode == 5, own.stderr
    log = station.access_log("--type", "clip.deleted", "--type", "access.refused")
    tombstone = next(e for e in log if e["type"] == "clip.deleted")
    assert tombstone["actor"] == f"user:{supervisor}" and tombstone["subject"]["id"] == first["id"]
    assert log[-1]["actor"] == f"user:{supervisor}" and log[-1]["subject"]["id"] == second["id"]


def test_a_change_of_roles_is_recorded_before_anyone_acts_under_it(station: Station) -> None:
    outsider = station.accounts.outsider
    roles = station.data / "roles.toml"
    before = hashlib.sha256(roles.read_bytes()).hexdigest()
    logged = station.access_log("--type", "roles.changed")
    assert logged[-1]["data"]["new_sha256"] == before and logged[-1]["data"]["owner"] == "root"

    # An administrator (root) gives the outsider the auditor's role.
    roles.write_text(roles.read_text() + f'{outsider} = ["auditor"]\n')
    after = hashlib.sha256(roles.read_bytes()).hexdigest()
    rows = station.json_as(outsider, "access-log", "--type", "roles.changed")

    change = rows[-1]
    assert (change["data"]["old_sha256"], change["data"]["new_sha256"]) == (before, after)
    assert change["actor"].startswith("service:") and change["data"]["mode"] == "0644"


def test_an_administrator_grants_a_role_logged_under_their_own_name(station: Station) -> None:
    """Root changes roles with `roles grant`/`revoke`: the file stays root's, and the daemon
    (the data directory's owner) logs the change with root, from the kernel, as its actor."""
    outsider = station.accounts.outsider
    roles = station.data / "roles.toml"
    env = {**station.env(), "USER": station.accounts.supervisor}  # names nobody

    def as_root(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(EA), "roles", *args], env=env, capture_output=True, text=True, timeout=120
        )

    done = as_root("grant", outsider, "reviewer", "--reason", "joins legal review", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["granted"] == ["reviewer"]
    assert (roles.stat().st_uid, roles.stat().st_mode & 0o777) == (0, 0o644)
    change = station.access_log("--type", "roles.changed")[-1]
    assert change["actor"] == "user:root" and change["reason"] == "joins legal review"
    assert change["data"]["user"] == outsider and change["data"]["granted"] == ["reviewer"]
    assert change["data"]["new_sha256"] == hashlib.sha256(roles.read_bytes()).hexdigest()

    again = as_root("grant", outsider, "reviewer", "--reason", "twice")
    assert again.returncode == 2 and "nothing to change" in again.stderr

    done = as_root("revoke", outsider, "reviewer", "--reason", "left legal review")
    assert done.returncode == 0, done.stderr
    change = station.access_log("--type", "roles.changed")[-1]
    assert change["actor"] == "user:root" and change["data"]["revoked"] == ["reviewer"]


def test_nobody_else_changes_roles_or_claims_a_change(station: Station) -> None:
    clerk = station.accounts.clerk
    refused = station.as_user(clerk, "roles", "grant", clerk, "supervisor", "--reason", "me")
    assert refused.returncode == 5, refused.stderr  # the roles file is not theirs to read

    # Nor can they have the daemon log a change under their name: only root or the file's owner.
    forged = subprocess.run(
        ["runuser", "-u", clerk, "--", str(station.program.with_name("python")), "-c",
         "import sys; from pathlib import Path; "
         "from evidence_agent.services.local_api import call; "
         "_, e = call(Path(sys.argv[1]), 'roles.record', {'user': sys.argv[2], "
         "'granted': ['supervisor'], 'revoked': [], 'new_sha256': 'x', 'reason': 'me'}); "
         "sys.exit(int(e.exit_code) if e else 0)",
         str(station.socket), clerk],
        env=station.env(), cwd=station.base, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert forged.returncode == 5, forged.stderr
    refusal = station.access_log("--type", "access.refused", "--actor", clerk)[-1]
    assert refusal["data"]["action"] == "roles.change"


@pytest.mark.parametrize("command", [("store",), ("custody", "checkpoint"), ("storage", "check")])
def test_the_stations_own_work_says_whose_it_is(station: Station, command: tuple[str, ...]) -> None:
    done = station.as_user(station.accounts.clerk, *command)
    assert done.returncode == 5, done.stderr
    assert "is the station's own work" in done.stderr
    assert f"sudo -u {station.accounts.service}" in done.stderr
