"""Benchmark of disclosure: a package of several GB produced, against `cp -r` + `sync` of the same files.

A station with the local object store holds `--clips` clips of random bytes (`--size-mib`
each), catalogued as stored with their ingest events. Each round, in alternating order:
  copy      `cp -r` of the store's object directory (exactly those files) + `sync`;
  produce   `evidence-agent disclose produce` of an approved disclosure of every clip (a new
            request, approved by a second person, before each run: not timed), which copies
            each original out once verified against its ingest hash, fsyncs it, logs it,
            signs a checkpoint, writes proofs, receipts (HTML and PDF), manifests and checks
            that the bag holds exactly the files written.
The source files' pages are evicted before every run (cold: as clips kept for months are
read) and every target starts empty with nothing left to write back. The target is a rate at
least 0.9 of the copy's (medians), with the produce command's peak RSS at most 150 MB (from
wait4 of that process). JSON on stdout, progress on stderr; exit status 1 when a target is
missed. The files are removed at the end.

    .venv/bin/python bench/bench_disclosure.py [--clips 4] [--size-mib 1100] [--rounds 2]
        [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_retrieve import NoProber, drop_cache, file_system, log, machine_facts, make_object

from evidence_agent.config import build_settings
from evidence_agent.domain.roles import Caller, Identity, Role
from evidence_agent.services.station import Station, open_station
from publish.disclosure.requests import DisclosureRequest, decide_disclosure, request_disclosure

TARGET_RATIO = 0.90
TARGET_RSS_MB = 150
EA = Path(sys.executable).with_name("evidence-agent")
USER = __import__("pwd").getpwuid(os.getuid()).pw_name
CLERK = Caller(Identity(USER, os.getuid()), frozenset({Role.CLERK}), None)
BOSS = Caller(Identity("bench-supervisor", 1_000_002), frozenset({Role.SUPERVISOR}), None)


def approved(station: Station, clips: list[str]) -> str:
    asked = request_disclosure(
        station, CLERK, DisclosureRequest("Benchmark court", "benchmark", None, clips)
    )
    decide_disclosure(station, BOSS, asked["id"], "benchmark", approve=True)
    return str(asked["id"])


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Seconds and peak RSS (kB) of one command, from wait4 of its process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[:3]} failed with status {process.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--size-mib", type=int, default=1100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()
    size = args.size_mib << 20
    total = size * args.clips
    work = Path(tempfile.mkdtemp(prefix="bench-disclosure-", dir=args.dir))
    data = work / "data"
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data)}
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    try:
        station = open_station(
            build_settings({}, {"EVIDENCE_AGENT_DATA_DIR": str(data)}),
            actor="user:bench",
            prober=NoProber(),
        )
        (data / "roles.toml").write_text(f'[roles.users]\n{USER} = ["clerk"]\n')
        log(f"making {args.clips} clips of {args.size_mib} MiB in {work}")
        clips = [make_object(station, work, size) for _ in range(args.clips)]
        sources = [data / "objects" / "sha256" / c.sha256[:2] / c.sha256[2:4] / c.sha256
                   for c in clips]  # fmt: skip
        objects = data / "objects"
        seconds: dict[str, list[float]] = {"copy": [], "produce": []}
        rss_kb: list[int] = []
        for round_no in range(args.rounds):
            order = ["copy", "produce"] if round_no % 2 == 0 else ["produce", "copy"]
            for name in order:
                target = work / f"target-{name}"
                shutil.rmtree(target, ignore_errors=True)
                disclosure = approved(station, [c.id for c in clips]) if name == "produce" else ""
                subprocess.run(["sync"], check=True)
                for source in sources:
                    drop_cache(source)
                if name == "copy":
                    start = time.perf_counter()
                    subprocess.run(["cp", "-r", str(objects), str(target)], check=True)
                    subprocess.run(["sync"], check=True)
                    took = time.perf_counter() - start
                else:
                    command = [str(EA), "disclose", "produce", disclosure, "--to", str(target)]
                    took, rss = timed(command, env)
                    rss_kb.append(rss)
                seconds[name].append(took)
                log(
                    f"round {round_no + 1} {name:8} {took:7.2f} s {total / took / 1e6:6.0f} MB/s"
                    f"  load {os.getloadavg()[0]:.2f}"
                )
                shutil.rmtree(target, ignore_errors=True)
        station.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in seconds.items()}
    ratio = medians["copy"] / medians["produce"]
    peak_mb = max(rss_kb) / 1024
    result: dict[str, Any] = {
        "benchmark": "disclosure",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "file_system": file_system(args.dir),
        "clips": args.clips,
        "package_payload_bytes": total,
        "rounds": args.rounds,
        "rounds_seconds": {k: [round(s, 3) for s in v] for k, v in seconds.items()},
        "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "mb_per_s": {k: round(total / v / 1e6, 1) for k, v in medians.items()},
        # the target: production's rate against a plain durable copy of the same files
        "produce_vs_cp_sync": round(ratio, 3),
        "produce_vs_cp_sync_per_round": [
            round(c / p, 3) for c, p in zip(seconds["copy"], seconds["produce"], strict=True)
        ],
        "produce_peak_rss_mb": round(peak_mb, 1),
        "targets": {"produce_vs_cp_sync": TARGET_RATIO, "peak_rss_mb": TARGET_RSS_MB},
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if ratio >= TARGET_RATIO and peak_mb <= TARGET_RSS_MB else 1


if __name__ == "__main__":
    sys.exit(main())
