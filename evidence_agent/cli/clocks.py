"""The commands of the three systems' clocks: legal review, public notices, statistics."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from evidence_agent.cli.common import JsonOption
from evidence_agent.cli.display import text_lines
from evidence_agent.cli.review import ReasonOption, emit, run_operation
from evidence_agent.errors import InputError

legal_review_app = typer.Typer(
    help="Legal review of a case before its decision (7 working days).", no_args_is_help=True
)
notice_app = typer.Typer(
    help="Public notices of decisions: due, published, withdrawn; the site.", no_args_is_help=True
)
statistics_app = typer.Typer(
    help="Statistics reports (annual: due by 31 January).", no_args_is_help=True
)

OverrideOption = Annotated[
    bool,
    typer.Option(
        "--override-incomplete",
        help="Send a full-recording case whose footage has gaps (the reason is logged).",
    ),
]


def _day(text: str | None, what: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError as e:
        raise InputError(f"{what} {text!r} is not a date", remedy="use YYYY-MM-DD") from e


def _out(as_json: bool, value: Any, lines: list[str]) -> None:
    emit(as_json, value, text_lines(lines))


def review_line(r: dict[str, Any]) -> str:
    if r["opinion"]:
        return (
            f"case {r['case']}: {r['opinion']} on {r['given_on']} ({r['state']}, "
            f"{r['working_days_taken']} working day(s); due {r['due']})"
        )
    left = r["working_days_left"]
    when = f"{left} working day(s) left" if left >= 0 else f"{-left} working day(s) overdue"
    return f"case {r['case']}: review due {r['due']} ({r['state']}, {when})"


# ---------------------------------------------------------------- legal review


@legal_review_app.command("request")
def review_request(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="Case number.")],
    reason: ReasonOption = None,
    override_incomplete: OverrideOption = False,
    as_json: JsonOption = False,
) -> None:
    """Send a case, with its case file, for legal review; the reviewer has 7 working days. A
    full-recording case with gaps is refused (exit 6) unless overridden with a reason."""
    fields = {"case": case, "reason": reason, "override_incomplete": override_incomplete}
    result = run_operation(ctx, "legal-review.request", fields)
    _out(as_json, result, [review_line(result)])


@legal_review_app.command("extend")
def review_extend(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="Case number.")],
    days: Annotated[int, typer.Option("--days", help="Working days more (1-60).")],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Extend the pending review of a case by some working days, with a reason (reviewer)."""
    fields = {"case": case, "days": days, "reason": reason}
    result = run_operation(ctx, "legal-review.extend", fields)
    _out(as_json, result, [review_line(result)])


@legal_review_app.command("opinion")
def review_opinion(
    ctx: typer.Context,
    case: Annotated[str, typer.Argument(help="Case number.")],
    opinion: Annotated[str, typer.Option("--opinion", help="agree, correct or refer_back.")],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give the legal opinion on a case, its reasons in --reason (reviewer role only)."""
    fields = {"case": case, "opinion": opinion, "reason": reason}
    result = run_operation(ctx, "legal-review.opinion", fields)
    _out(as_json, result, [review_line(result)])


@legal_review_app.command("list")
def review_list(
    ctx: typer.Context,
    pending: Annotated[bool, typer.Option("--pending", help="Only those waiting.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Legal reviews, soonest due first, with their working-day clocks."""
    rows = run_operation(ctx, "legal-review.list", {"pending": pending})
    _out(as_json, rows, [review_line(r) for r in rows] or ["no legal reviews"])


# ---------------------------------------------------------------- notices


def notice_line(n: dict[str, Any]) -> str:
    line = f"notice {n['number']} ({n['kind']}, decided {n['decision_date']}): "
    if n["published_on"]:
        line += f"published {n['published_on']} ({n['publication']}; due {n['due']})"
    else:
        line += f"{n['publication']}, due {n['due']}"
    if n["withdrawal_due"]:
        done = f"withdrawn {n['withdrawn_on']}" if n["withdrawn_on"] else "not withdrawn"
        line += (
            f"; revoked {n['revoked_on']}, {done} ({n['withdrawal']}; due {n['withdrawal_due']})"
        )
    return line


@notice_app.command("add")
def notice_add(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="The decision's document number.")],
    kind: Annotated[str, typer.Option("--kind", help="penalty, licence or other.")],
    title: Annotated[str, typer.Option("--title", help="The notice's title.")],
    text_file: Annotated[
        Path, typer.Option("--text-file", help="The decision's text (UTF-8), as written.")
    ],
    decided: Annotated[str, typer.Option("--decided", help="Decision date, YYYY-MM-DD.")],
    person: Annotated[
        list[str] | None,
        typer.Option("--person", help="A natural person named: party or third party (repeat)."),
    ] = None,
    minor: Annotated[
        bool, typer.Option("--minor", help="A minor is concerned: never published.")
    ] = False,
    case: Annotated[str | None, typer.Option("--case", help="The case it decides.")] = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a decision to be made public: due in 7 working days (licence, penalty) or 20."""
    fields = {
        "number": number,
        "kind": kind,
        "title": title,
        "text_file": str(text_file),
        "decided": (_day(decided, "decision date") or date.min).isoformat(),
        "persons": person or [],
        "minor": minor,
        "case": case,
        "reason": reason,
    }
    # The decision's text is read by this process, with the caller's rights.
    result = run_operation(ctx, "notice.add", fields, files=[text_file])
    _out(as_json, result, [notice_line(result)])


@notice_app.command("publish")
def notice_publish(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Notice number.")],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish a notice with its personal data taken out (a minor's never)."""
    result = run_operation(ctx, "notice.publish", {"number": number, "reason": reason})
    _out(as_json, result, [notice_line(result)])


@notice_app.command("revoke")
def notice_revoke(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Notice number.")],
    on: Annotated[
        str | None, typer.Option("--on", help="Day of the revocation (today by default).")
    ] = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record that the decision was revoked: its notice must come down in 3 working days."""
    day = _day(on, "revocation day")
    fields = {"number": number, "on": day.isoformat() if day else None, "reason": reason}
    result = run_operation(ctx, "notice.revoke", fields)
    _out(as_json, result, [notice_line(result)])


@notice_app.command("withdraw")
def notice_withdraw(
    ctx: typer.Context,
    number: Annotated[str, typer.Argument(help="Notice number.")],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take a published notice down."""
    result = run_operation(ctx, "notice.withdraw", {"number": number, "reason": reason})
    _out(as_json, result, [notice_line(result)])


@notice_app.command("list")
def notice_list(
    ctx: typer.Context,
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only those not published or withdrawn in time.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Notices with their publication and withdrawal clocks."""
    rows = run_operation(ctx, "notice.list", {"overdue": overdue})
    _out(as_json, rows, [notice_line(n) for n in rows] or ["no notices"])


@notice_app.command("export")
def notice_export(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Where to write index.html and feed.json.")],
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the publication platform's static site and JSON feed (redacted notices only)."""
    # Written by this process, with the caller's rights, here or through the daemon.
    fields = {"directory": str(directory.absolute()), "reason": reason}
    result = run_operation(ctx, "notice.export", fields, output=directory.absolute())
    _out(as_json, result, [f"{result['notices']} notice(s) written to {result['directory']}"])


# ---------------------------------------------------------------- statistics


@statistics_app.command("report")
def statistics_report(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory for the HTML, CSV and JSON.")],
    year: Annotated[int | None, typer.Option("--year", help="The annual report of a year.")] = None,
    since: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD.")] = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Statistics of recording practice, legal review and notices for a year or a period;
    the files' hashes go into the custody log."""
    first, last = _day(since, "--from"), _day(until, "--to")
    if year is not None and first is None and last is None:
        start, end = f"{year:04d}-01-01", f"{year:04d}-12-31"
    elif year is None and first is not None and last is not None and first <= last:
        start, end = first.isoformat(), last.isoformat()
    else:
        raise InputError("give --year, or --from and --to (--to not before --from)")
    # Written by this process, with the caller's rights, here or through the daemon.
    fields = {
        "directory": str(out.absolute()),
        "year": year,
        "from": None if year is not None else start,
        "to": None if year is not None else end,
        "reason": reason,
    }
    result = run_operation(ctx, "statistics.report", fields, output=out.absolute())
    lines = [f"statistics {start} to {end} written to {result['directory']}"]
    lines += [f"  {name}  sha256 {digest}" for name, digest in result["files"].items()]
    _out(as_json, {k: result[k] for k in ("directory", "files")}, lines)


def clocks_text(clocks: dict[str, Any]) -> str:
    """The lines of `status` for legal reviews, notices and the annual statistics."""
    reviews, notices, annual = (
        clocks["legal_reviews"],
        clocks["notices"],
        clocks["annual_statistics"],
    )
    lines = calendar_lines(clocks["calendar"])
    lines.append(f"legal reviews waiting: {len(reviews)}")
    lines += [("  OVERDUE " if r["state"] == "overdue" else "  ") + review_line(r) for r in reviews]
    lines.append(f"notices to publish or withdraw: {len(notices)}")
    lines += [("  OVERDUE " if n["overdue"] else "  ") + notice_line(n) for n in notices]
    if annual["produced"] or annual["owed"]:
        state = "produced" if annual["produced"] else ("OVERDUE" if annual["overdue"] else "due")
        lines.append(f"annual statistics {annual['year']}: {state} (due {annual['due']})")
    else:
        lines.append(
            f"annual statistics {annual['year']}: not owed (nothing catalogued before "
            f"{annual['year'] + 1})"
        )
    return text_lines(lines)


def calendar_lines(gaps: list[dict[str, Any]]) -> list[str]:
    """The warning of deadlines the working-day calendar cannot count yet (clocks_due)."""
    if not gaps:
        return []
    year = gaps[0]["year"]
    lines = [
        f"warning: the working-day calendar does not know {year}: add its official holidays "
        "and adjusted working days to [calendar] in the configuration (docs/clocks.md); "
        "until then a deadline counted from these days on is refused (exit 4):"
    ]
    lines += [f"  from {g['refused_from']}: {g['what']}" for g in gaps]
    return lines


def register(app: typer.Typer) -> None:
    app.add_typer(legal_review_app, name="legal-review")
    app.add_typer(notice_app, name="notice")
    app.add_typer(statistics_app, name="statistics")
