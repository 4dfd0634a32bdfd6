"""Every review operation once: its name, the guard's action, its fields and its service call.

The CLI runs an operation here when it can open the station itself, and sends the same name
and fields to the daemon's local API when it cannot; the daemon runs it here too. `perform`
checks the operation's action before anything else, so an operation added to the table cannot
skip the guard, whichever way it comes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from evidence_agent.catalog.queries import clip_views
from evidence_agent.catalog.queries import station_status as status_view
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.deadline import DeadlineRule
from evidence_agent.domain.roles import Action, Caller, Identity, caller_for, decide
from evidence_agent.errors import EvidenceError, InputError
from evidence_agent.services import recorders
from evidence_agent.services.copy_out import Target
from evidence_agent.services.guard import record_view, require
from evidence_agent.services.ingest import (
    VolumeSource,
    identify_dock,
    ingest_and_store,
    ingest_volume,
)
from evidence_agent.services.ingest_report import ProgressCallback
from evidence_agent.services.local_api import Handler, Peer
from evidence_agent.services.output_directory import LocalDirectory, OutputDirectory
from evidence_agent.services.roles_changes import RolesEdit, RolesWatch
from evidence_agent.services.station import Station
from review import access_log, cases, legal_review, retention, retrieval, search
from review.settings import ReviewSettings, load_station_roles

Outcome = tuple[Any, EvidenceError | None]  # the result, and the error the command ends with
# An administrator's `roles grant`/`revoke`, recorded by the daemon under the caller's name.
# Not in the table: no role allows it; only root or the roles file's owner, who wrote the file.
RECORD_ROLES_EDIT = "roles.record"


@dataclass(frozen=True)
class Call:
    """One operation's run: the station, who asks, the roles file, and the caller's files."""

    station: Station
    caller: Caller
    review: ReviewSettings
    fields: Mapping[str, Any]
    target: Callable[[str], Target]  # the directory a retrieval writes in, as the caller named it
    # A file the caller hands to the station (a document to attach), opened by the caller's
    # process; None: this process opens the path itself.
    source: Callable[[str], BinaryIO | None]
    # A directory a command writes its output in (an audit bundle's parent, a notice site), as
    # the caller named it: written by the caller's process when they came through the daemon.
    output: Callable[[str], OutputDirectory]
    # A recorder volume the caller names, read by the caller's process; None: no volume here.
    volume: Callable[[str], VolumeSource] | None = None
    progress: ProgressCallback | None = None  # bytes an ingest has read, told to the caller

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InputError(f"{name}: expected text")
        return value

    def need(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise InputError(f"{name} is missing")
        return value

    def texts(self, name: str) -> list[str]:
        value = self.fields.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{name}: expected a list of text")
        return list(value)

    def time(self, name: str) -> datetime | None:
        value = self.text(name)
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError as e:
            raise InputError(f"{name}: {value!r} is not a time") from e

    def flag(self, name: str) -> bool:
        return bool(self.fields.get(name))


@dataclass(frozen=True)
class Operation:
    name: str
    action: Action  # what the guard checks before anything else
    run: Callable[[Call], Any]
    subject: tuple[Subject, str | None] = (Subject.STATION, None)  # a refusal's subject: field
    writes: bool = False  # changes the station (the CLI may make a new one for it)


def _retrieve(call: Call) -> Outcome:
    request = retrieval.RetrievalRequest(
        clips=call.texts("clips"),
        case=call.text("case"),
        target=Path(call.need("target")),
        reason=call.text("reason"),
    )
    try:
        report = retrieval.retrieve(
            call.station, call.caller, request, target=call.target(call.need("target"))
        )
    except retrieval.RetrievalIntegrityError as e:
        return e.report.to_json(), e
    return report.to_json(), None


def _case_input(call: Call) -> cases.CaseInput:
    return cases.CaseInput(
        number=call.need("number"),
        title=call.text("title") or "",
        parties=call.texts("parties"),
        cause_of_action=call.text("cause") or "",
        enforcement_type=call.need("type"),
        unit=call.text("unit"),
        officers=call.texts("officers"),
        action_start=call.time("start"),
        action_end=call.time("end"),
    )


def _suggest(call: Call) -> dict[str, Any]:
    number = call.need("number")
    margin = call.fields.get("margin_minutes")
    rows = cases.suggest(
        call.station,
        call.caller,
        number,
        timedelta(minutes=float(margin)) if margin is not None else None,
    )
    linked = None
    if call.flag("link") and rows:
        ids = [r["id"] for r in rows]
        linked = cases.link_clips(call.station, call.caller, number, ids, call.text("reason"))
    return {"suggested": rows, "linked": linked}


def _attach(call: Call) -> dict[str, Any]:
    name = call.need("file")
    source = call.source(name)
    with source or nullcontext():
        return cases.attach_document(
            call.station,
            call.caller,
            call.need("number"),
            Path(name),
            call.text("reason"),
            call.time("time"),
            source=source,
        )


def _search(call: Call) -> list[dict[str, Any]]:
    limit = call.fields.get("limit")
    query = search.ClipQuery(
        case=call.text("case"),
        officer=call.text("officer"),
        recorder=call.text("recorder"),
        unit=call.text("unit"),
        since=call.time("since"),
        until=call.time("until"),
        cause=call.text("cause"),
        party=call.text("party"),
        important=call.fields.get("important"),
        state=call.text("state"),
        limit=int(limit) if limit is not None else search.DEFAULT_LIMIT,
    )
    return search.search_clips(call.station, call.caller, query)


def _access_log(call: Call) -> list[dict[str, Any]]:
    types = call.texts("types")
    limit = call.fields.get("limit")
    query = access_log.AccessQuery(
        since=call.time("since"),
        until=call.time("until"),
        actor=call.text("actor"),
        subject=call.text("subject"),
        types=tuple(types) if types else access_log.ACCESS_TYPES,
        limit=int(limit) if limit is not None else 1000,
    )
    return access_log.read_access_log(call.station, call.caller, query)


def _delete(call: Call) -> dict[str, Any]:
    result = retention.approve_deletion(
        call.station, call.caller, call.review, call.need("clip"), call.text("reason")
    )
    return result.to_json()


def clip_list(station: Station, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`clips list`: every clip with hash, source, recorder, officer, unit, times, state, flags."""
    limit = fields.get("limit")
    with station.reading() as session:
        views = clip_views(
            session,
            officer=fields.get("officer"),
            recorder=fields.get("recorder"),
            unit=fields.get("unit"),
            state=fields.get("state"),
            limit=int(limit) if limit is not None else None,
            limit_hours=station.settings.deadline.limit_hours,
            late=True if fields.get("late") else None,
        )
    return [v.to_json() for v in views]


def station_status(station: Station) -> dict[str, Any]:
    """`status`: backlog, running docks, the 24-hour rule per unit and officer, case files due."""
    settings = station.settings
    rule = DeadlineRule(
        limit=timedelta(hours=settings.deadline.limit_hours),
        warn=timedelta(hours=settings.deadline.warn_hours),
    )
    with station.reading() as session:
        view = status_view(
            session,
            station.clock.now(),
            rule,
            clock_skew_warn_seconds=settings.dock.clock_skew_warn_seconds,
            undocked_warn_hours=settings.deadline.undocked_warn_hours,
            case_file_days=settings.review.case_file_days,
        )
    data = view.to_json()
    data["station"] = settings.station_id
    data["store"] = station.store.describe()
    return data


def _clips_list(call: Call) -> list[dict[str, Any]]:
    """Through the local API a listing is a person seeing clips' metadata: logged as a search."""
    rows = clip_list(call.station, call.fields)
    record_view(
        call.station,
        call.caller,
        EventType.CLIPS_SEARCHED,
        subject_kind=Subject.STATION,
        subject_id=call.station.settings.station_id,
        data={"query": {"command": "clips list", **call.fields}, "clips": [r["id"] for r in rows]},
    )
    return rows


def _as_caller(call: Call) -> Station:
    """The station acting as the caller: the registry's events name the person, not the
    station's account."""
    return dataclasses.replace(call.station, actor=call.caller.actor)


def _at(call: Call) -> datetime | None:
    text = call.text("at")
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise InputError(f"--at {text!r} is not an ISO 8601 time") from e
    if value.tzinfo is None:
        raise InputError(
            f"--at {text!r} needs a UTC offset", remedy="e.g. 2026-11-20T08:00+08:00 or ...Z"
        )
    return value


def _enroll(call: Call) -> dict[str, Any]:
    return recorders.enroll(
        _as_caller(call),
        call.need("serial"),
        reason=call.text("reason") or "",
        usb_serial=call.text("usb_serial"),
        usb_vendor_id=call.text("vendor_id"),
        usb_model_id=call.text("model_id"),
        vendor=call.text("vendor"),
        model=call.text("model"),
        unit=call.text("unit"),
    ).to_json()


def _assign(call: Call) -> dict[str, Any]:
    return recorders.assign(
        _as_caller(call),
        call.need("serial"),
        call.need("badge"),
        reason=call.text("reason") or "",
        at=_at(call),
        officer_name=call.text("name"),
    ).to_json()


def _unassign(call: Call) -> dict[str, Any]:
    return recorders.unassign(
        _as_caller(call), call.need("serial"), reason=call.text("reason") or "", at=_at(call)
    ).to_json()


def _recorders(call: Call) -> Any:
    """The registry as people read it: every recorder, or one (`serial`) with its history."""
    station = call.station
    hours = station.settings.deadline.undocked_warn_hours
    serial = call.text("serial")
    with station.reading() as session:
        if serial is not None:
            return recorders.show_recorder(
                session, serial, station.clock.now(), undocked_warn_hours=hours
            ).to_json()
        views = recorders.list_recorders(
            session,
            station.clock.now(),
            undocked_warn_hours=hours,
            enrolled_only=call.flag("enrolled"),
        )
    return [v.to_json() for v in views]


def _caller_volume(call: Call, name: str) -> VolumeSource | None:
    path = call.text(name)
    if path is None:
        return None
    if call.volume is None:
        raise InputError("this way of asking the station cannot pass a volume")
    return call.volume(path)


def _ingest(call: Call) -> dict[str, Any]:
    """`ingest VOLUME`: the caller's volume, read by the caller's process, ingested under the
    caller's name, a store worker beside it as when the command runs on the station."""
    station = dataclasses.replace(_as_caller(call), sign_acts=False)  # a dock signs at its end
    volume = _caller_volume(call, "volume")
    if volume is None:
        raise InputError("volume is missing")
    recorder = call.text("recorder")
    return ingest_and_store(
        station,
        lambda progress, on_clip: ingest_volume(
            station, volume, recorder_serial=recorder, progress=progress, on_clip=on_clip
        ),
        call.progress,
    ).to_json()


def _identify(call: Call) -> dict[str, Any]:
    """`dock identify`: the act under the caller's name; the volume where the daemon docked
    it (the station's own path), or where the caller says it is now, read by the caller."""
    station = dataclasses.replace(_as_caller(call), sign_acts=False)
    volume = _caller_volume(call, "volume")
    dock, recorder, reason = call.need("dock"), call.need("recorder"), call.need("reason")
    return ingest_and_store(
        station,
        lambda progress, on_clip: identify_dock(
            station, dock, recorder, reason, volume=volume, progress=progress, on_clip=on_clip
        ),
        call.progress,
    ).to_json()


def _prove(call: Call) -> dict[str, Any]:
    """A clip's inclusion proofs, logged as made for the caller; the caller writes the file."""
    from evidence_agent.services.audit.proofs import prove

    proof = prove(_as_caller(call), call.need("clip"))
    record_view(
        call.station,
        call.caller,
        EventType.CLIP_PROVED,
        subject_kind=Subject.CLIP,
        subject_id=proof["clip"],
        data={"tree_size": proof["tree_size"], "events": len(proof["events"])},
    )
    return proof


def _audit_export(call: Call) -> dict[str, Any]:
    """The audit bundle written where the caller named, by the caller's process when they came
    through the daemon; the export event names the caller."""
    from evidence_agent.services.audit.export import export_bundle

    dest = Path(call.need("directory"))
    output = call.output(str(dest.parent))
    return export_bundle(_as_caller(call), dest, output=output).to_json()


def _verify(call: Call) -> Outcome:
    """The station's custody chain verified against the caller's anchors (read by the caller);
    a failed audit ends with its exit code, after the report."""
    from evidence_agent.services.audit.trusted_files import Anchors
    from evidence_agent.services.audit.verify_station import verify_station

    anchors = Anchors(
        call.text("trusted_checkpoint"),
        call.text("trusted_key"),
        call.text("trusted_checkpoint_name") or "trusted checkpoint",
    )
    report = verify_station(call.station, anchors=anchors)
    if report.intact:
        return report.to_json(), None
    failed = EvidenceError("the custody audit failed: see its report")
    failed.exit_code = report.exit_code
    return report.to_json(), failed


# ---------------------------------------------------------------- legal review


def _working_days(call: Call) -> int:
    value = call.fields.get("days")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError("days: expected a whole number of working days")
    return value


_LEGAL_REVIEW = (
    Operation(
        "legal-review.request",
        Action.LEGAL_REVIEW_REQUEST,
        lambda c: legal_review.request_review(
            c.station,
            c.caller,
            c.need("case"),
            c.text("reason") or "",
            override_incomplete=c.flag("override_incomplete"),
        ),
        (Subject.CASE, "case"),
        writes=True,
    ),
    Operation(
        "legal-review.extend",
        Action.LEGAL_REVIEW_OPINION,
        lambda c: legal_review.extend_review(
            c.station, c.caller, c.need("case"), _working_days(c), c.text("reason") or ""
        ),
        (Subject.CASE, "case"),
        writes=True,
    ),
    Operation(
        "legal-review.opinion",
        Action.LEGAL_REVIEW_OPINION,
        lambda c: legal_review.give_opinion(
            c.station, c.caller, c.need("case"), c.need("opinion"), c.text("reason") or ""
        ),
        (Subject.CASE, "case"),
        writes=True,
    ),
    Operation(
        "legal-review.list",
        Action.CLOCKS_READ,
        lambda c: legal_review.list_reviews(c.station, c.caller, pending=c.flag("pending")),
    ),
)


_CASE = (Subject.CASE, "number")
_CLIP = (Subject.CLIP, "clip")
_RECORDER = (Subject.RECORDER, "serial")
_DOCK = (Subject.DOCK, "dock")

OPERATIONS: Mapping[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "case.create",
            Action.CASE_WRITE,
            lambda c: cases.create_case(c.station, c.caller, _case_input(c), c.text("reason")),
            _CASE,
            writes=True,
        ),
        Operation(
            "case.list",
            Action.CASE_READ,
            lambda c: cases.list_cases(c.station, c.caller, c.text("state")),
        ),
        Operation(
            "case.show",
            Action.CASE_READ,
            lambda c: cases.show_case(c.station, c.caller, c.need("number")),
            _CASE,
        ),
        Operation(
            "case.close",
            Action.CASE_WRITE,
            lambda c: cases.close_case(
                c.station,
                c.caller,
                c.need("number"),
                c.text("reason"),
                override_incomplete=c.flag("override_incomplete"),
            ),
            _CASE,
            writes=True,
        ),
        Operation(
            "case.link",
            Action.CASE_WRITE,
            lambda c: cases.link_clips(
                c.station, c.caller, c.need("number"), c.texts("clips"), c.text("reason")
            ),
            _CASE,
            writes=True,
        ),
        Operation(
            "case.unlink",
            Action.CASE_WRITE,
            lambda c: cases.unlink_clips(
                c.station, c.caller, c.need("number"), c.texts("clips"), c.text("reason")
            ),
            _CASE,
            writes=True,
        ),
        Operation("case.suggest", Action.CASE_READ, _suggest, _CASE),
        Operation(
            "case.check",
            Action.CASE_READ,
            lambda c: cases.check_case(c.station, c.caller, c.need("number"))[0],
            _CASE,
        ),
        Operation("case.attach", Action.CASE_WRITE, _attach, _CASE, writes=True),
        # An officer may search too, their own footage only: search_scope narrows it.
        Operation("clips.search", Action.SEARCH_OWN, _search),
        Operation("retrieve", Action.RETRIEVE, _retrieve),
        # The station's own listings, for people who reach it through the local API (run on
        # the station itself by its owner, `clips list` and `status` check no role).
        Operation("clips.list", Action.SEARCH, _clips_list),
        Operation("status", Action.STATUS, lambda c: station_status(c.station)),
        Operation("access-log", Action.ACCESS_LOG, _access_log),
        Operation(
            "retention.due", Action.RETENTION_READ, lambda c: retention.due(c.station, c.caller)
        ),
        Operation(
            "retention.request",
            Action.RETENTION_REQUEST,
            lambda c: retention.request_deletion(
                c.station, c.caller, c.need("clip"), c.text("reason")
            ),
            _CLIP,
            writes=True,
        ),
        Operation("retention.delete", Action.RETENTION_APPROVE, _delete, _CLIP, writes=True),
        Operation(
            "retention.hold",
            Action.RETENTION_HOLD,
            lambda c: retention.set_hold(
                c.station,
                c.caller,
                c.texts("clips"),
                c.text("case"),
                c.text("reason"),
                release=c.flag("release"),
            ),
            writes=True,
        ),
        Operation(
            "retention.mark",
            Action.RETENTION_HOLD,
            lambda c: retention.mark_ground(
                c.station, c.caller, c.need("clip"), c.need("ground"), c.text("reason")
            ),
            _CLIP,
            writes=True,
        ),
        Operation("recorders.enroll", Action.RECORDER_REGISTER, _enroll, _RECORDER, writes=True),
        Operation("recorders.assign", Action.RECORDER_REGISTER, _assign, _RECORDER, writes=True),
        Operation(
            "recorders.unassign", Action.RECORDER_REGISTER, _unassign, _RECORDER, writes=True
        ),
        # A volume brought to the station by a person through the local API says whose
        # footage it is (by --recorder, or by what is on it): the people at the desk.
        Operation(
            "ingest", Action.RECORDER_NAME, _ingest, (Subject.RECORDER, "recorder"), writes=True
        ),
        Operation("dock.identify", Action.RECORDER_NAME, _identify, _DOCK, writes=True),
        # Who held which recorder when: the people who may read clips' attribution.
        Operation("recorders.list", Action.SEARCH, _recorders, _RECORDER),
        Operation("prove", Action.PROVE, _prove, _CLIP),
        Operation("audit.export", Action.AUDIT_EXPORT, _audit_export),
        # Through the daemon only: on the station itself its owner verifies without a role.
        Operation("verify", Action.VERIFY, _verify),
        *_LEGAL_REVIEW,
    )
}


def operation(name: str, table: Mapping[str, Operation] = OPERATIONS) -> Operation:
    try:
        return table[name]
    except KeyError:
        raise InputError(f"{name!r} is not an operation of the station") from None


def perform(
    station: Station,
    identity: Identity,
    name: str,
    fields: Mapping[str, Any],
    *,
    target: Callable[[str], Target],
    source: Callable[[str], BinaryIO | None],
    output: Callable[[str], OutputDirectory] = lambda path: LocalDirectory(Path(path)),
    volume: Callable[[str], VolumeSource] | None = None,
    progress: ProgressCallback | None = None,
    table: Mapping[str, Operation] = OPERATIONS,
) -> Outcome:
    """Run operation `name` of `table` as `identity`: their roles from the station's roles
    file, the operation's action checked (a refusal logged under their name), then its
    service. A layer above review passes its own table (review's operations and its own)."""
    op = operation(name, table)
    review = load_station_roles(station.settings.data_dir)
    caller = caller_for(identity, review.roles)
    if not decide(caller.roles, op.action).allowed:
        kind, field = op.subject
        subject = fields.get(field) if field else None
        reason = fields.get("reason")
        require(
            station,
            caller,
            op.action,
            subject_kind=kind if isinstance(subject, str) else Subject.STATION,
            subject_id=subject[:64] if isinstance(subject, str) else None,
            reason=reason.strip() if isinstance(reason, str) else "",
        )
    call = Call(station, caller, review, fields, target, source, output, volume, progress)
    result = op.run(call)
    if isinstance(result, tuple):
        return result
    return result, None


def passed_source(take_fd: Callable[[], int]) -> Callable[[str], BinaryIO | None]:
    """Files the caller's process opened and passed, in the order the request names them."""

    def source(_name: str) -> BinaryIO:
        return os.fdopen(take_fd(), "rb")

    return source


def api_handler(station: Station, table: Mapping[str, Operation] = OPERATIONS) -> Handler:
    """The daemon's answer to local API requests: each operation run as the caller the kernel
    named, after the roles file is checked for a change to log."""
    # A person's acts each end with a signed checkpoint, as when they run a command on the
    # station themselves; the daemon's own station signs docks in batches. Same engine, store,
    # writer lock and custody log: the same station, signing acts.
    station = dataclasses.replace(station, sign_acts=True)
    watch = RolesWatch(station)
    watch.check()

    def handle(identity: Identity, name: str, fields: Mapping[str, Any], peer: Peer) -> Outcome:
        if name == RECORD_ROLES_EDIT:
            # Root's own edit, logged under root's name; the kernel, not a role, says who may.
            caller = caller_for(identity, load_station_roles(station.settings.data_dir).roles)
            edit = RolesEdit.from_json(fields)
            return watch.record_edit(caller, peer.login_user(), edit), None
        watch.check()
        return perform(
            station,
            identity,
            name,
            fields,
            target=peer.target,
            source=passed_source(peer.take_fd),
            output=peer.output,
            volume=peer.volume,
            progress=peer.progress,
            table=table,
        )

    return handle
