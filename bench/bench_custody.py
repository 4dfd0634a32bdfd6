"""Benchmark of a custody-log audit: rebuild the tree of N events, check checkpoints and proofs."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from hmac import compare_digest

from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from evidence_agent.custody.merkle import (
    HASH_SIZE,
    MerkleAccumulator,
    leaf_hash,
    node_hash,
    verify_inclusion,
)
from evidence_agent.custody.signed_note import Ed25519Signer, Ed25519Verifier

ORIGIN = "bench.example/station-7"
CHECKPOINT_EVERY = 1000
TARGET_AUDIT_S_PER_MILLION = 10.0
TARGET_PROOFS_PER_S = 10_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pin_to_one_core() -> int | None:
    """Run on one core, so the figures do not depend on how many the machine has."""
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return None
    return cpu


def make_events(n: int) -> list[bytes]:
    """Return n custody events as RFC 8785 bytes, about 300 bytes each.

    They are formatted from a template whose keys are already in canonical order, because
    canonicalising a million dicts would take longer than the audit being measured; a sample
    is checked against canonical_json below.
    """
    events = []
    for i in range(n):
        digest = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
        day, hour, minute, second = 1 + i // 86400 % 28, i // 3600 % 24, i // 60 % 60, i % 60
        when = f"2024-05-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}Z"
        events.append(
            (
                f'{{"action":"ingest","actor":{{"id":"officer-{i % 997}","role":"officer"}},'
                f'"clip":{{"bytes":{1_000_000 + i * 7919},"name":"FILE{i % 10000:04d}.MP4",'
                f'"sha256":"{digest}"}},"reason":"docked","recorder":"DSJ-A7-{i % 500:06d}",'
                f'"seq":{i},"station":"station-7","time":"{when}"}}'
            ).encode("ascii")
        )
    return events


def check_sample_is_canonical(events: Sequence[bytes]) -> float:
    """Check that sampled events are exactly canonical_json of themselves; return µs per call."""
    sample = [json.loads(events[i]) for i in range(0, len(events), max(1, len(events) // 2000))]
    start = time.perf_counter()
    encoded = [canonical_json(value) for value in sample]
    elapsed = time.perf_counter() - start
    for value, raw in zip(sample, encoded, strict=True):
        if raw != events[value["seq"]]:
            raise SystemExit(f"event {value['seq']} is not canonical JSON")
    return elapsed / len(sample) * 1e6


def sign_checkpoints(events: Sequence[bytes], signer: Ed25519Signer) -> list[str]:
    """The station's side: a signed checkpoint every CHECKPOINT_EVERY leaves and at the end."""
    acc = MerkleAccumulator()
    notes = []
    for start in range(0, len(events), CHECKPOINT_EVERY):
        acc.extend_entries(events[start : start + CHECKPOINT_EVERY])
        notes.append(sign_checkpoint(Checkpoint(ORIGIN, acc.size, acc.root()), signer))
    return notes


def audit(
    events: Sequence[bytes], notes: Sequence[str], verifier: Ed25519Verifier
) -> tuple[float, float, bytes]:
    """The auditor's side: rebuild the tree and check every checkpoint against it.

    Returns (total seconds, of which checkpoint checks, final root).
    """
    acc = MerkleAccumulator()
    checkpoint_s = 0.0
    perf_counter = time.perf_counter
    start = perf_counter()
    for number, note in enumerate(notes):
        acc.extend_entries(events[number * CHECKPOINT_EVERY : (number + 1) * CHECKPOINT_EVERY])
        t0 = perf_counter()
        checkpoint = open_checkpoint(note, verifier, origin=ORIGIN)
        if checkpoint.size != acc.size or not compare_digest(checkpoint.root_hash, acc.root()):
            raise SystemExit(f"checkpoint at size {checkpoint.size} does not match the log")
        checkpoint_s += perf_counter() - t0
    root = acc.root()
    return perf_counter() - start, checkpoint_s, root


class LevelTable:
    """Every perfect subtree's root, one bytes object per level, to produce proofs quickly.

    merkle.inclusion_proof is O(n) per proof by design; 10,000 proofs of a 1M-leaf tree need a
    table. Only the proofs' verification is measured; a wrong proof would fail it.
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.size = len(leaf_hashes)
        self.levels = [b"".join(leaf_hashes)]
        width = 2 * HASH_SIZE
        while len(self.levels[-1]) >= width:
            below = self.levels[-1]
            self.levels.append(
                b"".join(
                    hashlib.sha256(b"\x01" + below[i : i + width]).digest()
                    for i in range(0, len(below) - width + 1, width)
                )
            )

    def mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            height = n.bit_length() - 1
            offset = start // n * HASH_SIZE
            return self.levels[height][offset : offset + HASH_SIZE]
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(self.mth(start, start + k), self.mth(start + k, end))

    def inclusion_proof(self, index: int) -> list[bytes]:
        path = []
        start, end = 0, self.size
        while end - start > 1:
            k = 1 << ((end - start - 1).bit_length() - 1)
            if index - start < k:
                path.append(self.mth(start + k, end))
                end = start + k
            else:
                path.append(self.mth(start, start + k))
                start += k
        path.reverse()
        return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="log size (1000000)")
    parser.add_argument("--proofs", type=int, default=10_000, help="proofs to verify (10000)")
    parser.add_argument("--repeat", type=int, default=3, help="audit runs; best is reported (3)")
    args = parser.parse_args()
    n = args.events
    if n < 1:
        parser.error("--events must be at least 1")

    cpu = pin_to_one_core()
    log(f"making {n} events")
    events = make_events(n)
    canonical_us = check_sample_is_canonical(events)
    signer = Ed25519Signer.generate(ORIGIN)
    verifier = Ed25519Verifier.from_key_string(signer.verifier.key_string())
    log("signing checkpoints (station side)")
    notes = sign_checkpoints(events, signer)

    runs = []
    for run in range(args.repeat):
        total_s, checkpoint_s, root = audit(events, notes, verifier)
        log(f"audit run {run + 1}: {total_s:.3f} s ({checkpoint_s:.3f} s in checkpoints)")
        runs.append((total_s, checkpoint_s))
    best_total, best_checkpoint = min(runs)

    log(f"building proofs for {args.proofs} random leaves")
    leaf_hashes = [leaf_hash(e) for e in events]
    table = LevelTable(leaf_hashes)
    rng = random.Random(7)
    indices = [rng.randrange(n) for _ in range(args.proofs)]
    proofs = [table.inclusion_proof(i) for i in indices]
    del table
    start = time.perf_counter()
    for index, proof in zip(indices, proofs, strict=True):
        verify_inclusion(leaf_hashes[index], index, n, proof, root)
    proof_s = time.perf_counter() - start

    scale = n / 1_000_000
    result = {
        "benchmark": "custody-log audit",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_model": cpu_model(),
            "cpus_online": os.cpu_count(),
            "pinned_to_cpu": cpu,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "events": n,
        "mean_event_bytes": round(sum(map(len, events)) / n, 1),
        "audit": {
            "what": "leaf hashing + incremental root, and a signed checkpoint opened and "
            f"compared every {CHECKPOINT_EVERY} leaves",
            "checkpoints_verified": len(notes),
            "runs_s": [round(t, 3) for t, _ in runs],
            "best_s": round(best_total, 3),
            "median_s": round(statistics.median(t for t, _ in runs), 3),
            "best_checkpoint_part_s": round(best_checkpoint, 3),
            "events_per_s": round(n / best_total),
            "target_s": round(TARGET_AUDIT_S_PER_MILLION * scale, 3),
            "meets_target": best_total < TARGET_AUDIT_S_PER_MILLION * scale,
        },
        "inclusion_proofs": {
            "proofs": args.proofs,
            "tree_size": n,
            "mean_proof_hashes": round(sum(map(len, proofs)) / len(proofs), 2),
            "verify_s": round(proof_s, 3),
            "proofs_per_s": round(args.proofs / proof_s),
            "mean_us_per_proof": round(proof_s / args.proofs * 1e6, 2),
            "target_per_s": TARGET_PROOFS_PER_S,
            "meets_target": args.proofs / proof_s >= TARGET_PROOFS_PER_S,
        },
        "canonical_json_us_per_event": round(canonical_us, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
