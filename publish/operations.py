"""The station's whole table of operations: review's, with those publish adds (disclosure) or extends (status)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from evidence_agent.custody.vocabulary import Subject
from evidence_agent.domain.roles import Action
from evidence_agent.services.station import Station
from publish.clocks_due import clocks_due
from publish.disclosure.requests import (
    DisclosureRequest,
    decide_disclosure,
    list_disclosures,
    request_disclosure,
    show_disclosure,
)
from review.operations import OPERATIONS, Call, Operation, station_status


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


def _request(call: Call) -> dict[str, Any]:
    request = DisclosureRequest(
        call.text("recipient"),
        call.text("reason"),
        call.text("case"),
        call.texts("clips"),
        call.texts("derivatives"),
    )
    return request_disclosure(call.station, call.caller, request)


def _decide(approve: bool) -> Callable[[Call], dict[str, Any]]:
    def decide(call: Call) -> dict[str, Any]:
        return decide_disclosure(
            call.station, call.caller, call.need("disclosure"), call.text("reason"), approve=approve
        )

    return decide


_DISCLOSURE = (Subject.DISCLOSURE, "disclosure")

# Producing a package writes a whole directory: it is run on the station itself, for now.
_OWN: tuple[Operation, ...] = (
    Operation("status", Action.STATUS, lambda call: full_status(call.station)),
    Operation("disclose.request", Action.DISCLOSE_REQUEST, _request),
    Operation("disclose.approve", Action.DISCLOSE_APPROVE, _decide(True), _DISCLOSURE),
    Operation("disclose.refuse", Action.DISCLOSE_APPROVE, _decide(False), _DISCLOSURE),
    Operation(
        "disclose.list",
        Action.DISCLOSE_READ,
        lambda call: list_disclosures(call.station, call.caller, call.text("recipient")),
    ),
    Operation(
        "disclose.show",
        Action.DISCLOSE_READ,
        lambda call: show_disclosure(call.station, call.caller, call.need("disclosure")),
        _DISCLOSURE,
    ),
)

STATION_OPERATIONS: Mapping[str, Operation] = {**OPERATIONS, **{op.name: op for op in _OWN}}
