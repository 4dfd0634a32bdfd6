"""A clip's proof document: its events' entries and inclusion proofs against a signed checkpoint."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from hmac import compare_digest
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence_agent.custody.audit_report import b64
from evidence_agent.custody.checkpoint import Checkpoint, log_origin, open_checkpoint
from evidence_agent.custody.entry_schema import is_sha256_hex, schema_problem
from evidence_agent.custody.events import format_time
from evidence_agent.custody.merkle import (
    MerkleAccumulator,
    inclusion_proof,
    leaf_hash,
    verify_inclusion,
)
from evidence_agent.custody.signed_note import Ed25519Verifier
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.errors import InputError, IntegrityError

PROOF_FORMAT = "evidence-agent/inclusion-proof"
PROOF_VERSION = 1
_PROOF_KEYS = frozenset(
    {
        "format",
        "version",
        "station",
        "origin",
        "clip",
        "sha256",
        "verifier_key",
        "public_key_pem",
        "checkpoint",
        "tree_size",
        "root_hash",
        "events",
        "made_at",
        "made_by",
    }
)
_PROOF_EVENT_KEYS = frozenset({"seq", "type", "entry", "leaf_hash", "inclusion_proof"})
_PROOF_TEXT_KEYS = (
    "station",
    "origin",
    "clip",
    "verifier_key",
    "public_key_pem",
    "checkpoint",
    "made_at",
    "made_by",
)


def signed_leaves(
    station_id: str, entries: Sequence[bytes], note: str, verifier: Ed25519Verifier
) -> tuple[Checkpoint, list[bytes]]:
    """The checkpoint `note` signs and the leaf hashes of `entries`, once they are its tree.

    Raises IntegrityError when the entries are not the tree the note signed."""
    checkpoint = open_checkpoint(note, verifier, origin=log_origin(station_id))
    if len(entries) != checkpoint.size:
        raise IntegrityError(
            f"the log holds {len(entries)} entries below its latest checkpoint's size "
            f"{checkpoint.size}: entries were removed",
            remedy="run `evidence-agent verify`",
        )
    leaves = [leaf_hash(e) for e in entries]
    acc = MerkleAccumulator()
    acc.extend(leaves)
    if not compare_digest(acc.root(), checkpoint.root_hash):
        raise IntegrityError(
            "the log's entries do not match its latest signed checkpoint",
            remedy="run `evidence-agent verify` to find the changed entries",
        )
    return checkpoint, leaves


def proof_document(
    *,
    station_id: str,
    clip_id: str,
    entries: Sequence[bytes],
    note: str,
    verifier: Ed25519Verifier,
    made_at: datetime,
    made_by: str,
) -> dict[str, Any]:
    """The proof document of a clip's events in the tree of ``entries`` signed by ``note``.

    Raises IntegrityError when the entries are not the tree the note signed, or the clip has
    no ingest event in it. Making each proof is O(n) (merkle.inclusion_proof); a clip has a
    handful of events.
    """
    checkpoint, leaves = signed_leaves(station_id, entries, note, verifier)
    events, ingest_sha = _clip_events(clip_id, entries, leaves, checkpoint)
    if not isinstance(ingest_sha, str):
        raise IntegrityError(
            f"clip {clip_id} has no clip.ingested event in the signed log",
            remedy="run `evidence-agent verify`",
        )
    return {
        "format": PROOF_FORMAT,
        "version": PROOF_VERSION,
        "station": station_id,
        "origin": checkpoint.origin,
        "clip": clip_id,
        "sha256": ingest_sha,
        "verifier_key": verifier.key_string(),
        "public_key_pem": verifier.public_key_pem(),
        "checkpoint": note,
        "tree_size": checkpoint.size,
        "root_hash": checkpoint.root_hash.hex(),
        "events": events,
        "made_at": format_time(made_at),
        "made_by": made_by,
    }


def _clip_events(
    clip_id: str, entries: Sequence[bytes], leaves: Sequence[bytes], checkpoint: Checkpoint
) -> tuple[list[dict[str, Any]], Any]:
    """The clip's events with their inclusion proofs, and the sha256 its ingest event holds."""
    # Found from the entries themselves, not from the catalog's index column.
    token = b'"subject":{"id":' + json.dumps(clip_id).encode() + b',"kind":"clip"}'
    events = []
    ingest_sha: Any = None
    for seq, entry in enumerate(entries):
        if token not in entry:
            continue
        doc = json.loads(entry)
        if doc.get("type") == EventType.CLIP_INGESTED:
            ingest_sha = doc.get("sha256")
        proof = inclusion_proof(leaves, seq)
        verify_inclusion(leaves[seq], seq, checkpoint.size, proof, checkpoint.root_hash)
        events.append(
            {
                "seq": seq,
                "type": doc.get("type"),
                "entry": entry.decode("utf-8"),
                "leaf_hash": leaves[seq].hex(),
                "inclusion_proof": [h.hex() for h in proof],
            }
        )
    return events, ingest_sha


def verify_proof(doc: Any, *, trusted_key: Ed25519Verifier | None = None) -> dict[str, Any]:
    """Check a parsed proof document offline; return what it proves.

    Raises InputError for a document that is not a proof, IntegrityError naming the item when
    a signature, hash or proof fails.
    """
    p = _parse_proof(doc)
    origin = log_origin(p["station"])
    if p["origin"] != origin:
        raise InputError(f"malformed proof: origin {p['origin']!r} is not {origin!r}")
    key = _proof_key(p, trusted_key)
    # 1. The checkpoint: signature, then the tree it names.
    checkpoint = open_checkpoint(p["checkpoint"], key, origin=origin)
    if checkpoint.size != p["tree_size"] or not compare_digest(
        checkpoint.root_hash, p["root_hash"]
    ):
        raise IntegrityError("tree_size or root_hash differ from the signed checkpoint's")
    # 2. Each event: its leaf hash, its inclusion proof, and that it is about this clip.
    verified = [_verify_event(event, p, checkpoint) for event in p["events"]]
    if not any(e["type"] == EventType.CLIP_INGESTED for e in verified):
        raise IntegrityError("the proof has no clip.ingested event for the clip")
    return {
        "valid": True,
        "clip": p["clip"],
        "sha256": p["sha256"],
        "station": p["station"],
        "verifier_key": key.key_string(),
        "checkpoint": {"size": checkpoint.size, "root_hash": b64(checkpoint.root_hash)},
        "events": verified,
    }


def _proof_key(p: dict[str, Any], trusted_key: Ed25519Verifier | None) -> Ed25519Verifier:
    """The key the proof is checked with: its own, which must be the trusted key if one is
    given, and its PEM copy the same key."""
    key = Ed25519Verifier.from_key_string(p["verifier_key"])
    if trusted_key is not None:
        if trusted_key.key_string() != key.key_string():
            raise IntegrityError(
                f"the proof's key {key.key_string()} is not the trusted key "
                f"{trusted_key.key_string()}"
            )
        key = trusted_key
    try:
        pem_key = serialization.load_pem_public_key(p["public_key_pem"].encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        raise InputError("malformed proof: public_key_pem is not a PEM public key") from e
    if not isinstance(pem_key, Ed25519PublicKey) or not compare_digest(
        pem_key.public_bytes_raw(), key.public_key
    ):
        raise IntegrityError("the proof's PEM public key is not its verifier key")
    return key


def _verify_event(
    event: dict[str, Any], p: dict[str, Any], checkpoint: Checkpoint
) -> dict[str, Any]:
    seq, entry = event["seq"], event["entry"]
    item = f"event {seq}"
    leaf = leaf_hash(entry)
    if not compare_digest(leaf, event["leaf_hash"]):
        raise IntegrityError(f"{item}: the entry does not hash to its leaf hash (changed)")
    try:
        verify_inclusion(leaf, seq, checkpoint.size, event["inclusion_proof"], checkpoint.root_hash)
    except IntegrityError as e:
        raise IntegrityError(f"{item}: {e.message}") from e
    try:
        entry_doc = json.loads(entry)
    except ValueError as e:
        raise IntegrityError(f"{item}: the entry is not JSON") from e
    problem = schema_problem(entry_doc, seq, p["station"])
    if problem is not None:
        raise IntegrityError(f"{item}: the entry {problem}")
    if entry_doc["subject"] != {"kind": "clip", "id": p["clip"]}:
        raise IntegrityError(f"{item}: the entry is not about clip {p['clip']}")
    if entry_doc["type"] != event["type"]:
        raise IntegrityError(f"{item}: the entry's type is {entry_doc['type']!r}")
    if entry_doc["type"] == EventType.CLIP_INGESTED and entry_doc.get("sha256") != p["sha256"]:
        raise IntegrityError(f"{item}: the ingest event's sha256 is not {p['sha256']}")
    return {
        "seq": seq,
        "type": entry_doc["type"],
        "time": entry_doc["time"],
        "actor": entry_doc["actor"],
        "reason": entry_doc["reason"],
    }


def _bad(what: str) -> InputError:
    return InputError(
        f"malformed proof: {what}", remedy="give a file made by `evidence-agent prove`"
    )


def _parse_proof(doc: Any) -> dict[str, Any]:
    """The proof document with its hashes decoded; InputError for anything else."""
    if not isinstance(doc, dict):
        raise _bad("not a JSON object")
    if doc.get("format") != PROOF_FORMAT:
        raise _bad(f"format is {doc.get('format')!r}, not {PROOF_FORMAT!r}")
    if doc.get("version") != PROOF_VERSION:
        raise _bad(f"version {doc.get('version')!r} is not {PROOF_VERSION}")
    if set(doc) != _PROOF_KEYS:
        raise _bad(f"fields differ from the format: {sorted(set(doc) ^ _PROOF_KEYS)}")
    for name in _PROOF_TEXT_KEYS:
        if not isinstance(doc[name], str):
            raise _bad(f"{name} is not text")
    if not is_sha256_hex(doc["sha256"]):
        raise _bad("sha256 is not 64 lower-case hex digits")
    size = doc["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise _bad("tree_size is not a positive integer")
    out = dict(doc)
    out["root_hash"] = _hash_hex(doc["root_hash"], "root_hash")
    events = doc["events"]
    if not isinstance(events, list) or not events:
        raise _bad("events is not a non-empty list")
    out["events"] = [_parse_event(number, event, size) for number, event in enumerate(events)]
    return out


def _parse_event(number: int, event: Any, size: int) -> dict[str, Any]:
    if not isinstance(event, dict) or set(event) != _PROOF_EVENT_KEYS:
        raise _bad(f"event {number} does not have the fields {sorted(_PROOF_EVENT_KEYS)}")
    seq = event["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < size:
        raise _bad(f"event {number}: seq is not an index into the tree")
    if not isinstance(event["entry"], str) or not isinstance(event["type"], str):
        raise _bad(f"event {number}: entry and type must be text")
    try:
        entry = event["entry"].encode("utf-8")
    except UnicodeEncodeError as e:
        raise _bad(f"event {number}: entry is not UTF-8 text") from e
    path = event["inclusion_proof"]
    if not isinstance(path, list) or len(path) > 64:
        raise _bad(f"event {number}: inclusion_proof is not a list of hashes")
    return {
        "seq": seq,
        "type": event["type"],
        "entry": entry,
        "leaf_hash": _hash_hex(event["leaf_hash"], f"event {number} leaf_hash"),
        "inclusion_proof": [_hash_hex(h, f"event {number} inclusion_proof") for h in path],
    }


def _hash_hex(value: Any, what: str) -> bytes:
    if not is_sha256_hex(value):
        raise _bad(f"{what} is not a SHA-256 in lower-case hex")
    return bytes.fromhex(value)
