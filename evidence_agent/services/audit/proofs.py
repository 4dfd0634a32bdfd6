"""A clip's proof document made on the station, and a proof file checked anywhere."""

from __future__ import annotations

import json
from hmac import compare_digest
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence_agent.custody.checkpoint import log_origin, open_checkpoint
from evidence_agent.custody.entry_schema import reject_constant
from evidence_agent.custody.package_proofs import Choose, Subject, package_proofs
from evidence_agent.custody.proof_document import proof_document, verify_proof
from evidence_agent.errors import InputError, IntegrityError, NotFoundError
from evidence_agent.services.audit.trusted_files import read_trusted_key

if TYPE_CHECKING:
    from evidence_agent.services.station import Station

MAX_PROOF_FILE = 64 << 20


def prove(station: Station, clip_ref: str) -> dict[str, Any]:
    """Inclusion proofs of a clip's events against the latest checkpoint, verifiable offline.

    The document carries the entries, the signed checkpoint and the verifier key, so
    `verify-proof` needs nothing else. A checkpoint is made first if events are unsigned.
    """
    # Imported here: verify-proof, the other use of this module, runs without any database.
    from evidence_agent.catalog.queries import find_clip
    from evidence_agent.services.audit import live_catalog

    sid = station.settings.station_id
    verifier = station.custody.signer.verifier
    with station.transaction() as session:
        station.custody.checkpoint(session)
    with live_catalog.snapshot(station.engine) as session:
        clip = find_clip(session, clip_ref)
        if clip is None:
            raise NotFoundError(
                f"no clip {clip_ref!r} in the catalog",
                remedy="give a clip id, a unique id prefix (6+ characters) or the SHA-256",
            )
        row = station.custody.latest_checkpoint(session)
        if row is None:
            raise NotFoundError("the custody log has no checkpoint yet")
        note = row.note
        checkpoint = open_checkpoint(note, verifier, origin=log_origin(sid))
        entries = [e for _, e, _ in live_catalog.entries(session, sid, below=checkpoint.size)]
        clip_id, catalog_sha = clip.id, clip.sha256
    doc = proof_document(
        station_id=sid,
        clip_id=clip_id,
        entries=entries,
        note=note,
        verifier=verifier,
        made_at=station.clock.now(),
        made_by=station.actor,
    )
    if not compare_digest(doc["sha256"].encode(), catalog_sha.encode()):
        raise IntegrityError(
            f"clip {clip_id}: the catalog's sha256 {catalog_sha} is not the ingest event's "
            f"{doc['sha256']}",
            remedy="run `evidence-agent verify`",
        )
    return doc


def prove_subjects(station: Station, subjects: dict[Subject, Choose]) -> tuple[dict[str, Any], str]:
    """The events about `subjects` with inclusion proofs against a checkpoint signed now (made
    first when events are unsigned), and that checkpoint's signed note."""
    from evidence_agent.services.audit import live_catalog

    sid = station.settings.station_id
    verifier = station.custody.signer.verifier
    with station.transaction() as session:
        station.custody.checkpoint(session)
    with live_catalog.snapshot(station.engine) as session:
        row = station.custody.latest_checkpoint(session)
        if row is None:
            raise NotFoundError("the custody log has no checkpoint yet")
        note = row.note
        checkpoint = open_checkpoint(note, verifier, origin=log_origin(sid))
        entries = [e for _, e, _ in live_catalog.entries(session, sid, below=checkpoint.size)]
    doc = package_proofs(
        station_id=sid, subjects=subjects, entries=entries, note=note, verifier=verifier
    )
    return doc, note


def verify_proof_file(path: Path, *, trusted_key: Path | None = None) -> dict[str, Any]:
    """Check a proof document offline; return what it proves.

    Raises InputError for a file that is not a proof document, IntegrityError naming the item
    when a signature, hash or proof fails.
    """
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PROOF_FILE + 1)
    except OSError as e:
        raise InputError(f"cannot read the proof {path}: {e.strerror}") from e
    if len(raw) > MAX_PROOF_FILE:
        raise InputError(f"{path} is larger than any proof document")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(f"malformed proof: {path} is not JSON text") from e
    return verify_proof(doc, trusted_key=read_trusted_key(trusted_key))
