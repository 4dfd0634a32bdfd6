"""Docking benchmark: 8 recorder volumes docked at once through the daemon vs one stream's `cp -r` + `sync`.

Run: .venv/bin/python bench/bench_dock.py [--recorders 8] [--mib-per-recorder 256] [--workdir DIR]
Prints one JSON document on stdout (figures, machine, date); progress on stderr.

Single stream: `cp -r VOLUME DST && sync` of one recorder volume, from and to the same disk as the
daemon's spool; its rate is bytes / seconds. Docked at once: `evidence-agent run` (the real daemon,
dock-folder source, settle time 0) with every volume renamed into the dock folder in one moment;
the time runs until every dock session is finished (each file read once, hashed, fsynced,
renamed, probed with ffprobe, catalogued with its custody event) and, separately, until every clip
is stored and read back from the local object store. The volumes' pages are evicted from the
page cache before each measured run (bench/page_cache.py); the daemon and ffprobe stay warm. Peak RSS is the daemon process's own maximum.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from page_cache import evict_tree

from evidence_agent.services.demo_recorder import generate_clip

MIB = 1 << 20
CLIP_MIB = 128  # default clip size: a few minutes of 1080p body-worn video
TARGET_RATIO = 0.90
LOG_SINK: int | object = subprocess.DEVNULL  # the daemon's log; a file when --log is given


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_volume(root: Path, serial: str, total_mib: int, index: int, clip_mib: int) -> int:
    """A recorder volume of unique clips (the creation time differs, so every hash differs)."""
    media = root / "DCIM" / "100MEDIA"
    media.mkdir(parents=True)
    now = datetime.now(UTC)
    (root / "RECORDER.JSON").write_text(
        json.dumps(
            {
                "serial": serial,
                "badge": f"1{index:05d}",
                "unit_code": "330100000000",
                "device_time": now.isoformat(),
            }
        )
    )
    start = now - timedelta(hours=3, minutes=index)
    made = 0
    seq = 1
    while made < total_mib:
        size = min(clip_mib, total_mib - made)
        seconds = 4.0
        moment = start + timedelta(seconds=10 * seq)
        name = f"{serial}_1{index:05d}_{moment.strftime('%Y%m%d%H%M%S')}_{seq:04d}.MP4"
        generate_clip(
            media / name,
            seconds=seconds,
            creation_time=moment,
            size="320x180",
            bitrate=int(size * MIB * 8 / seconds),
        )
        made += max(1, (media / name).stat().st_size // MIB)
        seq += 1
    return sum(p.stat().st_size for p in media.iterdir())


def timed_cp(src: Path, dst: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["sh", "-c", f"cp -r '{src}' '{dst}' && sync"], check=True)
    return time.perf_counter() - started


def count(db: Path, sql: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def dock_all(agent: str, volumes: list[Path], data: Path, max_concurrent: int) -> dict[str, float]:
    """Run the daemon, dock every volume at once, time it, stop it, read its peak RSS."""
    dock = data / "dock"
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data),
        "EVIDENCE_AGENT__DOCK__SOURCES": '["folder"]',
        "EVIDENCE_AGENT__DOCK__SETTLE_SECONDS": "0",
        "EVIDENCE_AGENT__DOCK__METRICS_PORT": "0",
        "EVIDENCE_AGENT__DOCK__MAX_CONCURRENT": str(max_concurrent),
        "EVIDENCE_AGENT__STATION__ID": "bench-station",
    }
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    # schema, key: a command that writes makes the station (read-only ones refuse a new one)
    subprocess.run([agent, "custody", "checkpoint"], env=env, check=True, capture_output=True)
    staged = data / "staged"
    staged.mkdir()
    for volume in volumes:
        shutil.copytree(volume, staged / volume.name, copy_function=os.link)  # no data copied
    dock.mkdir(parents=True, exist_ok=True)
    db = data / "catalog.sqlite3"
    evict_tree(staged)
    proc = subprocess.Popen([agent, "run"], env=env, stderr=LOG_SINK)
    try:
        while not dock.is_dir() or count(db, "SELECT count(*) FROM custody_entries") < 1:
            time.sleep(0.05)
        time.sleep(1.0)  # the dock-folder watch is set up
        started = time.perf_counter()
        for volume in volumes:
            (staged / volume.name).rename(dock / volume.name)
        finished_s = stored_s = None
        while stored_s is None:
            done = count(db, "SELECT count(*) FROM dock_sessions WHERE state = 'finished'")
            if finished_s is None and done == len(volumes):
                finished_s = time.perf_counter() - started
            if finished_s is not None:
                waiting = count(db, "SELECT count(*) FROM clips WHERE state = 'spooled'")
                if waiting == 0:
                    stored_s = time.perf_counter() - started
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {proc.returncode}")
            time.sleep(0.02)
        clips = count(db, "SELECT count(*) FROM clips")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "all_docks_finished_s": finished_s,
        "all_clips_stored_s": stored_s,
        "clips": clips,
        "daemon_peak_rss_mib": usage.ru_maxrss / 1024,
        "daemon_cpu_user_s": usage.ru_utime,
        "daemon_cpu_system_s": usage.ru_stime,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recorders", type=int, default=8)
    parser.add_argument("--mib-per-recorder", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/evidence-bench-dock"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clip-mib", type=int, default=CLIP_MIB)
    parser.add_argument("--log", type=Path, help="write the daemon's log here")
    args = parser.parse_args()
    global LOG_SINK
    if args.log is not None:
        LOG_SINK = args.log.open("w")

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    agent = str(Path(sys.executable).with_name("evidence-agent"))
    log(f"making {args.recorders} recorder volumes of {args.mib_per_recorder} MiB in {work} ...")
    volumes = []
    total = 0
    for i in range(args.recorders):
        volume = work / "volumes" / f"R{i:06d}"
        total += make_volume(volume, f"R{i:06d}", args.mib_per_recorder, i, args.clip_mib)
        volumes.append(volume)
    files = sum(len(list((v / "DCIM" / "100MEDIA").iterdir())) for v in volumes)
    one_volume = sum(p.stat().st_size for p in (volumes[0] / "DCIM" / "100MEDIA").iterdir())

    runs = []
    for r in range(args.rounds):
        dst = work / "cp-dst"
        shutil.rmtree(dst, ignore_errors=True)
        evict_tree(volumes[0])
        cp_s = timed_cp(volumes[0], dst)
        shutil.rmtree(dst)
        data = work / "agent-data"
        shutil.rmtree(data, ignore_errors=True)
        load = os.getloadavg()[0]
        docked = dock_all(agent, volumes, data, args.recorders)
        shutil.rmtree(data)
        single_rate = one_volume / cp_s
        aggregate = total / docked["all_docks_finished_s"]
        run = {
            "single_stream_cp_sync_s": cp_s,
            "single_stream_mib_s": single_rate / MIB,
            **docked,
            "aggregate_mib_s": aggregate / MIB,
            "aggregate_including_store_mib_s": total / docked["all_clips_stored_s"] / MIB,
            "ratio": aggregate / single_rate,
            "load_average_1min_before": load,
        }
        runs.append(run)
        log(
            f"round {r + 1}: single stream {run['single_stream_mib_s']:.0f} MiB/s, "
            f"{args.recorders} at once {run['aggregate_mib_s']:.0f} MiB/s "
            f"(ratio {run['ratio']:.2f}), stored after {docked['all_clips_stored_s']:.1f} s, "
            f"RSS {docked['daemon_peak_rss_mib']:.0f} MiB"
        )

    best_single = max(r["single_stream_mib_s"] for r in runs)
    best_aggregate = max(r["aggregate_mib_s"] for r in runs)
    result = {
        "benchmark": f"{args.recorders} recorders docked at once vs one stream's cp -r + sync",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "memory_gib": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
            ),
            "python": platform.python_version(),
        },
        "volumes": {
            "recorders": args.recorders,
            "bytes": total,
            "files": files,
            "clip_mib": args.clip_mib,
        },
        "runs": runs,
        "best_single_stream_mib_s": best_single,
        "best_aggregate_mib_s": best_aggregate,
        "ratio": best_aggregate / best_single,
        "median_ratio": sorted(r["ratio"] for r in runs)[len(runs) // 2],
        "target_ratio": TARGET_RATIO,
        "daemon_peak_rss_mib": max(r["daemon_peak_rss_mib"] for r in runs),
        "bench_process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


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
