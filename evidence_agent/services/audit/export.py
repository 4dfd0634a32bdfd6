"""Audit export: sign the custody log's head, then write the bundle an outside verifier needs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence_agent.custody.audit_report import b64
from evidence_agent.custody.checkpoint import open_checkpoint
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.errors import InputError, NotFoundError
from evidence_agent.services.audit import live_catalog
from evidence_agent.services.bundle_writer import BundleSummary, StationExport, write_bundle
from evidence_agent.services.output_directory import FILE, FULL, LocalDirectory, OutputDirectory

if TYPE_CHECKING:
    from evidence_agent.services.station import Station


def export_bundle(
    station: Station, dest: Path, *, output: OutputDirectory | None = None
) -> BundleSummary:
    """Sign the log's current head and export log, checkpoints, key and catalog rows to ``dest``.

    The export is itself an event (audit.exported), signed by the checkpoint made with it, so
    the bundle ends on a checkpoint that covers every entry in it. `output`: the directory
    holding ``dest`` (bundle_writer.write_bundle), written by the caller's process for a caller
    of the local API.
    """
    output = output or LocalDirectory(dest.parent)
    if output.state(dest.name) in (FULL, FILE):
        raise InputError(
            f"{dest} already exists and is not an empty directory",
            remedy="give a new directory name; a bundle is never written over another",
        )
    sid = station.settings.station_id
    with station.transaction() as session:
        station.record(
            session,
            EventType.AUDIT_EXPORTED.event(
                sid,
                actor=station.actor,
                reason="custody log, checkpoints, public key and catalog rows exported for audit",
                data={"directory": _printable(dest.absolute())},
            ),
        )
        station.custody.checkpoint(session)
    verifier = station.custody.signer.verifier
    with live_catalog.snapshot(station.engine) as session:
        # Checkpoints first: the log only grows, so every one of them is covered by the entries
        # read after it.
        checkpoints = [
            (c.declared_size, c.note or "") for c in live_catalog.checkpoints(session, sid)
        ]
        catalog = live_catalog.catalog_rows(session, sid, unlogged_cases=True)
        export = StationExport(
            station_id=sid,
            verifier_key=verifier.key_string(),
            public_key_pem=verifier.public_key_pem(),
            entries=(entry for _, entry, _ in live_catalog.entries(session, sid)),
            checkpoints=checkpoints,
            catalog={
                "clips": catalog.clips or [],
                "case_clips": catalog.case_clips or [],
                "cases": catalog.cases or [],
            },
        )
        return write_bundle(
            dest,
            [export],
            created_at=station.clock.now(),
            created_by=station.actor,
            output=output,
        )


def make_checkpoint(station: Station) -> dict[str, Any]:
    """Sign the log's head now (if anything is unsigned) and describe the latest checkpoint."""
    with station.transaction() as session:
        made = station.custody.checkpoint(session)
        latest = station.custody.latest_checkpoint(session)
    if latest is None:
        raise NotFoundError("the custody log is empty: there is nothing to sign")
    checkpoint = open_checkpoint(
        latest.note, station.custody.signer.verifier, origin=station.custody.origin
    )
    return {
        "made": made is not None,
        "size": checkpoint.size,
        "root_hash": b64(checkpoint.root_hash),
        "note": latest.note,
    }


def _printable(path: Path) -> str:
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")
