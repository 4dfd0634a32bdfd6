"""The one table of the station's operations: each has its guard action, checked before its service."""

from __future__ import annotations

import json
from pathlib import Path

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
