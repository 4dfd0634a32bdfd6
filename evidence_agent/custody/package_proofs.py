"""A disclosure package's custody events: each with its RFC 9162 inclusion proof under one checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from evidence_agent.custody.merkle import (
    inclusion_proof,
    verify_inclusion,
)
from evidence_agent.custody.proof_document import signed_leaves
from evidence_agent.custody.signed_note import Ed25519Verifier

PACKAGE_PROOFS_FORMAT = "evidence-agent/package-proofs"
PACKAGE_PROOFS_VERSION = 1

# (kind, id) of a subject, and a test on an entry's parsed JSON choosing which of its events go in.
Subject = tuple[str, str]
Choose = Callable[[dict[str, Any]], bool]


def package_proofs(
    *,
    station_id: str,
    subjects: dict[Subject, Choose],
    entries: Sequence[bytes],
    note: str,
    verifier: Ed25519Verifier,
) -> dict[str, Any]:
    """The events about `subjects` (each filtered by its test) in the tree of `entries` that
    `note` signs, each with its inclusion proof.

    Raises IntegrityError when the entries are not the tree the note signed. The leaves are
    hashed once for all subjects; each proof is O(n) (merkle.inclusion_proof)."""
    checkpoint, leaves = signed_leaves(station_id, entries, note, verifier)
    # Found from the entries themselves, not from the catalog's index column.
    tokens = {
        b'"subject":{"id":'
        + json.dumps(sid).encode()
        + b',"kind":'
        + json.dumps(kind).encode()
        + b"}": (kind, sid)
        for kind, sid in subjects
    }
    events = []
    for seq, entry in enumerate(entries):
        found = [subject for token, subject in tokens.items() if token in entry]
        if not found:
            continue
        doc = json.loads(entry)
        if not any(subjects[subject](doc) for subject in found):
            continue
        proof = inclusion_proof(leaves, seq)
        verify_inclusion(leaves[seq], seq, checkpoint.size, proof, checkpoint.root_hash)
        events.append(
            {
                "seq": seq,
                "type": doc.get("type"),
                "subject": doc.get("subject"),
                "entry": entry.decode("utf-8"),
                "leaf_hash": leaves[seq].hex(),
                "inclusion_proof": [h.hex() for h in proof],
            }
        )
    return {
        "format": PACKAGE_PROOFS_FORMAT,
        "version": PACKAGE_PROOFS_VERSION,
        "station": station_id,
        "origin": checkpoint.origin,
        "verifier_key": verifier.key_string(),
        "tree_size": checkpoint.size,
        "root_hash": checkpoint.root_hash.hex(),
        "events": events,
    }
