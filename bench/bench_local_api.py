"""Benchmark of the local API: a retrieval and a search through the daemon's socket, against the same run on the station.

One station (local store) with one stored clip of random bytes; the daemon's local API server
runs in this process, on a socket in the work directory, with the same operation table the
daemon serves (review/operations.py api_handler). This process's account is given the clerk's
role in the station's roles file.

  direct_retrieve   the `retrieve` operation run on the station opened here (what
                    `evidence-agent retrieve` does when its account can open the data directory)
  socket_retrieve   the same operation sent over the socket: the daemon reads and verifies the
                    clip and writes it through descriptors this side opened and passed
                    (SCM_RIGHTS), then the receipt
  direct_search / socket_search
                    a `clips search` of every clip (the one), each also logged and signed

Retrievals alternate direct / socket (the order reversed every other round), to memory
(/dev/shm) with the object warm in the page cache, so that the figures are of the two paths
and not of the disk; the ratio is of medians. Searches alternate too; the target is the added
95th percentile. JSON on stdout, progress on stderr; exit 1 when a target is missed.

    .venv/bin/python bench/bench_local_api.py [--size-mib 512] [--rounds 7] [--searches 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_retrieve import NoProber, log, machine_facts, make_object

from evidence_agent.adapters.os_accounts import current_identity
from evidence_agent.config import build_settings
from evidence_agent.services.copy_out import DirectoryTarget
from evidence_agent.services.local_api import ApiServer, call
from evidence_agent.services.station import Station, open_station
from review.operations import api_handler, perform

RETRIEVE_RATIO = 0.95
SEARCH_ADDED_P95_MS = 5.0


def direct(station: Station, name: str, fields: dict[str, Any]) -> Any:
    result, error = perform(
        station,
        current_identity(),
        name,
        fields,
        target=lambda path: DirectoryTarget(Path(path)),
        source=lambda _name: None,
    )
    if error is not None:
        raise error
    return result


def through(sock: Path, name: str, fields: dict[str, Any], target: Path | None = None) -> Any:
    result, error = call(sock, name, fields, target=target)
    if error is not None:
        raise error
    return result


def timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--searches", type=int, default=300)
    args = parser.parse_args()
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="bench-local-api-"))
    memory = Path(tempfile.mkdtemp(prefix="bench-local-api-", dir="/dev/shm"))
    load_before = os.getloadavg()
    settings = build_settings({}, {"EVIDENCE_AGENT_DATA_DIR": str(work / "data")})
    station = open_station(settings, actor="user:bench", prober=NoProber(), sign_acts=True)
    roles = settings.data_dir / "roles.toml"
    roles.write_text(f'[roles.users]\n"{current_identity().user}" = ["clerk"]\n')
    roles.chmod(0o644)
    sock = work / "api.sock"
    server = ApiServer(sock, api_handler(station), environ={}).start()
    try:
        log(f"making a {args.size_mib} MiB clip in {work}")
        clip = make_object(station, work, size)
        retrieve = {"clips": [clip.id], "case": None, "reason": "benchmark"}

        def retrieval(path: str) -> Callable[[], None]:
            def run() -> None:
                out = memory / uuid.uuid4().hex
                fields = {**retrieve, "target": str(out)}
                if path == "socket":
                    through(sock, "retrieve", fields, out)
                else:
                    direct(station, "retrieve", fields)
                shutil.rmtree(out)

            return run

        retrieval("direct")()  # warms the object's pages and both paths
        times: dict[str, list[float]] = {"direct_retrieve": [], "socket_retrieve": []}
        for n in range(args.rounds):
            order = ["direct", "socket"] if n % 2 == 0 else ["socket", "direct"]
            for path in order:
                times[f"{path}_retrieve"].append(timed(retrieval(path)))
            log(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()))

        search = {"limit": 10}
        lat: dict[str, list[float]] = {"direct_search": [], "socket_search": []}
        for n in range(args.searches):
            first_socket = n % 2 == 1
            for path in ("socket", "direct") if first_socket else ("direct", "socket"):
                run = (
                    (lambda: through(sock, "clips.search", search))
                    if path == "socket"
                    else (lambda: direct(station, "clips.search", search))
                )
                lat[f"{path}_search"].append(timed(run) * 1000)
    finally:
        server.stop()
        station.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(memory, ignore_errors=True)
    load_after = os.getloadavg()

    medians = {k: statistics.median(v) for k, v in times.items()}
    ratio = medians["direct_retrieve"] / medians["socket_retrieve"]
    p95 = {k: percentile(v, 95) for k, v in lat.items()}
    p50 = {k: statistics.median(v) for k, v in lat.items()}
    added = p95["socket_search"] - p95["direct_search"]
    passed = ratio >= RETRIEVE_RATIO and added < SEARCH_ADDED_P95_MS
    report = {
        "benchmark": "local_api",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            **machine_facts(),
            "load_average_1_5_15m": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in load_after],
            },
        },
        "size_bytes": size,
        "rounds": args.rounds,
        "searches": args.searches,
        "retrieve_seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "retrieve_mb_s": {k: round(size / v / 1e6) for k, v in medians.items()},
        "socket_vs_direct_retrieve": round(ratio, 3),
        "round_ratios": [
            round(d / s, 3)
            for d, s in zip(times["direct_retrieve"], times["socket_retrieve"], strict=True)
        ],
        "search_ms": {
            "p50": {k: round(v, 3) for k, v in p50.items()},
            "p95": {k: round(v, 3) for k, v in p95.items()},
        },
        "search_added_p95_ms": round(added, 3),
        "target": f"socket retrieval >= {RETRIEVE_RATIO} of direct; search adds < "
        f"{SEARCH_ADDED_P95_MS} ms p95",
        "passed": passed,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
