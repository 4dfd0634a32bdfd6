"""Ingest benchmark: `evidence-agent ingest` of a multi-GB recorder volume against `cp -r` + `sync`.

Run: .venv/bin/python bench/bench_ingest.py [--gib 4] [--workdir DIR]
Prints one JSON document on stdout (figures, machine, date); progress on stderr.

Both sides copy the same files from the same disk to the same disk. The volume's pages are
evicted from the page cache before each measured run (bench/page_cache.py), so both read it
from disk; the programs themselves stay warm, as on a docking station. The ingest
side is the whole command as an officer's dock runs it: read once (direct I/O where the file
systems allow it), hash (SHA-256), fsync, atomic rename, ffprobe, catalogue with custody events,
store in the local object store (a hard link to the file just hashed, on the spool's file
system) with its custody event. Peak RSS is the ingest process's own maximum resident set.

Two ingest figures are taken in each round:
- `cli`: `evidence-agent ingest` + `sync`, interpreter start and imports (about 0.7 s) included;
- `service`: the same ingest and store services as a running daemon calls them on a dock event
  (`ingest_volume` with a `StoreWorker`), in a process started and warmed before the clock
  starts, + `sync`. This is what an officer waits for at the dock.
Every other round runs the three in reverse order, so load on the machine hits both alike; the
ratio reported is the best agent time over the best `cp` time, with the median of the rounds'
own ratios beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from page_cache import evict_tree

from evidence_agent.services.demo_recorder import generate_clip

MIB = 1 << 20
# Several clip sizes, as a shift's footage has: long patrol clips and short incident clips.
SIZES_MIB = [
    1024,
    512,
    512,
    256,
    256,
    256,
    128,
    128,
    128,
    128,
    64,
    64,
    64,
    64,
    32,
    32,
    32,
    32,
    16,
    16,
    16,
    16,
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_volume(root: Path, total_mib: int) -> int:
    media = root / "DCIM" / "100MEDIA"
    media.mkdir(parents=True)
    (root / "RECORDER.JSON").write_text(
        json.dumps(
            {
                "serial": "B000001",
                "badge": "100231",
                "unit_code": "330100000000",
                "device_time": datetime.now(UTC).isoformat(),
            }
        )
    )
    sizes = []
    while sum(sizes) < total_mib:
        sizes.extend(SIZES_MIB)
    start = datetime.now(UTC) - timedelta(hours=3)
    made = 0
    for i, size in enumerate(sizes):
        if made >= total_mib:
            break
        seconds = 8.0
        bitrate = int(size * MIB * 8 / seconds)
        name = f"B000001_100231_{(start + timedelta(minutes=i)).strftime('%Y%m%d%H%M%S')}_{i + 1:04d}.MP4"
        generate_clip(
            media / name,
            seconds=seconds,
            creation_time=start + timedelta(minutes=i),
            size="320x180",
            bitrate=bitrate,
        )
        made += (media / name).stat().st_size // MIB
    return sum(p.stat().st_size for p in media.iterdir())


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall time and the process's peak RSS in KiB."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{cmd[0]} failed ({code}): {stderr}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/evidence-bench"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    volume = work / "volume"
    log(f"making a {args.gib} GiB recorder volume in {volume} ...")
    total = make_volume(volume, int(args.gib * 1024))
    files = len(list((volume / "DCIM" / "100MEDIA").iterdir()))
    agent = str(Path(sys.executable).with_name("evidence-agent"))

    runs: list[dict[str, float]] = []
    data = work / "agent-data"
    env = {**os.environ, "EVIDENCE_AGENT_DATA_DIR": str(data)}

    def fresh_station() -> None:
        shutil.rmtree(data, ignore_errors=True)
        # key, schema: a command that writes makes the station (read-only ones refuse a new one)
        subprocess.run([agent, "custody", "checkpoint"], env=env, check=True, capture_output=True)

    def run_cp() -> dict[str, float]:
        dst = work / "cp-dst"
        shutil.rmtree(dst, ignore_errors=True)
        evict_tree(volume)
        seconds, _ = timed(["sh", "-c", f"cp -r '{volume}' '{dst}' && sync"])
        shutil.rmtree(dst)
        return {"cp_sync_s": seconds}

    def run_cli() -> dict[str, float]:
        fresh_station()
        evict_tree(volume)
        # wait4 reports the largest resident set among `sh` and the children it waited for:
        # the agent's own.
        cmd = ["sh", "-c", f"'{agent}' ingest --json '{volume}' >/dev/null && sync"]
        seconds, rss_kib = timed(cmd, env=env)
        return {"cli_ingest_sync_s": seconds, "peak_rss_mib": rss_kib / 1024}

    def run_service() -> dict[str, float]:
        fresh_station()
        return {"service_ingest_sync_s": service_run(volume, env)}

    for r in range(args.rounds):
        # Every other round runs the other way round, so load that comes and goes (and the
        # disk's own moods) hits the baseline and the agent alike.
        order = [run_cp, run_cli, run_service]
        if r % 2:
            order.reverse()
        run: dict[str, float] = {}
        for measure in order:
            run.update(measure())
        shutil.rmtree(data, ignore_errors=True)
        run["cli_ratio"] = run["cli_ingest_sync_s"] / run["cp_sync_s"]
        run["service_ratio"] = run["service_ingest_sync_s"] / run["cp_sync_s"]
        runs.append(run)
        log(
            f"round {r + 1}: cp+sync {run['cp_sync_s']:.2f}s, "
            f"cli ingest {run['cli_ingest_sync_s']:.2f}s, "
            f"service ingest {run['service_ingest_sync_s']:.2f}s, "
            f"RSS {run['peak_rss_mib']:.0f} MiB"
        )

    best_cp = min(r["cp_sync_s"] for r in runs)
    best_cli = min(r["cli_ingest_sync_s"] for r in runs)
    best_service = min(r["service_ingest_sync_s"] for r in runs)
    result = {
        "benchmark": "ingest vs cp -r + sync",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "volume": {"bytes": total, "files": files},
        "source_cache": "volume evicted before each run (POSIX_FADV_DONTNEED)",
        "runs": runs,
        "best_cp_sync_s": best_cp,
        "best_cli_ingest_s": best_cli,
        "best_service_ingest_s": best_service,
        "cli_ratio": best_cli / best_cp,
        "service_ratio": best_service / best_cp,
        "median_round_cli_ratio": statistics.median(r["cli_ratio"] for r in runs),
        "median_round_service_ratio": statistics.median(r["service_ratio"] for r in runs),
        "load_average": os.getloadavg(),
        "target_ratio": 1.15,
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "target_rss_mib": 150,
    }
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


SERVICE = """
import os, sys, time
from pathlib import Path
from evidence_agent.config import load_settings
from evidence_agent.services.ingest import ingest_volume
from evidence_agent.services.station import open_station
from evidence_agent.services.storing import StoreWorker

station = open_station(load_settings(), actor="user:bench")
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.readline()  # the volume is out of the page cache now
t0 = time.perf_counter()
worker = StoreWorker(station).start()
try:
    ingest_volume(station, Path(sys.argv[1]), source="folder", on_clip=worker.submit)
finally:
    report = worker.finish()
os.sync()
elapsed = time.perf_counter() - t0
station.close()
if report.failed or report.integrity_failures:
    raise SystemExit(f"store failed: {report.to_json()}")
sys.stdout.write(f"{elapsed}\\n")
"""


def service_run(volume: Path, env: dict[str, str]) -> float:
    """Ingest and store as the daemon does on a dock event, timed inside a warmed process."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVICE, str(volume)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit("the service run did not start")
    evict_tree(volume)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    out = proc.stdout.readline()
    if proc.wait() != 0 or not out.strip():
        raise SystemExit("the service run failed")
    return float(out)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
