"""The station's whole table of operations: review's, with those publish adds (disclosure) or extends (status)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from evidence_agent.custody.vocabulary import Subject
from evidence_agent.domain.roles import Action
from evidence_agent.errors import InputError
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


# ---------------------------------------------------------------- commands that write a directory
# Each writes through the output directory the call gives (review/operations.py Call.output):
# the caller's own process makes every file when they came through the daemon.


def _notice_export(call: Call) -> dict[str, Any]:
    from publish.notice_site import export_notices

    directory = call.need("directory")
    reason = call.text("reason") or ""
    return export_notices(
        call.station, call.caller, Path(directory), reason, output=call.output(directory)
    )


def _statistics_report(call: Call) -> dict[str, Any]:
    from publish.statistics import Period
    from publish.statistics_report import produce_report

    year, first, last = call.fields.get("year"), call.text("from"), call.text("to")
    try:
        period = (
            Period(date.fromisoformat(first), date.fromisoformat(last))
            if first is not None and last is not None
            else Period.of_year(int(str(year)))
        )
    except ValueError as e:
        raise InputError(f"the report's period is not days: {e}") from e
    directory = call.need("directory")
    reason = call.text("reason") or ""
    return produce_report(
        call.station, call.caller, period, Path(directory), reason, output=call.output(directory)
    )


def _disclose_produce(call: Call) -> dict[str, Any]:
    from publish.disclosure.package import produce

    bag = call.need("to")
    return produce(
        call.station, call.caller, call.need("disclosure"), Path(bag), output=call.output(bag)
    )


_OUTPUTS: tuple[Operation, ...] = (
    Operation("disclose.produce", Action.DISCLOSE_REQUEST, _disclose_produce, _DISCLOSURE),
    Operation("notice.export", Action.NOTICE_WRITE, _notice_export, writes=True),
    Operation("statistics.report", Action.STATISTICS, _statistics_report),
)

STATION_OPERATIONS: Mapping[str, Operation] = {
    **OPERATIONS,
    **{op.name: op for op in _OWN},
    **{op.name: op for op in _OUTPUTS},
}
