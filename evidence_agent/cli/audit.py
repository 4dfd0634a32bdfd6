"""Auditor commands of `evidence-agent`: audit export, verify, prove, verify-proof, custody checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from evidence_agent.cli.common import JsonOption, can_open, emit_json, open_station, settings_of
from evidence_agent.cli.display import text_lines
from evidence_agent.cli.review import run_operation
from evidence_agent.errors import ExitCode, StorageError
from evidence_agent.io.atomic import write_atomically

audit_app = typer.Typer(
    help="Audit bundles: everything an outside verifier needs.", no_args_is_help=True
)
custody_app = typer.Typer(help="The station's custody log.", no_args_is_help=True)

TrustedKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--trusted-key",
        help="The station's verifier key (station.vkey) as the auditor obtained it; "
        "else the key shipped beside the log is used.",
        dir_okay=False,
    ),
]
# Findings printed in the human report; --json lists them all.
MAX_PRINTED = 40


def register(app: typer.Typer) -> None:
    """Add the auditor commands to the `evidence-agent` app."""
    app.add_typer(audit_app, name="audit")
    app.add_typer(custody_app, name="custody")
    app.command("verify")(verify_command)
    app.command("prove")(prove_command)
    app.command("verify-proof")(verify_proof_command)


# ---------------------------------------------------------------- audit export


@audit_app.command("export")
def export_command(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(help="Where to write the bundle (must not exist, or be empty).")
    ],
    as_json: JsonOption = False,
) -> None:
    """Export the custody log, every checkpoint, the public key and the catalog rows for an auditor."""
    # Run here or by the daemon for a caller of its local API; the files are written by this
    # process either way, with the caller's rights.
    dest = directory.absolute()
    summary = run_operation(ctx, "audit.export", {"directory": str(dest)}, output=dest.parent)
    if as_json:
        emit_json(summary)
        return
    out = sys.stdout
    out.write(f"audit bundle written to {summary['path']} ({summary['files']} files)\n")
    for s in summary["stations"]:
        out.write(
            f"  station {s['id']}: {s['entries']} entries, {s['checkpoints']} checkpoint(s), "
            f"latest size {s['latest_checkpoint']}\n"
        )
    out.write(
        f"check it anywhere with: evidence-agent verify --bundle {summary['path']} "
        "--trusted-key station.vkey\n"
        f"  (station.vkey: this station's public key, {settings_of(ctx).key_dir}/station.vkey, "
        "handed to the auditor apart from the bundle; without --trusted-key the bundle's own "
        "key is used, and a bundle re-signed with another key passes too)\n"
        "keep the latest checkpoint file: the next audit's --trusted-checkpoint\n"
    )


# ---------------------------------------------------------------- verify


def verify_command(
    ctx: typer.Context,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Verify this exported bundle alone, without the station's database.",
            file_okay=False,
        ),
    ] = None,
    trusted_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--trusted-checkpoint",
            help="A checkpoint kept from an earlier audit: finds truncation, rollback and forks.",
            dir_okay=False,
        ),
    ] = None,
    trusted_key: TrustedKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify the custody chain: log, checkpoints, objects and catalog (exit 3 on any failure)."""
    # Imported in each branch: a bundle is verified without loading the database layer.
    if bundle is not None:
        from evidence_agent.services.audit.verify_bundle import verify_bundle

        report = verify_bundle(
            bundle, trusted_checkpoint=trusted_checkpoint, trusted_key=trusted_key
        ).to_json()
    else:
        report = _verify_station(ctx, trusted_checkpoint, trusted_key)
    if as_json:
        emit_json(report)
    else:
        sys.stdout.write(report_text(report))
    if not report["intact"]:
        raise typer.Exit(int(report["exit_code"]))


def _verify_station(
    ctx: typer.Context, trusted_checkpoint: Path | None, trusted_key: Path | None
) -> dict[str, Any]:
    """The station's report: verified here by an account that can open the station (its owner,
    no role asked), else by the daemon for a supervisor or auditor. The anchors are read here,
    with the caller's rights, either way."""
    from evidence_agent.services.audit.trusted_files import Anchors

    anchors = Anchors.read(trusted_checkpoint, trusted_key)
    settings = settings_of(ctx)
    if can_open(settings.data_dir):
        from evidence_agent.services.audit.verify_station import verify_station

        with open_station(ctx, create=False) as station:
            return verify_station(station, anchors=anchors).to_json()
    from evidence_agent.services.local_api import call

    fields = {
        "trusted_checkpoint": anchors.checkpoint,
        "trusted_checkpoint_name": anchors.label,
        "trusted_key": anchors.key,
    }
    report, error = call(settings.api_socket, "verify", fields)
    if not isinstance(report, dict):
        raise error or StorageError("the station's daemon sent no report")
    return report


_STATUS = {"passed": "ok", "failed": "FAILED", "limited": "limited", "skipped": "skipped"}


def report_text(report: dict[str, Any]) -> str:
    """The verification report for people (from its JSON): steps, then every failing item."""
    lines = [f"custody audit of {report['source']} {report['location']}"]
    for log in report["logs"]:
        lines.append(
            f"  log {log['origin']}: {log['entries']} entries, {log['checkpoints']} checkpoint(s)"
        )
        lines.append(f"    key {log['verifier_key'] or '(none usable)'}")
        latest = log["latest_checkpoint"]
        if latest is not None:
            lines.append(
                f"    latest checkpoint: size {latest['size']}, root {latest['root_hash']}"
            )
    for step in report["steps"]:
        status = _STATUS.get(step["status"], step["status"])
        detail = f"  {step['detail']}" if step["detail"] else ""
        lines.append(f"  [{status:>7}] {step['step']} {step['title']}{detail}")
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    if report["intact"] and report["key_from_bundle"]:
        lines.append(
            "INTACT, with the key the bundle carries itself: this proves the bundle whole, not "
            "who signed it (a bundle re-signed with another key passes too); give "
            "--trusted-key with the station's station.vkey, obtained apart from the bundle"
        )
        return text_lines(lines)
    if report["intact"]:
        lines.append("INTACT")
        return text_lines(lines)
    findings = report["findings"]
    total = len(findings) + report["findings_not_listed"]
    lines.append(f"FAILED: {total} item(s)")
    for finding in findings[:MAX_PRINTED]:
        where = f"{finding['station']}: " if finding["station"] else ""
        lines.append(f"  step {finding['step']}  {where}{finding['item']}: {finding['message']}")
    if total > MAX_PRINTED:
        lines.append(f"  ... {total - MAX_PRINTED} more (--json lists them all)")
    failed = report["exit_code"] == ExitCode.INTEGRITY
    lines.append("INTEGRITY FAILURE" if failed else "NOT VERIFIED")
    return text_lines(lines)


# ---------------------------------------------------------------- prove and verify-proof


def prove_command(
    ctx: typer.Context,
    clip: Annotated[str, typer.Argument(help="Clip id, unique id prefix, or SHA-256.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the proof document to this file.", dir_okay=False),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Inclusion proofs of a clip's custody events against the latest signed checkpoint."""
    # Run here or by the daemon for a caller of its local API; the file is written by this
    # process, with the caller's rights.
    proof = run_operation(ctx, "prove", {"clip": clip})
    if out is not None:
        document = (json.dumps(proof, indent=2, ensure_ascii=False) + "\n").encode()
        try:
            write_atomically(out, document)
        except OSError as e:
            raise StorageError(f"cannot write {out}: {e.strerror}") from e
    if as_json:
        emit_json(proof)
        return
    sys.stdout.write(
        f"clip {proof['clip']} ({proof['sha256']}): {len(proof['events'])} event(s) proven in "
        f"the tree of size {proof['tree_size']}\n"
    )
    for event in proof["events"]:
        sys.stdout.write(f"  entry {event['seq']}  {event['type']}\n")
    if out is not None:
        sys.stdout.write(
            f"proof written to {out}; check it with: evidence-agent verify-proof {out}\n"
        )
    else:
        sys.stdout.write("give --out FILE (or --json) for the proof document itself\n")


def verify_proof_command(
    file: Annotated[Path, typer.Argument(help="A proof document made by `prove`.", dir_okay=False)],
    trusted_key: TrustedKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check a clip's inclusion proof offline: no database, no station (exit 3 if it fails)."""
    from evidence_agent.services.audit.proofs import verify_proof_file

    result = verify_proof_file(file, trusted_key=trusted_key)
    if as_json:
        emit_json(result)
        return
    cp = result["checkpoint"]
    sys.stdout.write(
        f"VALID: clip {result['clip']} ({result['sha256']}) of station {result['station']}\n"
        f"  checkpoint size {cp['size']}, root {cp['root_hash']}\n"
        f"  signed by {result['verifier_key']}\n"
    )
    for e in result["events"]:
        sys.stdout.write(
            f"  entry {e['seq']}  {e['time']}  {e['type']}  by {e['actor']}: {e['reason']}\n"
        )
    if trusted_key is None:
        sys.stdout.write(
            "  the key came with the proof: compare it with the station's published key, "
            "or pass --trusted-key\n"
        )


# ---------------------------------------------------------------- custody checkpoint


@custody_app.command("checkpoint")
def checkpoint_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Sign a checkpoint of the custody log now, if any event is not covered by one yet."""
    from evidence_agent.services.audit.export import make_checkpoint

    with open_station(ctx) as station:
        result = make_checkpoint(station)
    if as_json:
        emit_json(result)
        return
    verb = "signed" if result["made"] else "already signed"
    sys.stdout.write(f"checkpoint {verb}: size {result['size']}, root {result['root_hash']}\n")
