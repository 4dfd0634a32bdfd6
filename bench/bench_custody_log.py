"""Benchmark of the custody log as the station and the auditor use it.

1. Durable appends through SqlCustodyLog on SQLite (WAL, synchronous=FULL, the agent's own
   engine): one transaction per ingested clip carrying 1 or 2 events, a batch of 100, and the
   worst case of a signed checkpoint in every transaction, in interleaved rounds (the median
   round is the figure). Target: >= 2,000 events/s. Not pinned, as the daemon runs: pinned
   to a core other than the one taking the disk's interrupts, each commit waits for a wake-up
   across cores as well (on the 2-vCPU VM of docs/benchmarks.md, about 0.05 ms of 0.45).
2. `verify` of a 1,000,000-event log from an audit bundle on disk (verify_bundle, the code
   behind `evidence-agent verify --bundle`), pinned to one core: tree rebuilt, every
   checkpoint's signature and root checked, consistency with a trusted checkpoint proven; then
   the same with the catalog rows cross-checked (step 4). Target: < 10 s.

Prints one JSON document on stdout (machine and date included); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any

from sqlmodel import Session

from evidence_agent.catalog.custody_log import SqlCustodyLog, log_origin
from evidence_agent.catalog.database import migrate, open_engine
from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.checkpoint import Checkpoint, sign_checkpoint
from evidence_agent.custody.events import CustodyEvent, format_time
from evidence_agent.custody.merkle import MerkleAccumulator
from evidence_agent.custody.signed_note import Ed25519Signer
from evidence_agent.custody.vocabulary import INGEST_FIELDS, EventType
from evidence_agent.domain.states import ClipState, DockState
from evidence_agent.services.audit.verify_bundle import verify_bundle
from evidence_agent.services.bundle_writer import StationExport, write_bundle

STATION = "bench-7"
TARGET_APPENDS_PER_S = 2_000
TARGET_VERIFY_S_PER_MILLION = 10.0
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


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


def pin_to_one_core(cpu: int | None = None) -> int | None:
    try:
        cpu = min(os.sched_getaffinity(0)) if cpu is None else cpu
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return None
    return cpu


def block_interrupts_per_cpu() -> dict[str, list[int]]:
    """Interrupt counts per CPU of the virtio block queues (/proc/interrupts), to tell which
    core takes the disk's completions; empty where there are none."""
    counts: dict[str, list[int]] = {}
    try:
        lines = Path("/proc/interrupts").read_text().splitlines()
    except OSError:
        return counts
    cpus = len(lines[0].split()) if lines else 0
    for line in lines[1:]:
        fields = line.split()
        if fields and "-req." in fields[-1]:
            counts[fields[-1]] = [int(n) for n in fields[1 : 1 + cpus] if n.isdigit()]
    return counts


def file_system_of(path: Path) -> str:
    """The mount's file system type, since fsync cost depends on it."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                _, mount, fstype, *_ = line.split()
                if str(path).startswith(mount) and len(mount) > len(best):
                    best, kind = mount, fstype
    except OSError:
        pass
    return kind


def fsync_rate(workdir: Path, rounds: int = 200) -> dict[str, float]:
    """The disk's own floor: 4 KiB write + fsync, as a commit to the WAL costs at least one."""
    path = workdir / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    latencies = []
    try:
        for _ in range(rounds):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            latencies.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink()
    p50 = statistics.median(latencies)
    return {"fsync_ms_p50": round(p50 * 1e3, 3), "fsyncs_per_s_p50": round(1 / p50)}


class FixedClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def ingest_data(i: int) -> dict[str, Any]:
    """A clip.ingested event's data as cataloguing.ingest_event_data makes it (about 900 bytes)."""
    start = T0 + timedelta(seconds=i * 37)
    path = f"DCIM/100MEDIA/A123456_100231_{start:%Y%m%d%H%M%S}_{i % 10000:04d}.MP4"
    return {
        "blake3": sha256(b"blake3 %d" % i).hexdigest(),  # a stand-in of BLAKE3's 64 hex digits
        "dock_session": f"d05ae261-f21c-4e4d-8923-{i // 50:012d}",
        "duration_seconds": 600,
        "flags": [],
        "important": i % 17 == 0,
        "ingested_at": format_time(T0 + timedelta(hours=9)),
        "media_kind": "video",
        "officer": f"{100000 + i % 997}",
        "probe_error": None,
        "retention_class": "important" if i % 17 == 0 else "standard",
        "retention_until": format_time(T0 + timedelta(days=1095 if i % 17 == 0 else 183)),
        "recorded_end": format_time(start + timedelta(seconds=600)),
        "recorded_start": format_time(start),
        "recorder": f"A{i % 500:06d}",
        "size": 1_000_000_000 + i * 7919,
        "sm3": None,
        "source_path": path,
        "source_path_hex": path.encode().hex(),
        "time_source": "filename",
        "unit": "330100000000",
    }


# ---------------------------------------------------------------- 1. durable appends


def bench_appends(workdir: Path, transactions: int, rounds: int) -> dict[str, Any]:
    engine = open_engine(f"sqlite:///{workdir / 'catalog.sqlite3'}")
    migrate(engine)
    signer = Ed25519Signer.generate(log_origin(STATION))
    custody = SqlCustodyLog(STATION, signer, FixedClock())
    counter = 0

    def events(k: int) -> list[CustodyEvent]:
        nonlocal counter
        out = []
        for _ in range(k):
            counter += 1
            kind = EventType.CLIP_INGESTED.value if counter % 2 else EventType.CLIP_STORED.value
            digest = sha256(counter.to_bytes(8, "big")).hexdigest()
            out.append(
                CustodyEvent(
                    kind,
                    "clip",
                    f"1da9e1cc-1972-4f8b-b66b-{counter:012d}",
                    "service:evidence-agent@bench-7",
                    "read once from the docked recorder into the spool, hashed and catalogued",
                    digest,
                    ingest_data(counter),
                )
            )
        return out

    plan = (
        ("1 event per transaction (a clip's ingest or store)", 1, transactions, False),
        ("2 events per transaction", 2, transactions, False),
        ("100 events per transaction", 100, max(20, transactions // 20), False),
        ("2 events and a signed checkpoint per transaction", 2, transactions // 2, True),
    )
    # Rounds interleave the scenarios, so that the disk's slow spells hit them all alike; each
    # round's rate is kept and the median of the rounds is the figure.
    latencies: dict[str, list[float]] = {name: [] for name, *_ in plan}
    rates: dict[str, list[float]] = {name: [] for name, *_ in plan}
    for round_ in range(1, rounds + 1):
        for name, per_txn, txns, with_checkpoint in plan:
            times = []
            for _ in range(txns):
                batch = events(per_txn)  # made outside the timed commit, as the ingest does
                t0 = time.perf_counter()
                with Session(engine, expire_on_commit=False) as session, session.begin():
                    custody.append_many(session, batch)
                    if with_checkpoint:
                        custody.checkpoint(session)
                times.append(time.perf_counter() - t0)
            latencies[name] += times
            rates[name].append(per_txn * txns / sum(times))
            log(f"appends round {round_}: {name}: {rates[name][-1]:.0f} events/s")
    scenarios = []
    for name, per_txn, txns, _ in plan:
        times = sorted(latencies[name])
        rate = statistics.median(rates[name])
        scenarios.append(
            {
                "scenario": name,
                "events_per_transaction": per_txn,
                "transactions_per_round": txns,
                "rounds": rounds,
                "events_per_s": round(rate),
                "events_per_s_per_round": [round(r) for r in rates[name]],
                "transactions_per_s": round(rate / per_txn),
                "commit_ms_p50": round(statistics.median(times) * 1e3, 3),
                "commit_ms_p99": round(times[int(len(times) * 0.99) - 1] * 1e3, 3),
                "meets_target": rate >= TARGET_APPENDS_PER_S,
            }
        )
    engine.dispose()
    return {
        "what": "SqlCustodyLog.append_many (RFC 8785 encoding, leaf hash, tree head update, "
        "row insert) committed durably; time per transaction from BEGIN IMMEDIATE to COMMIT; "
        "events_per_s is the median of the rounds' rates",
        "sqlite": "journal_mode=WAL, synchronous=FULL (evidence_agent.catalog.database)",
        "file_system": file_system_of(workdir),
        "disk": fsync_rate(workdir),
        "target_events_per_s": TARGET_APPENDS_PER_S,
        "scenarios": scenarios,
    }


# ---------------------------------------------------------------- 2. verify from a bundle


def make_log(n: int, clips_per_dock: int) -> tuple[list[bytes], list[int], list[dict[str, Any]]]:
    """A realistic station log: docks of `clips_per_dock` clips, each ingested and stored.

    Per dock: dock.started, per clip clip.ingested + clip.stored, file.not_ingested,
    dock.finished; a checkpoint after each dock (as the station makes one after each ingest).
    Entries are formatted with json.dumps(sort_keys, compact): for documents without floats
    this is RFC 8785, checked on a sample below. Returns entries, checkpoint sizes, clip rows.
    """
    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    entries: list[bytes] = []
    sizes: list[int] = []
    rows: list[dict[str, Any]] = []
    clip = 0
    dock = 0
    base: dict[str, Any] = {"actor": "service:evidence-agent@bench-7", "station": STATION, "v": 1}

    def add(
        type_: str, kind: str, sid: str, reason: str, data: dict[str, Any], sha: str | None
    ) -> None:
        seq = len(entries)
        doc = {
            **base,
            "seq": seq,
            "time": format_time(T0 + timedelta(milliseconds=seq * 50)),
            "type": type_,
            "subject": {"id": sid, "kind": kind},
            "reason": reason,
            "data": data,
        }
        if sha is not None:
            doc["sha256"] = sha
        entries.append(dumps(doc).encode("utf-8"))

    while len(entries) < n:
        dock += 1
        serial = f"A{dock % 500:06d}"
        session = f"d05ae261-f21c-4e4d-8923-{dock:012d}"
        add(
            EventType.DOCK_STARTED.value,
            "recorder",
            serial,
            "recorder docked (usb)",
            {"dock_session": session, "volume": f"/run/evidence-agent/{serial}"},
            None,
        )
        for _ in range(clips_per_dock):
            if len(entries) >= n - 2:
                break
            clip += 1
            cid = f"1da9e1cc-1972-4f8b-b66b-{clip:012d}"
            digest = sha256(clip.to_bytes(8, "big")).hexdigest()
            data = ingest_data(clip)
            data["dock_session"] = session
            add(
                EventType.CLIP_INGESTED.value,
                "clip",
                cid,
                "read once from the docked recorder into the spool, hashed and catalogued",
                data,
                digest,
            )
            stored_at = format_time(T0 + timedelta(hours=9, seconds=clip))
            add(
                EventType.CLIP_STORED.value,
                "clip",
                cid,
                "written once to the object store and read back: hash equals the ingest hash",
                {
                    "key": f"sha256/{digest[:2]}/{digest[2:4]}/{digest}",
                    "retain_until": None,
                    "size": data["size"],
                    "store": "local store /var/lib/evidence-agent/objects",
                    "stored_at": stored_at,
                },
                digest,
            )
            row = {k: data[k] for k in INGEST_FIELDS}
            row.update(
                {
                    "id": cid,
                    "sha256": digest,
                    "station": STATION,
                    "state": ClipState.STORED.value,
                    "stored_at": stored_at,
                    "legal_hold": False,
                    "retention_grounds": [],
                    "retention_class": data["retention_class"],
                    "retention_until": data["retention_until"],
                }
            )
            rows.append(row)
        if len(entries) < n:
            add(
                EventType.FILE_NOT_INGESTED.value,
                "recorder",
                serial,
                "not_media",
                {
                    "detail": "not a configured video, photo or audio pattern",
                    "dock_session": session,
                    "source_path": "SYSTEM/LOG.TXT",
                },
                None,
            )
        if len(entries) < n:
            add(
                EventType.DOCK_FINISHED.value,
                "recorder",
                serial,
                "dock finished",
                {
                    "clips_known": 0,
                    "clips_new": clips_per_dock,
                    "dock_session": session,
                    "files_not_ingested": 1,
                    "state": DockState.FINISHED.value,
                },
                None,
            )
        sizes.append(len(entries))
    return entries[:n], sorted({s for s in sizes if s <= n} | {n}), rows


def with_key_event(entries: list[bytes], signer: Ed25519Signer) -> list[bytes]:
    """Replace entry 0 by the key.created event every station log starts with."""
    doc = {
        "actor": "user:root",
        "data": {"verifier_key": signer.verifier.key_string()},
        "reason": "first start of the station: its custody log signing key was made",
        "seq": 0,
        "station": STATION,
        "subject": {"id": STATION, "kind": "station"},
        "time": format_time(T0),
        "type": EventType.KEY_CREATED.value,
        "v": 1,
    }
    entries[0] = canonical_json(doc)
    return entries


def sign_all(
    entries: list[bytes], sizes: list[int], signer: Ed25519Signer
) -> Iterator[tuple[int, str]]:
    acc = MerkleAccumulator()
    origin = log_origin(STATION)
    for size in sizes:
        acc.extend_entries(entries[acc.size : size])
        yield size, sign_checkpoint(Checkpoint(origin, size, acc.root()), signer)


def check_sample_is_canonical(entries: list[bytes]) -> None:
    for i in range(0, len(entries), max(1, len(entries) // 500)):
        if canonical_json(json.loads(entries[i])) != entries[i]:
            raise SystemExit(f"bench entry {i} is not RFC 8785")


def bench_verify(workdir: Path, n: int, clips_per_dock: int, repeat: int) -> dict[str, Any]:
    log(f"making a {n}-event log, {clips_per_dock} clips per dock")
    signer = Ed25519Signer.generate(log_origin(STATION))
    entries, sizes, rows = make_log(n, clips_per_dock)
    entries = with_key_event(entries, signer)
    check_sample_is_canonical(entries)
    log(f"signing {len(sizes)} checkpoints")
    notes = list(sign_all(entries, sizes, signer))
    bundles = {}
    for name, catalog in (("log", {}), ("log+catalog", {"clips": rows, "case_clips": []})):
        dest = workdir / f"bundle-{name}"
        log(f"writing {dest}")
        write_bundle(
            dest,
            [
                StationExport(
                    STATION,
                    signer.verifier.key_string(),
                    signer.verifier.public_key_pem(),
                    entries,
                    notes,
                    catalog,
                )
            ],
            created_at=datetime.now(UTC),
            created_by="bench",
        )
        bundles[name] = dest
    # The auditor kept a checkpoint from halfway: step 5 proves the log extends it.
    trusted = workdir / "trusted-checkpoint"
    half = sizes[len(sizes) // 2]
    trusted.write_text(dict(notes)[half], encoding="utf-8")
    mean_bytes = round(sum(map(len, entries)) / len(entries), 1)
    bundle_bytes = sum(p.stat().st_size for p in bundles["log"].rglob("*") if p.is_file())
    clip_rows = len(rows)
    del entries, notes, rows

    results = {}
    for name, dest in bundles.items():
        runs = []
        for run in range(repeat):
            start, cpu_start = time.perf_counter(), time.process_time()
            report = verify_bundle(dest, trusted_checkpoint=trusted)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            if not report.intact:
                raise SystemExit(f"bench bundle did not verify: {report.findings[:3]}")
            runs.append((wall, cpu, report))
            log(f"verify {name} run {run + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU")
        best_wall, _, best = min(runs, key=lambda r: r[0])
        results[name] = {
            "runs_s": [round(w, 3) for w, _, _ in runs],
            "runs_cpu_s": [round(c, 3) for _, c, _ in runs],
            "best_s": round(best_wall, 3),
            "best_cpu_s": round(min(c for _, c, _ in runs), 3),
            "median_s": round(statistics.median(w for w, _, _ in runs), 3),
            "steps_s": {str(s.number): round(s.seconds, 3) for s in best.steps.values()},
            "step_status": {str(s.number): s.status for s in best.steps.values()},
            "entries_parsed": best.logs[0].parsed_entries,
            "meets_target": best_wall < TARGET_VERIFY_S_PER_MILLION * n / 1_000_000,
            "load_average_after": list(os.getloadavg()),
        }
    return {
        "what": "verify_bundle on a bundle on disk (page cache warm), one core (wall "
        "and CPU time: on a shared machine the CPU time is what one free core would take): entries "
        "file hashed against SHA256SUMS, every entry leaf-hashed into the tree and its "
        "position checked, every checkpoint's Ed25519 signature and root checked, consistency "
        "with a trusted checkpoint proven (RFC 9162); 'log+catalog' also parses the events "
        "step 4 needs and cross-checks every clip row",
        "events": n,
        "mean_event_bytes": mean_bytes,
        "clips_per_dock": clips_per_dock,
        "checkpoints": len(sizes),
        "clip_rows": clip_rows,
        "bundle_bytes_log_only": bundle_bytes,
        "trusted_checkpoint_size": half,
        "target_s": TARGET_VERIFY_S_PER_MILLION * n / 1_000_000,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="log size to verify")
    parser.add_argument("--transactions", type=int, default=2_000, help="append transactions")
    parser.add_argument("--append-rounds", type=int, default=5, help="rounds of the appends")
    parser.add_argument("--clips-per-dock", type=int, default=50, help="clips per checkpoint")
    parser.add_argument("--repeat", type=int, default=2, help="verify runs; best is reported")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (a temp dir)")
    parser.add_argument("--cpu", type=int, default=None, help="core to verify on (lowest allowed)")
    parser.add_argument("--skip-appends", action="store_true")
    parser.add_argument("--skip-verify", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-custody-log-") as tmp:
        workdir = Path(tmp)
        result: dict[str, Any] = {
            "benchmark": "custody log: durable appends and verify from a bundle",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "platform": platform.platform(),
                "cpu_model": cpu_model(),
                "cpus_online": os.cpu_count(),
                "disk_interrupts_per_cpu": block_interrupts_per_cpu(),
                "load_average": list(os.getloadavg()),
                "python": platform.python_version(),
                "work_dir": str(workdir),
            },
        }
        if not args.skip_appends:
            result["appends"] = bench_appends(workdir, args.transactions, args.append_rounds)
        if not args.skip_verify:
            result["machine"]["verify_pinned_to_cpu"] = pin_to_one_core(args.cpu)
            result["verify"] = bench_verify(workdir, args.events, args.clips_per_dock, args.repeat)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
