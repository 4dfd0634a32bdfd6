"""`evidence-agent recorders ...`: the recorder registry (enrol, assign, unassign, list, show)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from evidence_agent.cli.common import JsonOption, emit_json, settings_of
from evidence_agent.cli.display import write_line
from evidence_agent.cli.review import run_operation

recorders_app = typer.Typer(
    help="The recorder registry: which recorders are enrolled and who holds each.",
    no_args_is_help=True,
)

ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (required): it goes into the custody log.")
]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        help="When it took effect, ISO 8601 with offset (default now), e.g. 2026-11-20T08:00+08:00.",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(recorders_app, name="recorders")


def _show(ctx: typer.Context, view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(view)
    else:
        _print(view, settings_of(ctx))


def _print(data: dict[str, Any], settings: Any, *, detail: bool = False) -> None:
    from evidence_agent.cli.display import local_time

    tz = settings.tz
    out = sys.stdout
    usb = data["usb_serial"] or "-"
    ids = ":".join(x for x in (data["usb_vendor_id"], data["usb_model_id"]) if x)
    holder = data["assigned_to"]
    holder_text = (
        f"officer {holder['officer']} since {local_time(holder['start'], tz)}"
        if holder
        else "unassigned"
    )
    write_line(
        out,
        f"{data['serial']:<12} {'enrolled' if data['enrolled'] else 'seen':<9} usb {usb}"
        f"{' (' + ids + ')' if ids else ''}  {holder_text}  "
        f"last docked {local_time(data['last_docked_at'], tz)}",
    )
    if data["undocked_hours"] is not None:
        write_line(out, f"  warning: not docked for {data['undocked_hours']:.1f} hours")
    if not detail:
        return
    write_line(out, "  assignments:" if data["history"] else "  no assignments")
    for a in data["history"]:
        end = local_time(a["end"], tz) if a["end"] else "now"
        write_line(
            out,
            f"    {local_time(a['start'], tz)} - {end}  officer {a['officer']}"
            f"  by {a['actor']}: {a['reason']}",
        )
    if data["docks"]:
        write_line(out, "  latest docks:")
    for d in data["docks"]:
        skew = d["clock_skew_seconds"]
        skew_text = f"  clock {skew:+.0f} s" if skew is not None else ""
        write_line(
            out,
            f"    {local_time(d['started_at'], tz)}  {d['source']:<6} {d['state']:<11} "
            f"{d['clips_new']} new, {d['clips_known']} known{skew_text}",
        )
        for w in d["warnings"]:
            write_line(out, f"      warning: {w}")
        if d["error"]:
            write_line(out, f"      {d['error']}")


@recorders_app.command("enroll")
def enroll(
    ctx: typer.Context,
    serial: Annotated[str, typer.Argument(help="The recorder's serial (as in its identity file).")],
    reason: ReasonOption,
    usb_serial: Annotated[
        str | None,
        typer.Option(
            "--usb-serial",
            help="Its USB serial (ID_SERIAL_SHORT in `udevadm info`): docked, it is recognised by it.",
        ),
    ] = None,
    vendor_id: Annotated[
        str | None,
        typer.Option("--vendor-id", help="Its USB vendor id (4 hex digits), checked at each dock."),
    ] = None,
    model_id: Annotated[
        str | None,
        typer.Option("--model-id", help="Its USB model id (4 hex digits), checked at each dock."),
    ] = None,
    vendor: Annotated[str | None, typer.Option(help="Maker, for people.")] = None,
    model: Annotated[str | None, typer.Option(help="Model, for people.")] = None,
    unit: Annotated[str | None, typer.Option(help="Unit code the recorder belongs to.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Enrol a recorder; two recorders can never claim the same USB serial."""
    fields = {
        "serial": serial,
        "reason": reason,
        "usb_serial": usb_serial,
        "vendor_id": vendor_id,
        "model_id": model_id,
        "vendor": vendor,
        "model": model,
        "unit": unit,
    }
    _show(ctx, run_operation(ctx, "recorders.enroll", fields), as_json)


@recorders_app.command("list")
def list_(
    ctx: typer.Context,
    enrolled: Annotated[
        bool,
        typer.Option("--enrolled", help="Only enrolled recorders, not those only seen at ingest."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Every recorder with its holder, last dock and an undocked warning."""
    views = run_operation(ctx, "recorders.list", {"enrolled": enrolled})
    if as_json:
        emit_json(views)
        return
    if not views:
        sys.stdout.write("no recorders\n")
    for view in views:
        _print(view, settings_of(ctx))


@recorders_app.command("show")
def show(
    ctx: typer.Context,
    serial: Annotated[str, typer.Argument(help="Recorder serial.")],
    as_json: JsonOption = False,
) -> None:
    """A recorder with its assignment history and its latest docks (clock drift, warnings)."""
    view = run_operation(ctx, "recorders.list", {"serial": serial})
    if as_json:
        emit_json(view)
    else:
        _print(view, settings_of(ctx), detail=True)


@recorders_app.command("assign")
def assign(
    ctx: typer.Context,
    serial: Annotated[str, typer.Argument(help="Recorder serial.")],
    badge: Annotated[str, typer.Argument(help="Officer badge number.")],
    reason: ReasonOption,
    at: AtOption = None,
    name: Annotated[str | None, typer.Option(help="Officer's name, if new to the catalog.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Hand a recorder to an officer; footage recorded from then on is attributed to them."""
    fields = {"serial": serial, "badge": badge, "reason": reason, "at": at, "name": name}
    _show(ctx, run_operation(ctx, "recorders.assign", fields), as_json)


@recorders_app.command("unassign")
def unassign(
    ctx: typer.Context,
    serial: Annotated[str, typer.Argument(help="Recorder serial.")],
    reason: ReasonOption,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """End a recorder's current assignment."""
    fields = {"serial": serial, "reason": reason, "at": at}
    _show(ctx, run_operation(ctx, "recorders.unassign", fields), as_json)
