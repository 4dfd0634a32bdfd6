"""The station's whole table of operations: review's, with those publish adds (disclosure, notices, redaction) or extends (status)."""

from __future__ import annotations

import json
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
from publish.notices import (
    NoticeInput,
    add_notice,
    list_notices,
    publish_notice,
    revoke_decision,
    withdraw_notice,
)
from publish.redaction.derivatives import decide_derivative, make, request_derivative
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


# ---------------------------------------------------------------- notices and redaction

_MOST_READ = 1 << 20  # a decision's text or a plan: a caller's descriptor is never read to its end


def _caller_file(call: Call, name: str) -> bytes:
    """The file the caller named in `name`: read through the descriptor their own process
    opened and passed (the local API), or opened here when the caller runs on the station."""
    path = call.need(name)
    source = call.source(path)
    with source if source is not None else Path(path).open("rb") as file:
        data = file.read(_MOST_READ + 1)
    if len(data) > _MOST_READ:
        raise InputError(f"{path} is larger than {_MOST_READ >> 20} MiB")
    return data


def _day(call: Call, name: str) -> date | None:
    text = call.text(name)
    try:
        return date.fromisoformat(text) if text else None
    except ValueError as e:
        raise InputError(f"{name} {text!r} is not a date", remedy="use YYYY-MM-DD") from e


def _add_notice(call: Call) -> dict[str, Any]:
    path = call.need("text_file")
    try:
        body = _caller_file(call, "text_file").decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    data = NoticeInput(
        number=call.need("number"),
        kind=call.need("kind"),
        title=call.need("title"),
        body=body,
        decision_date=_day(call, "decided") or date.min,
        persons=tuple(call.texts("persons")),
        minors=call.flag("minor"),
        case=call.text("case"),
    )
    return add_notice(call.station, call.caller, data, call.text("reason") or "")


def _request_derivative(call: Call) -> dict[str, Any]:
    path = call.need("plan")
    try:
        plan = json.loads(_caller_file(call, "plan").decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"cannot read the plan {path}: {e}") from e
    return request_derivative(
        call.station, call.caller, call.need("clip"), plan, call.text("reason")
    )


def _decide_derivative(approve: bool) -> Callable[[Call], dict[str, Any]]:
    def decide(call: Call) -> dict[str, Any]:
        return decide_derivative(
            call.station, call.caller, call.need("derivative"), call.text("reason"), approve=approve
        )

    return decide


_NOTICE = (Subject.NOTICE, "number")
_DERIVATIVE = (Subject.CLIP, "derivative")  # as the service logs its own refusals

# A derivative is made into the station's store, not a caller's directory: the daemon makes it.
_NOTICES_AND_REDACTION: tuple[Operation, ...] = (
    Operation("notice.add", Action.NOTICE_WRITE, _add_notice, _NOTICE, writes=True),
    Operation(
        "notice.publish",
        Action.NOTICE_WRITE,
        lambda c: publish_notice(c.station, c.caller, c.need("number"), c.text("reason") or ""),
        _NOTICE,
        writes=True,
    ),
    Operation(
        "notice.revoke",
        Action.NOTICE_WRITE,
        lambda c: revoke_decision(
            c.station, c.caller, c.need("number"), _day(c, "on"), c.text("reason") or ""
        ),
        _NOTICE,
        writes=True,
    ),
    Operation(
        "notice.withdraw",
        Action.NOTICE_WRITE,
        lambda c: withdraw_notice(c.station, c.caller, c.need("number"), c.text("reason") or ""),
        _NOTICE,
        writes=True,
    ),
    Operation(
        "notice.list",
        Action.CLOCKS_READ,
        lambda c: list_notices(c.station, c.caller, overdue=c.flag("overdue")),
    ),
    Operation(
        "redact.request", Action.DISCLOSE_REQUEST, _request_derivative, (Subject.CLIP, "clip")
    ),
    Operation("redact.approve", Action.DISCLOSE_APPROVE, _decide_derivative(True), _DERIVATIVE),
    Operation("redact.refuse", Action.DISCLOSE_APPROVE, _decide_derivative(False), _DERIVATIVE),
    Operation(
        "redact.make",
        Action.DISCLOSE_REQUEST,
        lambda c: make(c.station, c.caller, c.need("derivative")),
        _DERIVATIVE,
    ),
)

STATION_OPERATIONS: Mapping[str, Operation] = {
    **OPERATIONS,
    **{op.name: op for op in _OWN},
    **{op.name: op for op in _OUTPUTS},
    **{op.name: op for op in _NOTICES_AND_REDACTION},
}
