"""The one table of review operations: each has its guard action, checked before its service."""

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
from review.operations import OPERATIONS, perform

NOBODY = Identity("nobody-here", 4242)  # no group, not in the roles file: no role


def test_every_operation_has_an_action_some_role_holds() -> None:
    assert OPERATIONS
    for op in OPERATIONS.values():
        assert PERMISSIONS[op.action], op.name


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_an_operation_is_refused_before_its_service_runs_and_the_refusal_logged(
    station: Station, name: str
) -> None:
    fields = {"number": "2026-0042", "clip": "abcdef12", "reason": "why", "target": "/nowhere"}

    def no_files(_path: str) -> DirectoryTarget:
        raise AssertionError("a refused operation touches no file")

    with pytest.raises(PermissionDeniedError):
        perform(station, NOBODY, name, fields, target=no_files, source=lambda _n: None)

    with station.reading() as session:
        last = session.exec(select(CustodyEntry).order_by(col(CustodyEntry.seq).desc())).first()
    assert last is not None
    event = json.loads(last.entry)
    assert event["type"] == "access.refused" and event["actor"] == "user:nobody-here"
    assert event["data"]["action"] == OPERATIONS[name].action.value
    assert not Path("/nowhere").exists()
