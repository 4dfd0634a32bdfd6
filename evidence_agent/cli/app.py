"""The `evidence-agent` command: parses arguments, calls services, turns errors into exit codes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import typer

from evidence_agent.cli import audit, clocks, disclose, recorders, review, roles, storage
from evidence_agent.cli.clocks import clocks_text
from evidence_agent.cli.common import (
    Context,
    JsonOption,
    can_open,
    emit_json,
    open_station,
    require_role,
    root_context,
    run_through_daemon,
)
from evidence_agent.cli.display import text_lines, write_line
from evidence_agent.config import Settings
from evidence_agent.custody.vocabulary import Subject
from evidence_agent.domain.identity import check_serial
from evidence_agent.domain.roles import Action
from evidence_agent.domain.states import ClipOutcome
from evidence_agent.domain.text import shown
from evidence_agent.errors import EvidenceError, ExitCode, InputError
from evidence_agent.io.volume_reader import volume_text

if TYPE_CHECKING:
    from evidence_agent.services.ingest import StoredIngest
    from evidence_agent.services.ingest_report import ClipCallback, IngestReport, ProgressCallback
    from evidence_agent.services.station import Station

app = typer.Typer(
    name="evidence-agent",
    help="Evidence ingestion for body-worn recorders: dock, hash, tag, store write-once, keep custody.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
clips_app = typer.Typer(help="Clips in the catalog.", no_args_is_help=True)
config_app = typer.Typer(help="The station configuration.", no_args_is_help=True)
dock_app = typer.Typer(help="Docks of recorder volumes.", no_args_is_help=True)
app.add_typer(clips_app, name="clips")
app.add_typer(config_app, name="config")
app.add_typer(dock_app, name="dock")
# The command groups besides the station's own commands below, each adding itself to the app.
for group in (recorders, review, audit, storage, clocks, disclose, roles):
    group.register(app)

log = logging.getLogger("evidence_agent")


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Configuration file (else $EVIDENCE_AGENT_CONFIG, else defaults).",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logs and tracebacks.")
    ] = False,
) -> None:
    ctx.obj = Context(config, verbose)
    _configure_logging("DEBUG" if verbose else "WARNING", verbose)


def _configure_logging(level: str, verbose: bool) -> None:
    """Our own logger only (never the root logger), to stderr; journald adds its own timestamps."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(_EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel("DEBUG" if verbose else level)
    log.propagate = False


class _EscapingFormatter(logging.Formatter):
    """A record's message on one line: file names, serials and reasons it quotes are escaped,
    so none can forge a log line or drive a terminal (a traceback follows on its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        escaped = logging.makeLogRecord(record.__dict__)
        escaped.message = shown(record.message)
        return super().formatMessage(escaped)


class _JournalFormatter(_EscapingFormatter):
    """sd-daemon priority prefixes so journald keeps each line's level."""

    _PRIORITY: ClassVar[dict[str, int]] = {
        "DEBUG": 7,
        "INFO": 6,
        "WARNING": 4,
        "ERROR": 3,
        "CRITICAL": 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self._PRIORITY.get(record.levelname, 6)}>{super().format(record)}"


# ---------------------------------------------------------------- ingest


@app.command()
def ingest(
    ctx: typer.Context,
    volume: Annotated[str, typer.Argument(help="A mounted recorder volume (a directory).")],
    recorder: Annotated[
        str | None,
        typer.Option("--recorder", help="Recorder serial, when the volume has no identity file."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest a mounted recorder volume: copy once, hash, tag, catalogue, store, verify."""
    from evidence_agent.services.ingest import ingest_volume

    if not volume:
        # Path("") is the current directory: an empty argument must not ingest wherever we are.
        raise InputError(
            "the volume path is empty", remedy="give the recorder volume's mount point"
        )
    path = Path(volume)
    if not path.is_dir():
        raise InputError(
            f"{volume_text(path)} is not a directory",
            remedy="give the mount point of the recorder volume",
        )
    if recorder is not None:
        check_serial(recorder, what="--recorder")
    settings = root_context(ctx).settings
    if not can_open(settings.data_dir):
        where = Path(os.path.abspath(path))
        fields = {"volume": str(where), "recorder": recorder}
        _ingest_through_daemon(settings, "ingest", fields, where, as_json)
        return

    def run(
        station: Station, progress: ProgressCallback | None, on_clip: ClipCallback
    ) -> IngestReport:
        if recorder is not None:  # the caller, not the volume, says whose footage it is
            _may_name_recorder(ctx, station, Subject.RECORDER, recorder)
        return ingest_volume(
            station, path, recorder_serial=recorder, progress=progress, on_clip=on_clip
        )

    _ingest_and_report(ctx, path, as_json, run)


def _may_name_recorder(
    ctx: typer.Context, station: Station, kind: Subject, subject: str, reason: str = ""
) -> None:
    require_role(
        ctx,
        station,
        Action.RECORDER_NAME,
        subject_kind=kind,
        subject_id=subject[:64],
        reason=reason,
    )


@contextmanager
def _progress_bar(
    settings: Settings, volume: Path | None, as_json: bool
) -> Iterator[ProgressCallback | None]:
    """A progress bar on stderr while a volume is read, when stderr is a terminal and the
    volume is known here."""
    from evidence_agent.services.ingest import plan_bytes

    if not sys.stderr.isatty() or as_json or volume is None:
        yield None
        return
    total = plan_bytes(volume, settings.ingest)
    with typer.progressbar(length=total, label="ingesting", file=sys.stderr) as bar:
        yield bar.update


def _ingest_and_report(
    ctx: typer.Context,
    volume: Path | None,
    as_json: bool,
    ingest: Callable[[Station, ProgressCallback | None, ClipCallback], IngestReport],
    *,
    create: bool = True,
) -> None:
    """Run an ingest on this station with a store worker beside it (and a progress bar on a
    terminal, when the volume is known), then show its report."""
    from evidence_agent.services.ingest import ingest_and_store

    # Docks sign their checkpoints in batches (at each dock's end), not one per clip; an
    # operator's act inside the ingest (`dock identify`) signs its own.
    with (
        _progress_bar(root_context(ctx).settings, volume, as_json) as progress,
        open_station(ctx, create=create, sign_acts=False) as station,
    ):
        done = ingest_and_store(
            station, lambda bar, on_clip: ingest(station, bar, on_clip), progress
        )
    _show_ingest(done, as_json)


def _ingest_through_daemon(
    settings: Settings, op: str, fields: dict[str, Any], volume: Path | None, as_json: bool
) -> None:
    """The same ingest at the station's daemon, as this account, the volume read by this
    process; shown as when it runs here."""
    from evidence_agent.services.ingest import StoredIngest
    from evidence_agent.services.local_api import call

    with _progress_bar(settings, volume, as_json) as progress:
        result, error = call(settings.api_socket, op, fields, volume=volume, progress=progress)
    if error is not None:
        raise error
    _show_ingest(StoredIngest.from_json(result), as_json)


def _show_ingest(done: StoredIngest, as_json: bool) -> None:
    """An ingest's report; the exit code says what needs a person."""
    if as_json:
        emit_json(done.result)
    else:
        _print_ingest(done.result, done.result["warnings"])
    if done.exit_code:
        raise typer.Exit(int(done.exit_code))


def _print_ingest(result: dict[str, Any], warnings: list[str]) -> None:
    new = [c for c in result["clips"] if c["outcome"] == ClipOutcome.NEW]
    known = [c for c in result["clips"] if c["outcome"] != ClipOutcome.NEW]
    out = sys.stdout
    write_line(
        out,
        f"recorder {result['recorder']}: {len(new)} new clip(s), {len(known)} already catalogued",
    )
    for clip in result["clips"]:
        flags = f"  [{', '.join(clip['flags'])}]" if clip["flags"] else ""
        write_line(
            out,
            f"  {clip['id'][:8]}  {clip['sha256'][:16]}  {clip['state']:<8} {clip['source_path']}{flags}",
        )
    for item in result["not_ingested"]:
        write_line(
            out, f"  not ingested: {item['source_path']} ({item['reason']}: {item['detail']})"
        )
    for failure in result["store"]["integrity_failures"].values():
        write_line(out, f"  INTEGRITY FAILURE: {failure}")
    for warning in warnings:
        write_line(sys.stderr, f"warning: {warning}")


@dock_app.command("identify")
def dock_identify(
    ctx: typer.Context,
    dock_id: Annotated[str, typer.Argument(help="The unidentified dock (`status` lists them).")],
    recorder: Annotated[str, typer.Option("--recorder", help="The recorder's serial.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why this is that recorder's volume (logged).")
    ],
    volume: Annotated[
        Path | None,
        typer.Option(
            "--volume",
            help="Where the volume is mounted now, when not where it was docked "
            "(a USB recorder the daemon has unmounted).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Name the recorder of a dock no recorder could be named for, and ingest it as that
    recorder's; the act and its reason go in the custody log."""
    from evidence_agent.services.ingest import identify_dock

    check_serial(recorder, what="--recorder")
    settings = root_context(ctx).settings
    if not can_open(settings.data_dir):
        where = Path(os.path.abspath(volume)) if volume is not None else None
        fields = {
            "dock": dock_id,
            "recorder": recorder,
            "reason": reason,
            "volume": str(where) if where is not None else None,
        }
        _ingest_through_daemon(settings, "dock.identify", fields, where, as_json)
        return

    def run(
        station: Station, progress: ProgressCallback | None, on_clip: ClipCallback
    ) -> IngestReport:
        _may_name_recorder(ctx, station, Subject.DOCK, dock_id, reason)
        return identify_dock(
            station, dock_id, recorder, reason, volume=volume, progress=progress, on_clip=on_clip
        )

    _ingest_and_report(ctx, volume, as_json, run, create=False)


@app.command()
def store(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Store every clip still waiting in the spool, verifying each against its ingest hash."""
    from evidence_agent.services.storing import store_pending

    with open_station(ctx, sign_acts=False) as station:
        report = store_pending(station)
    if as_json:
        emit_json(report.to_json())
    else:
        write_line(
            sys.stdout, f"stored {len(report.stored)} clip(s); {len(report.failed)} still waiting"
        )
        for sha, msg in {**report.failed, **report.integrity_failures}.items():
            write_line(sys.stdout, f"  {sha[:16]}: {msg}")
    if report.integrity_failures:
        raise typer.Exit(int(ExitCode.INTEGRITY))
    if report.failed:
        raise typer.Exit(int(ExitCode.WARNING))


# ---------------------------------------------------------------- clips and status


@clips_app.command("list")
def clips_list(
    ctx: typer.Context,
    officer: Annotated[str | None, typer.Option(help="Officer badge.")] = None,
    recorder: Annotated[str | None, typer.Option(help="Recorder serial.")] = None,
    unit: Annotated[str | None, typer.Option(help="Unit code.")] = None,
    state: Annotated[str | None, typer.Option(help="spooled or stored.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many clips.")] = None,
    late: Annotated[
        bool,
        typer.Option(
            "--late", help="Only clips that broke the 24-hour rule, each with its late_cause."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List clips with their hash, source, recorder, officer, unit, times, state and flags."""
    settings = root_context(ctx).settings
    fields = {
        "officer": officer,
        "recorder": recorder,
        "unit": unit,
        "state": state,
        "limit": limit,
        "late": late,
    }
    if can_open(settings.data_dir):
        from review.operations import clip_list

        with open_station(ctx, create=False) as station:
            rows = clip_list(station, fields)
    else:
        rows = run_through_daemon(settings, "clips.list", fields)
    if as_json:
        emit_json(rows)
        return
    from evidence_agent.cli.display import clip_table

    sys.stdout.write(clip_table(rows, settings.tz))


@app.command()
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Backlog, running docks, per unit and officer the clips over or near 24 hours, the
    case-file clock of open cases whose action has ended, and what is due and overdue in
    legal review, public notices and the annual statistics."""
    settings = root_context(ctx).settings
    if can_open(settings.data_dir):
        from publish.operations import full_status

        with open_station(ctx, create=False) as station:
            data = full_status(station)
    else:
        data = run_through_daemon(settings, "status", {})
    if as_json:
        emit_json(data)
        return
    from evidence_agent.cli.display import status_text

    sys.stdout.write(
        status_text(data, settings)
        + _case_file_text(data["case_files"], settings)
        + clocks_text(data["clocks"])
    )


def _case_file_text(case_files: dict[str, Any] | None, settings: Settings) -> str:
    """The case-file lines of `status`: each open case whose action has ended, soonest due first."""
    from evidence_agent.cli.display import local_time

    if case_files is None:
        return ""
    lines = [
        f"case files due ({case_files['days']} days after the action ends): "
        f"{case_files['open']} open case(s), {case_files['overdue']} overdue"
    ]
    for case in case_files["cases"]:
        due = local_time(case["case_file_due"], settings.tz)
        unit = f"  unit {case['unit']}" if case["unit"] else ""
        if case["overdue"]:
            late = case["days_overdue"]
            by = f"{late} day(s) overdue" if late else "overdue by less than a day"
            lines.append(f"  OVERDUE case {case['number']}{unit}: was due {due} ({by})")
        else:
            lines.append(
                f"  case {case['number']}{unit}: due {due} "
                f"({case['case_file_days_left']} day(s) left)"
            )
    return text_lines(lines)


# ---------------------------------------------------------------- daemon and demo


@app.command()
def run(ctx: typer.Context) -> None:
    """Run the docking daemon: ingest every recorder volume that appears, with no action by anyone."""
    from evidence_agent.services.daemon import run_daemon
    from publish.operations import STATION_OPERATIONS
    from review.operations import api_handler

    settings = root_context(ctx).settings
    _configure_logging(settings.log_level, root_context(ctx).verbose)
    run_daemon(settings, lambda station: api_handler(station, STATION_OPERATIONS))


@app.command("demo-recorder")
def demo_recorder(
    directory: Annotated[Path, typer.Argument(help="Where to make the recorder volume (created).")],
    serial: Annotated[str, typer.Option(help="Recorder serial (7 characters).")] = "A123456",
    badge: Annotated[str, typer.Option(help="Officer badge (6 digits).")] = "100231",
    clips: Annotated[int, typer.Option(help="Number of normal video clips.")] = 3,
) -> None:
    """Make a realistic recorder volume (clips, an important clip, a corrupt one, a photo, an identity file)."""
    from evidence_agent.services.demo_recorder import make_demo_recorder

    volume = make_demo_recorder(directory, serial=serial, badge=badge, clips=clips)
    sys.stdout.write(f"demo recorder volume made at {volume.root}\n")


# ---------------------------------------------------------------- configuration


@config_app.command("validate")
def config_validate(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Check the configuration; every bad key is named in one message."""
    settings = root_context(ctx).settings
    if as_json:
        emit_json({"valid": True, "source": str(settings.source) if settings.source else None})
    else:
        where = settings.source or "built-in defaults and environment"
        sys.stdout.write(f"configuration is valid ({where})\n")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective value of every key, by section, as JSON (no secrets are in them)."""
    emit_json(root_context(ctx).settings.values)


@config_app.command("example")
def config_example() -> None:
    """Print the documented example configuration: every key, its default, an example value."""
    from evidence_agent.config import example_file

    sys.stdout.write(example_file())


def main(argv: list[str] | None = None) -> None:
    """Console entry: run the command, map every expected failure to its message and exit code."""
    args = sys.argv[1:] if argv is None else argv
    # Everything the agent writes (catalog, spool, objects, keys, bundles, retrieved copies) is
    # its account's alone, as under the systemd unit's UMask=0077, however the shell was set.
    os.umask(0o077)
    try:
        app(args=args, prog_name="evidence-agent")  # usage errors and typer.Exit end here
    except EvidenceError as e:
        if "--verbose" in args or "-v" in args:
            log.exception("failed")
        write_line(sys.stderr, f"error: {e.message}")
        if e.remedy:
            write_line(sys.stderr, f"  remedy: {e.remedy}")
        sys.exit(int(e.exit_code))
    except KeyboardInterrupt:
        write_line(sys.stderr, "interrupted")
        sys.exit(130)
