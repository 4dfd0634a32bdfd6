"""The `evidence-agent disclose` and `redact` commands: requests, decisions, packages, derivatives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from evidence_agent.cli.common import JsonOption
from evidence_agent.cli.review import ReasonOption, emit, run_operation

disclose_app = typer.Typer(
    help="Disclosure: evidence handed to a court, prosecutor or review body as a verifiable "
    "package, under a second person's approval, with a record kept.",
    no_args_is_help=True,
)


def _text(d: dict[str, Any]) -> str:
    lines = [
        f"disclosure {d['id']}: {d['state']}",
        f"  recipient     {d['recipient']}",
        f"  case          {d['case'] or '-'}",
        f"  clips         {len(d['clips'])}   documents {len(d['documents'])}",
        f"  reason        {d['reason']}",
        f"  requested by  {d['requested_by']} at {d['requested_at']}",
    ]
    if d["decided_by"]:
        lines.append(
            f"  decided by    {d['decided_by']} at {d['decided_at']}: {d['decision_reason']}"
        )
    if d["earlier"]:
        lines.append(f"  earlier disclosures to this recipient: {', '.join(d['earlier'])}")
    if d["package"]:
        lines.append(f"  package       {d['package']}")
        lines.append(f"  package hash  {d['package_sha256']} (SHA-256 of its tag manifest)")
    return "\n".join(lines) + "\n"


@disclose_app.command("request")
def request(
    ctx: typer.Context,
    recipient: Annotated[str, typer.Option("--recipient", help="Who receives the evidence.")],
    clips: Annotated[
        list[str] | None, typer.Argument(help="Clip ids, id prefixes or SHA-256.")
    ] = None,
    case: Annotated[
        str | None, typer.Option(help="A case: its linked footage and attached documents.")
    ] = None,
    derivative: Annotated[
        list[str] | None,
        typer.Option("--derivative", help="A redacted derivative, made (repeat for several)."),
    ] = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask for a disclosure of a case, chosen clips or redacted derivatives to a recipient."""
    fields = {
        "recipient": recipient,
        "reason": reason,
        "case": case,
        "clips": clips or [],
        "derivatives": derivative or [],
    }
    shown = run_operation(ctx, "disclose.request", fields)
    emit(as_json, shown, _text(shown))


def _decide(
    ctx: typer.Context, disclosure: str, reason: str | None, as_json: bool, approve: bool
) -> None:
    name = "disclose.approve" if approve else "disclose.refuse"
    shown = run_operation(ctx, name, {"disclosure": disclosure, "reason": reason})
    emit(as_json, shown, _text(shown))


DisclosureArgument = Annotated[str, typer.Argument(help="Disclosure id or a unique prefix.")]


@disclose_app.command("approve")
def approve(
    ctx: typer.Context,
    disclosure: DisclosureArgument,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a disclosure someone else requested (supervisors; never one's own)."""
    _decide(ctx, disclosure, reason, as_json, approve=True)


@disclose_app.command("refuse")
def refuse(
    ctx: typer.Context,
    disclosure: DisclosureArgument,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Refuse a disclosure someone else requested (supervisors)."""
    _decide(ctx, disclosure, reason, as_json, approve=False)


@disclose_app.command("produce")
def produce(
    ctx: typer.Context,
    disclosure: DisclosureArgument,
    to: Annotated[Path, typer.Option("--to", help="The package directory: a new one.")],
    as_json: JsonOption = False,
) -> None:
    """Write an approved disclosure as a BagIt package with proofs, verifier and receipts.

    Exit 3 when a stored copy fails its hash: no package is left."""
    # Written by this process, with the caller's rights, here or through the daemon: the
    # daemon copies each clip through a descriptor this process opened.
    bag = to.absolute()
    fields = {"disclosure": disclosure, "to": str(bag)}
    shown = run_operation(ctx, "disclose.produce", fields, output=bag)
    emit(as_json, shown, _text(shown))


@disclose_app.command("list")
def list_(
    ctx: typer.Context,
    recipient: Annotated[str | None, typer.Option(help="Only those to this recipient.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Disclosures, oldest first: requested, approved, refused and produced."""
    rows = run_operation(ctx, "disclose.list", {"recipient": recipient})
    emit(as_json, rows, "".join(_text(d) for d in rows) or "no disclosures\n")


@disclose_app.command("show")
def show(ctx: typer.Context, disclosure: DisclosureArgument, as_json: JsonOption = False) -> None:
    """One disclosure with the manifests kept of its package."""
    shown = run_operation(ctx, "disclose.show", {"disclosure": disclosure})
    text = _text(shown) + (shown["manifest"] or "")
    emit(as_json, shown, text)


redact_app = typer.Typer(
    help="Redacted derivatives: a clip re-encoded by ffmpeg from a plan (blur boxes and mutes "
    "over time ranges, a trim), approved by a second person, kept beside its original.",
    no_args_is_help=True,
)


def _derivative_text(d: dict[str, Any]) -> str:
    lines = [
        f"derivative {d['id']} of clip {d['clip']}: {d['state']}",
        f"  plan          {json.dumps(d['plan'])} (SHA-256 {d['plan_sha256']})",
        f"  requested by  {d['requested_by']} at {d['requested_at']}: {d['reason']}",
    ]
    if d["decided_by"]:
        lines.append(f"  decided by    {d['decided_by']} at {d['decided_at']}")
    if d["sha256"]:
        lines.append(f"  made          {d['sha256']} ({d['size']} bytes) by {d['tool']}")
    return "\n".join(lines) + "\n"


@redact_app.command("request")
def redact_request(
    ctx: typer.Context,
    clip: Annotated[str, typer.Argument(help="Clip id, id prefix or SHA-256.")],
    plan: Annotated[
        Path, typer.Option("--plan", help="The plan, a JSON file (docs/disclosure.md).")
    ],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask for a redacted derivative of a clip by a plan (clerks, supervisors)."""
    fields = {"clip": clip, "plan": str(plan), "reason": reason}
    # The plan is read by this process, with the caller's rights.
    shown = run_operation(ctx, "redact.request", fields, files=[plan])
    emit(as_json, shown, _derivative_text(shown))


def _decide_derivative(
    ctx: typer.Context, derivative: str, reason: str | None, as_json: bool, approve: bool
) -> None:
    name = "redact.approve" if approve else "redact.refuse"
    shown = run_operation(ctx, name, {"derivative": derivative, "reason": reason})
    emit(as_json, shown, _derivative_text(shown))


DerivativeArgument = Annotated[str, typer.Argument(help="Derivative id or a unique prefix.")]


@redact_app.command("approve")
def redact_approve(
    ctx: typer.Context,
    derivative: DerivativeArgument,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a derivative's plan someone else requested (supervisors)."""
    _decide_derivative(ctx, derivative, reason, as_json, approve=True)


@redact_app.command("refuse")
def redact_refuse(
    ctx: typer.Context,
    derivative: DerivativeArgument,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Refuse a derivative's plan someone else requested (supervisors)."""
    _decide_derivative(ctx, derivative, reason, as_json, approve=False)


@redact_app.command("make")
def redact_make(
    ctx: typer.Context, derivative: DerivativeArgument, as_json: JsonOption = False
) -> None:
    """Make an approved derivative with ffmpeg and keep it in the store; exit 3 when the
    original fails its ingest hash."""
    shown = run_operation(ctx, "redact.make", {"derivative": derivative})
    emit(as_json, shown, _derivative_text(shown))


def register(app: typer.Typer) -> None:
    """Add `disclose` and `redact` to the `evidence-agent` command."""
    app.add_typer(disclose_app, name="disclose")
    app.add_typer(redact_app, name="redact")
