"""Load benchmark: 8 recorders docked by the daemon alone, and while 50 callers use its local API.

Run (as root: the callers are OS accounts made with useradd and removed afterwards):
  .venv/bin/python bench/bench_api_load.py [--recorders 8] [--mib-per-recorder 1536]
      [--callers 50] [--accounts 5] [--pairs 2] [--workdir DIR]
Prints one JSON document on stdout (figures, machine, load, date); progress on stderr.

Each round is a fresh station: a small volume ingested first (the clips the callers retrieve),
the roles file naming the accounts as clerks, then `evidence-agent run` (the real daemon,
dock-folder source, settle time 0, its socket group the callers'), and the recorder volumes,
evicted from the page cache, renamed into the dock folder in one moment. A dock's duration runs
from that moment until its dock session is finished (every file read once, hashed, fsynced,
probed, catalogued with its custody event). In a loaded round the callers, `--accounts`
processes of `--callers / --accounts` threads each running as its own account, send requests
through the socket without pause from before the docks begin until the last has finished, each
thread in turn: a `clips search`, a verified retrieval of a seeded clip into a directory of its
account's on the same disk, a case edit (link or unlink a clip of the thread's own case, made
first). Rounds come in pairs, alone and loaded, the order reversed every other pair.

Reported: each recorder's dock duration loaded over alone (the median of its pairs; the target
is that none exceeds 1.10), requests sent against answered (a lost connection is not answered;
target: equal), and per account the acts its answered requests made against the custody events
the station logged under its name (target: equal).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pwd
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from bench_dock import make_volume
from bench_retrieve import log, machine_facts
from page_cache import evict_tree

from evidence_agent.services.local_api import call

TARGET_RATIO = 1.10
SEED_CLIP_MIB = 32  # what a caller retrieves: a short incident clip
# Custody events an answered request leaves, by what the request did.
ACT_EVENTS = {
    "case.create": "case.created",
    "case.link": "case.clip_linked",
    "case.unlink": "case.clip_unlinked",
    "clips.search": "clips.searched",
    "retrieve": "clip.retrieved",
}
LOG_SINK: Any = subprocess.DEVNULL


@contextmanager
def accounts(count: int) -> Iterator[tuple[list[str], str]]:
    """`count` OS accounts in one new group (the daemon's socket group), removed afterwards."""
    run = uuid.uuid4().hex[:6]
    group = f"eabg{run}"
    names = [f"eab{run}{n}" for n in range(count)]
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    made: list[str] = []
    try:
        for name in names:
            subprocess.run(
                ["useradd", "-M", "-s", "/usr/sbin/nologin", "-G", group, name],
                check=True,
                capture_output=True,
            )
            made.append(name)
        yield names, group
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True, check=False)
        subprocess.run(["groupdel", group], capture_output=True, check=False)


def caller_process(
    account: str,
    group_gid: int,
    sock: str,
    threads: int,
    clips: list[str],
    out: str,
    ready: Any,
    stop: Event,
    results: Any,
) -> None:
    """One account's callers: this process becomes the account, then `threads` of it call."""
    entry = pwd.getpwnam(account)
    os.setgroups([group_gid])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    tallies: list[dict[str, Any]] = []

    def caller(n: int) -> None:
        sent: Counter[str] = Counter()
        answered: Counter[str] = Counter()  # a reply came, a result or an error
        done: Counter[str] = Counter()  # ... and it was a result: the act was made
        errors: list[str] = []
        seconds: list[float] = []  # each answered request's, as its caller waited
        case = f"LOAD-{account}-{n}"

        def request(op: str, fields: dict[str, Any], target: Path | None = None) -> None:
            sent[op] += 1
            began = time.perf_counter()
            try:
                _, error = call(Path(sock), op, fields, target=target)
            except Exception as e:  # noqa: BLE001 - a lost request is what is counted
                errors.append(f"{op}: lost: {e}")
                return
            seconds.append(time.perf_counter() - began)
            answered[op] += 1
            if error is not None:
                errors.append(f"{op}: {error.message}")
            else:
                done[op] += 1

        request("case.create", {"number": case, "type": "other", "reason": "load"})
        ready.put(account)
        linked = False
        turn = n
        while not stop.is_set():
            clip = clips[turn % len(clips)]
            kind = turn % 3
            if kind == 0:
                request("clips.search", {"limit": 20})
            elif kind == 1:
                target = Path(out) / uuid.uuid4().hex
                fields = {"clips": [clip], "case": None, "target": str(target), "reason": "load"}
                request("retrieve", fields, target)
                shutil.rmtree(target, ignore_errors=True)
            else:
                op = "case.unlink" if linked else "case.link"
                request(op, {"number": case, "clips": [clips[n % len(clips)]], "reason": "load"})
                linked = not linked
            turn += 1
        tallies.append(
            {"sent": sent, "answered": answered, "done": done, "errors": errors, "s": seconds}
        )

    workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sent: Counter[str] = sum((t["sent"] for t in tallies), Counter())
    answered: Counter[str] = sum((t["answered"] for t in tallies), Counter())
    done: Counter[str] = sum((t["done"] for t in tallies), Counter())
    errors = [e for t in tallies for e in t["errors"]]
    seconds = [s for t in tallies for s in t["s"]]
    results.put(
        {
            "account": account,
            "sent": sent,
            "answered": answered,
            "done": done,
            "errors": errors,
            "seconds": seconds,
        }
    )


def db_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:
        return []
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def acts_logged(db: Path) -> Counter[str]:
    """Custody events of the callers' kinds, by actor."""
    types = ", ".join(f"'{t}'" for t in ACT_EVENTS.values())
    rows = db_rows(db, f"SELECT entry FROM custody_entries WHERE event_type IN ({types})")
    return Counter(json.loads(entry)["actor"] for (entry,) in rows)


def run_round(
    agent: str,
    args: argparse.Namespace,
    volumes: list[Path],
    seed: Path,
    names: list[str],
    group: str,
    *,
    loaded: bool,
) -> dict[str, Any]:
    work: Path = args.workdir
    data = work / "agent-data"
    shutil.rmtree(data, ignore_errors=True)
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data),
        "EVIDENCE_AGENT__DOCK__SOURCES": '["folder"]',
        "EVIDENCE_AGENT__DOCK__SETTLE_SECONDS": "0",
        "EVIDENCE_AGENT__DOCK__METRICS_PORT": "0",
        "EVIDENCE_AGENT__DOCK__MAX_CONCURRENT": str(len(volumes)),
        "EVIDENCE_AGENT__STATION__ID": "bench-station",
        # Outside the data directory, which is root's alone: the callers reach only the socket.
        "EVIDENCE_AGENT__PATHS__API_SOCKET": str(work / "api.sock"),
    }
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    subprocess.run([agent, "ingest", str(seed)], env=env, capture_output=True, check=False)
    roles = data / "roles.toml"
    roles.write_text("[roles.users]\n" + "".join(f'{n} = ["clerk"]\n' for n in names))
    roles.chmod(0o644)
    db = data / "catalog.sqlite3"
    clips = [r[0] for r in db_rows(db, "SELECT id FROM clips WHERE state = 'stored'")]
    assert clips, "the seed volume was not ingested"
    staged = data / "staged"
    staged.mkdir()
    for volume in volumes:
        shutil.copytree(volume, staged / volume.name, copy_function=os.link)
    dock = data / "dock"
    dock.mkdir(parents=True, exist_ok=True)
    evict_tree(staged)
    sock = work / "api.sock"
    load_before = os.getloadavg()
    proc = subprocess.Popen([agent, "run"], env=env, stderr=LOG_SINK, group=group)
    callers: list[multiprocessing.Process] = []
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    results = ctx.Queue()
    try:
        while not sock.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {proc.returncode}")
            time.sleep(0.05)
        time.sleep(1.0)  # the dock-folder watch is set up
        if loaded:
            callers = start_callers(ctx, args, names, group, sock, clips, work, stop, results)
        started = time.perf_counter()
        for volume in volumes:
            (staged / volume.name).rename(dock / volume.name)
        durations = wait_for_docks(db, [v.name for v in volumes], started, proc)
        stop.set()
        tallies = [results.get(timeout=600) for _ in callers]
        for p in callers:
            p.join()
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(proc.pid, 0)
    logged = acts_logged(db)
    shutil.rmtree(data, ignore_errors=True)
    return {
        "loaded": loaded,
        "dock_seconds": durations,
        "all_docks_finished_s": max(durations.values()),
        "daemon_exit": os.waitstatus_to_exitcode(status),
        "daemon_cpu_user_s": usage.ru_utime,
        "daemon_cpu_system_s": usage.ru_stime,
        "load_average_1min_before": round(load_before[0], 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "callers": tally(tallies, logged) if loaded else None,
    }


def start_callers(
    ctx: Any,
    args: argparse.Namespace,
    names: list[str],
    group: str,
    sock: Path,
    clips: list[str],
    work: Path,
    stop: Event,
    results: Any,
) -> list[multiprocessing.Process]:
    """Every caller started and past its first request (its case made) before docks begin."""
    gid = int(subprocess.run(["getent", "group", group], capture_output=True, text=True,
                             check=True).stdout.split(":")[2])  # fmt: skip
    ready = ctx.Queue()
    per_account = [args.callers // len(names)] * len(names)
    for n in range(args.callers % len(names)):
        per_account[n] += 1
    processes = []
    for name, threads in zip(names, per_account, strict=True):
        out = work / "out" / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        shutil.chown(out, name)
        p = ctx.Process(
            target=caller_process,
            args=(name, gid, str(sock), threads, clips, str(out), ready, stop, results),
        )
        p.start()
        processes.append(p)
    for _ in range(args.callers):
        ready.get(timeout=600)
    return processes


def wait_for_docks(
    db: Path, names: list[str], started: float, proc: subprocess.Popen[bytes]
) -> dict[str, float]:
    durations: dict[str, float] = {}
    while len(durations) < len(names):
        for volume, state in db_rows(db, "SELECT volume, state FROM dock_sessions"):
            name = Path(volume).name
            if name in names and state == "finished" and name not in durations:
                durations[name] = round(time.perf_counter() - started, 3)
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}")
        time.sleep(0.05)
    return durations


def tally(tallies: list[dict[str, Any]], logged: Counter[str]) -> dict[str, Any]:
    per_account = {}
    for t in tallies:
        acts = sum(n for op, n in t["done"].items() if op in ACT_EVENTS)
        per_account[t["account"]] = {
            "sent": sum(t["sent"].values()),
            "answered": sum(t["answered"].values()),
            "done_by_operation": dict(t["done"]),
            "acts": acts,
            "logged": logged.get(f"user:{t['account']}", 0),
            "errors": t["errors"][:5],
            "error_count": len(t["errors"]),
        }
    seconds = sorted(s for t in tallies for s in t["seconds"])
    return {
        "request_seconds": {
            "p50": round(seconds[len(seconds) // 2], 3) if seconds else None,
            "p95": round(seconds[int(len(seconds) * 0.95)], 3) if seconds else None,
            "max": round(seconds[-1], 3) if seconds else None,
        },
        "sent": sum(a["sent"] for a in per_account.values()),
        "answered": sum(a["answered"] for a in per_account.values()),
        "errors": sum(a["error_count"] for a in per_account.values()),
        "acts_equal_logged": all(a["acts"] == a["logged"] for a in per_account.values()),
        "per_account": per_account,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recorders", type=int, default=8)
    parser.add_argument("--mib-per-recorder", type=int, default=1536)
    parser.add_argument("--clip-mib", type=int, default=128)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--accounts", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/evidence-bench-api-load"))
    parser.add_argument("--log", type=Path, help="write the daemons' logs here")
    args = parser.parse_args()
    global LOG_SINK
    if args.log is not None:
        LOG_SINK = args.log.open("w")
    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    work.chmod(0o755)
    agent = str(Path(sys.executable).with_name("evidence-agent"))
    log(f"making {args.recorders} volumes of {args.mib_per_recorder} MiB in {work} ...")
    volumes = []
    for i in range(args.recorders):
        volume = work / "volumes" / f"R{i:06d}"
        make_volume(volume, f"R{i:06d}", args.mib_per_recorder, i, args.clip_mib)
        volumes.append(volume)
    seed = work / "seed" / "S000001"
    make_volume(seed, "S000001", 4 * SEED_CLIP_MIB, 99, SEED_CLIP_MIB)
    total = sum(p.stat().st_size for v in volumes for p in v.rglob("*.MP4"))
    load_before = os.getloadavg()
    pairs = []
    try:
        with accounts(args.accounts) as (names, group):
            for n in range(args.pairs):
                order = [False, True] if n % 2 == 0 else [True, False]
                pair = {}
                for loaded in order:
                    r = run_round(agent, args, volumes, seed, names, group, loaded=loaded)
                    pair["loaded" if loaded else "alone"] = r
                    log(
                        f"pair {n + 1} {'loaded' if loaded else 'alone'}: all docks "
                        f"{r['all_docks_finished_s']:.1f} s"
                        + (
                            f", {r['callers']['answered']}/{r['callers']['sent']} answered, "
                            f"acts = logged: {r['callers']['acts_equal_logged']}"
                            if loaded
                            else ""
                        )
                    )
                pairs.append(pair)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = summarize(pairs, [v.name for v in volumes])
    report.update(
        {
            "benchmark": "api_load",
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": {
                **machine_facts(),
                "load_average_1_5_15m": {
                    "before": [round(x, 2) for x in load_before],
                    "after": [round(x, 2) for x in os.getloadavg()],
                },
            },
            "volumes": {"recorders": args.recorders, "bytes": total, "clip_mib": args.clip_mib},
            "callers": args.callers,
            "accounts": args.accounts,
            "pairs": pairs,
        }
    )
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if report["passed"] else 1


def summarize(pairs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    ratios = {
        name: [p["loaded"]["dock_seconds"][name] / p["alone"]["dock_seconds"][name] for p in pairs]
        for name in names
    }
    per_dock = {name: round(statistics.median(r), 3) for name, r in ratios.items()}
    loaded = [p["loaded"]["callers"] for p in pairs]
    sent = sum(c["sent"] for c in loaded)
    answered = sum(c["answered"] for c in loaded)
    acts_equal = all(c["acts_equal_logged"] for c in loaded)
    worst = max(per_dock.values())
    return {
        "dock_ratio_loaded_over_alone": per_dock,
        "worst_dock_ratio": worst,
        "all_docks_ratio": round(
            statistics.median(p["loaded"]["all_docks_finished_s"] for p in pairs)
            / statistics.median(p["alone"]["all_docks_finished_s"] for p in pairs),
            3,
        ),
        "requests_sent": sent,
        "requests_answered": answered,
        "acts_equal_logged": acts_equal,
        "target": f"no dock slower than {TARGET_RATIO} of alone; every request answered; "
        "every act logged under its caller",
        "passed": worst <= TARGET_RATIO and sent == answered and acts_equal,
    }


if __name__ == "__main__":
    sys.exit(main())
