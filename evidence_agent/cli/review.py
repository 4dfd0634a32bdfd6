"""The review commands of `evidence-agent`: cases, clip search, retrieval, access log, retention."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evidence_agent.cli.common import (
    JsonOption,
    can_open,
    emit_json,
    open_station,
    root_context,
)
from evidence_agent.cli.display import text_lines
from evidence_agent.errors import ExitCode, IncompleteError, InputError

if TYPE_CHECKING:
    from review.operations import Outcome

case_app = typer.Typer(
    help="Case files: cases, their footage and documents, completeness.", no_args_is_help=True
)
retention_app = typer.Typer(
    help="Retention: clips past retention, approved deletion, legal hold.", no_args_is_help=True
)

ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why (kept in the custody log).")
]


def call_operation(
    ctx: typer.Context,
    name: str,
    fields: dict[str, Any],
    *,
    target: Path | None = None,
    output: Path | None = None,
    files: Sequence[Path] = (),
) -> Outcome:
    """Run a review operation (review/operations.py) as the calling OS user: on the station
    opened here, or, where this account cannot open the station's data directory (a station
    installed as a service), by the daemon over its local API, which names the caller from the
    kernel. Either way the same operation, guard and result. `target`, `output`: the
    directories the operation writes (a retrieval's, a command's output), written by this
    process either way; `files`: those it reads."""
    settings = root_context(ctx).settings
    if not can_open(settings.data_dir):
        from evidence_agent.services.local_api import call

        return call(settings.api_socket, name, fields, target=target, output=output, files=files)
    from evidence_agent.adapters.os_accounts import current_identity
    from evidence_agent.services.copy_out import DirectoryTarget
    from evidence_agent.services.roles_changes import RolesWatch
    from publish.operations import STATION_OPERATIONS
    from review.operations import operation, perform

    op = operation(name, STATION_OPERATIONS)
    with open_station(ctx, create=op.writes) as station:
        RolesWatch(station).check()
        return perform(
            station,
            current_identity(),
            name,
            fields,
            target=lambda path: DirectoryTarget(Path(path)),
            source=lambda _name: None,
            table=STATION_OPERATIONS,
        )


def run_operation(ctx: typer.Context, name: str, fields: dict[str, Any], **kw: Any) -> Any:
    """An operation's result; its error, if it ended with one, raised."""
    result, error = call_operation(ctx, name, fields, **kw)
    if error is not None:
        raise error
    return result


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _tz(ctx: typer.Context) -> Any:
    return root_context(ctx).settings.tz


def parse_time(text: str | None, tz: Any) -> datetime | None:
    """ISO 8601; a time without an offset is read in the station's zone."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise InputError(
            f"{text!r} is not a time",
            remedy="use ISO 8601, e.g. 2026-11-22T09:30 or 2026-11-22T01:30Z",
        ) from e
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz) if tz is not None else value.astimezone()
    return value.astimezone(UTC)


def emit(as_json: bool, value: Any, text: str) -> None:
    if as_json:
        emit_json(value)
    else:
        sys.stdout.write(text)


# ---------------------------------------------------------------- case


@case_app.command("create")
def case_create(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Case number.")],
    enforcement_type: Annotated[
        str, typer.Option("--type", help="Enforcement type (see docs/review.md).")
    ],
    title: Annotated[str, typer.Option(help="Short title.")] = "",
    party: Annotated[
        list[str] | None, typer.Option("--party", help="A party (repeat for several).")
    ] = None,
    cause: Annotated[str, typer.Option("--cause", help="Cause of action.")] = "",
    unit: Annotated[str | None, typer.Option(help="Unit code.")] = None,
    officer: Annotated[
        list[str] | None, typer.Option("--officer", help="Badge of a handling officer (repeat).")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Action start (ISO 8601; station zone if no offset).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Action end: starts the 30-day case-file clock.")
    ] = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open a case: number, parties, cause, enforcement type, unit, handling officers, action window."""
    from evidence_agent.cli.review_tables import case_rows

    tz = _tz(ctx)
    fields = {
        "number": number,
        "title": title,
        "parties": party or [],
        "cause": cause,
        "type": enforcement_type,
        "unit": unit,
        "officers": officer or [],
        "start": _iso(parse_time(start, tz)),
        "end": _iso(parse_time(end, tz)),
        "reason": reason,
    }
    case = run_operation(ctx, "case.create", fields)
    emit(as_json, case, case_rows([case], tz))


@case_app.command("list")
def case_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="open or closed.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List cases, newest first."""
    from evidence_agent.cli.review_tables import case_rows

    cases = run_operation(ctx, "case.list", {"state": state})
    emit(as_json, cases, case_rows(cases, _tz(ctx)))


@case_app.command("show")
def case_show(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Case number.")],
    as_json: JsonOption = False,
) -> None:
    """A case with its footage and documents on one timeline, and the 30-day case-file clock."""
    from evidence_agent.cli.review_tables import case_text, clip_rows

    case = run_operation(ctx, "case.show", {"number": number})
    tz = _tz(ctx)
    emit(as_json, case, case_text(case, tz) + "footage:\n" + clip_rows(case["footage"], tz))


@case_app.command("close")
def case_close(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Case number.")],
    reason: ReasonOption = None,
    override_incomplete: Annotated[
        bool,
        typer.Option(
            "--override-incomplete",
            help="Close a full-recording case whose footage has gaps (the reason is logged).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Close a case: its file no longer changes. A case that needs full recording and is
    incomplete (`case check`) is refused (exit 6) unless overridden with a reason."""
    from evidence_agent.cli.review_tables import case_rows

    fields = {"number": number, "reason": reason, "override_incomplete": override_incomplete}
    case = run_operation(ctx, "case.close", fields)
    emit(as_json, case, case_rows([case], _tz(ctx)))


def _link_text(result: dict[str, Any], key: str) -> str:
    lines = [
        f"case {result['case']}: {len(result[key])} clip(s) {key}, {len(result['unchanged'])} unchanged"
    ]
    for change in result["retention_changes"]:
        lines.append(
            f"  clip {change['clip'][:8]}: retention {change['from']['class']} -> {change['to']['class']}"
            f" (store lock: {change['store_lock']})"
        )
    return text_lines(lines)


@case_app.command("link")
def case_link(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Case number.")],
    clips: Annotated[list[str], typer.Argument(help="Clip ids, unique id prefixes or SHA-256.")],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Link clips to a case (who, when and why are logged); linked footage is kept permanently."""
    result = run_operation(ctx, "case.link", {"number": number, "clips": clips, "reason": reason})
    emit(as_json, result, _link_text(result, "linked"))


@case_app.command("unlink")
def case_unlink(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Case number.")],
    clips: Annotated[list[str], typer.Argument(help="Clip ids, unique id prefixes or SHA-256.")],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Unlink clips from a case (logged); their retention follows from their remaining links."""
    result = run_operation(ctx, "case.unlink", {"number": number, "clips": clips, "reason": reason})
    emit(as_json, result, _link_text(result, "unlinked"))


@case_app.command("suggest")
def case_suggest(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Case number.")],
    margin: Annotated[float | None, typer.Option(help="Minutes around the action window.")] = None,
    link: Annotated[
        bool, typer.Option("--link", help="Link every suggested clip (needs --reason).")
    ] = False,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Candidate clips: the handling officers' footage around the action window, not yet linked."""
    from evidence_agent.cli.review_tables import clip_rows

    fields = {"number": number, "margin_minutes": margin, "link": link, "reason": reason}
    result = run_operation(ctx, "case.suggest", fields)
    rows, linked = result["suggested"], result["linked"]
    if as_json:
        emit_json({"suggested": rows, "linked": linked})
        return
    sys.stdout.write(clip_rows(rows, _tz(ctx)))
    if linked is not None:
        sys.stdout.write(_link_text(linked, "linked"))


@case_app.command("check")
def case_check(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Case number.")],
    as_json: JsonOption = False,
) -> None:
    """Completeness for legal review: gaps, overlaps, unlinked footage, 24-hour breaches.

    Exit 6 when a type that requires full-process recording is incomplete."""
    from evidence_agent.cli.review_tables import check_text

    result = run_operation(ctx, "case.check", {"number": number})
    emit(as_json, result, check_text(result, _tz(ctx)))
    if not result["complete"] and result.get("full_recording_required"):
        raise IncompleteError(f"case {number}: the recording of the action is not complete")


@case_app.command("attach")
def case_attach(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Case number.")],
    file: Annotated[
        Path, typer.Argument(help="A document of the case (decision, report, notice).")
    ],
    reason: ReasonOption = None,
    time: Annotated[str | None, typer.Option("--time", help="When the document was made.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Keep a case document in the store (by its SHA-256) and put it on the case's timeline."""
    fields = {
        "number": number,
        "file": str(file),
        "reason": reason,
        "time": _iso(parse_time(time, _tz(ctx))),
    }
    result = run_operation(ctx, "case.attach", fields, files=[file])
    emit(as_json, result, f"document {result['name']} kept as {result['sha256']}\n")


# ---------------------------------------------------------------- clips search


def clips_search(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option(help="Case number.")] = None,
    officer: Annotated[str | None, typer.Option(help="Officer badge.")] = None,
    recorder: Annotated[str | None, typer.Option(help="Recorder serial.")] = None,
    unit: Annotated[str | None, typer.Option(help="Unit code.")] = None,
    since: Annotated[str | None, typer.Option(help="Recorded at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Recorded before (ISO 8601).")] = None,
    cause: Annotated[
        str | None, typer.Option(help="Part of a linked case's cause of action.")
    ] = None,
    party: Annotated[str | None, typer.Option(help="Part of a linked case's party name.")] = None,
    important: Annotated[
        bool | None,
        typer.Option("--important/--not-important", help="Marked important on the recorder."),
    ] = None,
    state: Annotated[str | None, typer.Option(help="spooled, stored or deleted.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many clips.")] = 500,
    as_json: JsonOption = False,
) -> None:
    """Search clips by case, officer, recorder, unit, time window, cause, party, important, state."""
    from evidence_agent.cli.review_tables import clip_rows

    tz = _tz(ctx)
    fields = {
        "case": case,
        "officer": officer,
        "recorder": recorder,
        "unit": unit,
        "since": _iso(parse_time(since, tz)),
        "until": _iso(parse_time(until, tz)),
        "cause": cause,
        "party": party,
        "important": important,
        "state": state,
        "limit": limit,
    }
    rows = run_operation(ctx, "clips.search", fields)
    emit(as_json, rows, clip_rows(rows, tz))


# ---------------------------------------------------------------- retrieve and access log


def retrieve(
    ctx: typer.Context,
    to: Annotated[
        Path, typer.Option("--to", help="Directory to hand the verified copies over in.")
    ],
    clips: Annotated[
        list[str] | None, typer.Argument(help="Clip ids, id prefixes or SHA-256.")
    ] = None,
    case: Annotated[str | None, typer.Option(help="Every clip linked to this case.")] = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Supervised retrieval: verified copies of stored clips, with a receipt.

    Every retrieval and every refusal is logged with who, when, what and why.
    Exit 3 when a stored copy fails its hash: that clip is not handed over."""
    from evidence_agent.cli.review_tables import retrieval_text

    # Made absolute here: the daemon, which may run the operation, has another directory.
    target = Path(os.path.abspath(to))
    fields = {"clips": clips or [], "case": case, "target": str(target), "reason": reason}
    report, error = call_operation(ctx, "retrieve", fields, target=target)
    if report is not None:
        emit(as_json, report, retrieval_text(report))
    if error is not None:
        raise error


def access_log(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="At or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Before (ISO 8601).")] = None,
    actor: Annotated[str | None, typer.Option(help="An OS user (or user:NAME).")] = None,
    subject: Annotated[str | None, typer.Option(help="A clip id or case number.")] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Event types (default: views, retrievals, refusals)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="The newest this many entries.")] = 1000,
    as_json: JsonOption = False,
) -> None:
    """Who saw, retrieved or was refused what, when and why (supervisors and auditors)."""
    from evidence_agent.cli.review_tables import access_rows

    tz = _tz(ctx)
    fields = {
        "since": _iso(parse_time(since, tz)),
        "until": _iso(parse_time(until, tz)),
        "actor": actor,
        "subject": subject,
        "types": event_type or [],
        "limit": limit,
    }
    rows = run_operation(ctx, "access-log", fields)
    emit(as_json, rows, access_rows(rows, tz))


# ---------------------------------------------------------------- retention


@retention_app.command("due")
def retention_due(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Clips past retention (nothing expires by itself: each deletion needs approval)."""
    from evidence_agent.cli.review_tables import due_rows

    rows = run_operation(ctx, "retention.due", {})
    emit(as_json, rows, due_rows(rows, _tz(ctx)))


@retention_app.command("request")
def retention_request(
    ctx: typer.Context,
    clip: Annotated[str, typer.Argument(help="Clip id, id prefix or SHA-256.")],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask for the deletion of a clip past retention; a supervisor approves with `retention delete`."""
    result = run_operation(ctx, "retention.request", {"clip": clip, "reason": reason})
    r = result["request"]
    emit(
        as_json,
        result,
        f"deletion request #{r['id']} for clip {result['clip']} by {r['requested_by']}\n",
    )


@retention_app.command("delete")
def retention_delete(
    ctx: typer.Context,
    clip: Annotated[str, typer.Argument(help="Clip id, id prefix or SHA-256.")],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve (as a supervisor) the deletion of a clip past retention: tombstone, store removal."""
    result = run_operation(ctx, "retention.delete", {"clip": clip, "reason": reason})
    emit(
        as_json,
        result,
        f"clip {result['clip']} deleted (sha256 {result['sha256']}); "
        f"stored object: {result['store']}\n",
    )
    for warning in result["warnings"]:
        sys.stderr.write(f"warning: {warning}\n")
    if result["warnings"]:
        raise typer.Exit(int(ExitCode.WARNING))


@retention_app.command("hold")
def retention_hold(
    ctx: typer.Context,
    clips: Annotated[
        list[str] | None, typer.Argument(help="Clip ids, id prefixes or SHA-256.")
    ] = None,
    case: Annotated[str | None, typer.Option(help="Every clip linked to this case.")] = None,
    release: Annotated[bool, typer.Option("--release", help="Lift the hold instead.")] = False,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put clips under legal hold (no deletion while held), or release them."""
    fields = {"clips": clips or [], "case": case, "reason": reason, "release": release}
    changed = run_operation(ctx, "retention.hold", fields)
    verb = "released" if release else "held"
    emit(as_json, changed, f"{len(changed)} clip(s) {verb}\n")


@retention_app.command("mark")
def retention_mark(
    ctx: typer.Context,
    clip: Annotated[str, typer.Argument(help="Clip id, id prefix or SHA-256.")],
    ground: Annotated[
        str,
        typer.Option(help="obstruction, major_emergency, mass_incident or major_complex."),
    ],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record why a clip is kept permanently (obstruction, major emergency, mass incident, ...)."""
    fields = {"clip": clip, "ground": ground, "reason": reason}
    result = run_operation(ctx, "retention.mark", fields)
    emit(
        as_json,
        result,
        f"clip {result['clip']}: {result['retention_class']} ({', '.join(result['grounds'])})\n",
    )


# ---------------------------------------------------------------- registration


def register(app: typer.Typer) -> None:
    """Add the review commands to the `evidence-agent` command."""
    app.add_typer(case_app, name="case")
    app.add_typer(retention_app, name="retention")
    app.command("retrieve")(retrieve)
    app.command("access-log")(access_log)
    clips = next(
        (g.typer_instance for g in app.registered_groups if g.name == "clips" and g.typer_instance),
        None,
    )
    if clips is None:
        clips = typer.Typer(help="Clips in the catalog.", no_args_is_help=True)
        app.add_typer(clips, name="clips")
    clips.command("search")(clips_search)
