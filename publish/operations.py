"""The station's whole table of operations: review's, with those publish adds or extends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evidence_agent.domain.roles import Action
from evidence_agent.services.station import Station
from publish.clocks_due import clocks_due
from review.operations import OPERATIONS, Operation, station_status


def full_status(station: Station) -> dict[str, Any]:
    """`status` with what is due and overdue in legal review, notices and the statistics."""
    data = station_status(station)
    with station.reading() as session:
        data["clocks"] = clocks_due(
            session,
            station.settings.calendar,
            station.settings.local_date(station.clock.now()),
        )
    return data


STATION_OPERATIONS: Mapping[str, Operation] = {
    **OPERATIONS,
    "status": Operation("status", Action.STATUS, lambda call: full_status(call.station)),
}
