"""Storage commands of `evidence-agent`: `storage check`, the evidence-mode self-test of the store."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import typer

from evidence_agent.cli.common import JsonOption, settings_of, station_account_only
from evidence_agent.errors import ExitCode

if TYPE_CHECKING:
    from evidence_agent.services.spool_space import SpoolSpace
    from evidence_agent.services.storage_check import StoreCheck

storage_app = typer.Typer(help="The object store and the spool.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the storage commands to the `evidence-agent` app."""
    app.add_typer(storage_app, name="storage")


@storage_app.command("check")
def check_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Self-test the configured object store and report the spool's free space.

    S3: a locked canary whose deletion must be refused, a wrong checksum that must be rejected,
    an overwrite that must be refused (exit 2 naming each failure). Local store: what it does
    and does not guarantee. Exit 1 when the spool is short of space."""
    from evidence_agent.io.spool import Spool
    from evidence_agent.services.spool_space import spool_space
    from evidence_agent.services.station import build_store
    from evidence_agent.services.storage_check import (
        EvidenceBucketRefused,
        check_store,
        record_pass,
    )

    settings = settings_of(ctx)
    station_account_only(ctx, settings)
    store = build_store(settings)
    result = check_store(store)
    if result.backend == "s3" and result.ok:
        record_pass(store, settings.data_dir)  # the upload queue need not repeat it for a day
    space = spool_space(Spool(settings.spool_dir), settings.ingest.min_spool_free_bytes)
    if as_json:
        data: dict[str, Any] = result.to_json()
        data["spool"] = space.to_json() if space is not None else None
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        _print_check(result, space)
    if not result.ok:
        refused = EvidenceBucketRefused(result.store, result.findings)
        raise typer.Exit(int(refused.exit_code))
    if space is not None and space.level != "ok":
        raise typer.Exit(int(ExitCode.WARNING))


def _print_check(result: StoreCheck, space: SpoolSpace | None) -> None:
    out = sys.stdout
    out.write(f"store: {result.store} ({result.backend})\n")
    if result.backend == "s3":
        for finding in result.findings:
            mark = "ok    " if finding.ok else "FAILED"
            out.write(f"  {mark} {finding.check}: {finding.message}\n")
            if not finding.ok and finding.remedy:
                out.write(f"         remedy: {finding.remedy}\n")
        if result.ok:
            out.write("the store is fit for evidence: write-once, checksummed, never overwritten\n")
        else:
            out.write("the store is NOT fit for evidence: nothing will be uploaded to it\n")
    else:
        out.write("  the local directory store guarantees:\n")
        for line in result.guarantees:
            out.write(f"    - {line}\n")
        out.write("  it does NOT guarantee:\n")
        for line in result.limits:
            out.write(f"    - {line}\n")
        if result.advice:
            out.write(f"  {result.advice}\n")
    if space is None:
        out.write("spool: not created yet\n")
        return
    gib = 1 << 30
    out.write(
        f"spool: {space.root}: {space.free_bytes / gib:.1f} GiB free of "
        f"{space.total_bytes / gib:.1f} GiB; {space.waiting_clips} clip(s), "
        f"{space.waiting_bytes / gib:.2f} GiB waiting for the store\n"
    )
    if space.message:
        sys.stderr.write(f"warning: {space.message}\n")
