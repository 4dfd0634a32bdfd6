"""The one table of the station's operations: each has its guard action, checked before its service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from evidence_agent.catalog.models import CustodyEntry
from evidence_agent.domain.roles import PERMISSIONS, Identity
from evidence_agent.errors import PermissionDeniedError
from evidence_agent.services.copy_out import DirectoryTarget
from evidence_agent.services.station import Station
from publish.operations import STATION_OPERATIONS
from review.operations import perform

NOBODY = Identity("nobody-here", 4242)  # no group, not in the roles file: no role


def test_every_operation_has_an_action_some_role_holds() -> None:
    assert STATION_OPERATIONS
    for op in STATION_OPERATIONS.values():
        assert PERMISSIONS[op.action], op.name


@pytest.mark.parametrize("name", sorted(STATION_OPERATIONS))
def test_an_operation_is_refused_before_its_service_runs_and_the_refusal_logged_once(
    station: Station, name: str
) -> None:
    fields = {"number": "2026-0042", "clip": "abcdef12", "reason": "why", "target": "/nowhere"}
    fields |= {"case": "2026-0042", "derivative": "abcdef12", "text_file": "/nowhere"}

    def no_files(_path: str) -> DirectoryTarget:
        raise AssertionError("a refused operation touches no file")

    def no_source(_path: str) -> None:
        raise AssertionError("a refused operation reads no file of the caller")

    def entries() -> list[CustodyEntry]:
        with station.reading() as session:
            return list(session.exec(select(CustodyEntry).order_by(col(CustodyEntry.seq))))

    before = len(entries())
    with pytest.raises(PermissionDeniedError):
        perform(
            station,
            NOBODY,
            name,
            fields,
            target=no_files,
            source=no_source,
            table=STATION_OPERATIONS,
        )

    added = [json.loads(e.entry) for e in entries()[before:]]
    refusals = [e for e in added if e["type"] == "access.refused"]
    assert len(refusals) == 1, added  # the table's check refused it, not the service again
    (event,) = refusals
    assert event["actor"] == "user:nobody-here"
    assert event["data"]["action"] == STATION_OPERATIONS[name].action.value
    assert not Path("/nowhere").exists()


# The commands that are no person's act on the station's evidence, each with why. Every other
# command of the CLI is an operation of the table, so a new command cannot skip the guard
# unless it is named here.
NOT_OPERATIONS = {
    "config.example": "writes the example configuration; opens no station",
    "config.show": "prints the configuration; opens no evidence",
    "config.validate": "checks a configuration file; opens no evidence",
    "custody.checkpoint": "the station's own work, run as its account (docs/review.md)",
    "storage.check": "the station's own work, run as its account",
    "store": "the station's own work, run as its account",
    "run": "the daemon itself",
    "demo-recorder": "makes a demo recorder volume; opens no station",
    "roles.grant": "the administrator's (root), logged as roles.changed under their name",
    "roles.revoke": "the administrator's (root), logged as roles.changed under their name",
    "roles.show": "the administrator's (root): the roles file, no evidence",
    "verify-proof": "checks a proof file against a key offline; opens no station",
}
SERVED_BY = {"recorders.show": "recorders.list"}  # one operation, two views


def cli_commands() -> list[str]:
    import typer.main

    from evidence_agent.cli.app import app

    def walk(command: Any, path: list[str]) -> Iterator[str]:
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            yield ".".join(path)
            return
        for name, sub in subcommands.items():
            yield from walk(sub, [*path, name])

    return sorted(walk(typer.main.get_command(app), []))


def test_every_command_is_an_operation_of_the_table_or_says_why_not() -> None:
    commands = cli_commands()
    assert "retrieve" in commands and "case.create" in commands
    unclassified = [
        c
        for c in commands
        if c not in NOT_OPERATIONS and SERVED_BY.get(c, c) not in STATION_OPERATIONS
    ]
    assert not unclassified, f"add to the table of operations, or to NOT_OPERATIONS: {unclassified}"
    assert not set(NOT_OPERATIONS) - set(commands), "a command named here no longer exists"
    assert not set(NOT_OPERATIONS) & set(STATION_OPERATIONS)
    assert set(STATION_OPERATIONS) <= set(commands), "every operation is a command of the CLI"
