"""Catalog search benchmark: by officer and time window over 1,000,000 clips, SQLite and PostgreSQL.

Run: .venv/bin/python bench/bench_search.py [--clips 1000000] [--queries 200] [--backend both]
Prints one JSON document on stdout (figures, machine, date); progress on stderr.

Each catalog is created by the agent's own migrations (`open_engine` + `migrate`); PostgreSQL 15 is
started for the run on loopback (initdb as the `postgres` user, as the test suite does). The rows
are bulk-inserted directly (executemany on SQLite, COPY on PostgreSQL), with a realistic shape:

- 40 units, 2,000 officers each with their own recorder; officers' activity is skewed
  (log-normal weights: a few record far more than most);
- a year of clips, in day and night shifts, 30 s to 30 min long, 5 % marked important;
- `ANALYZE` afterwards, as a maintained database has.

A fifth of the queries are for the 20 busiest officers (their month windows return the most rows).

The measured call is what `evidence-agent clips list` and the review search run:
`evidence_agent.catalog.queries.clip_views(session, officer=..., since=..., until=..., limit=100)`,
with a random officer and a random window (a day, a week or a month), on a warm catalog. The
target is p95 under 50 ms on each backend.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy.engine import Engine  # noqa: E402
from sqlmodel import Session  # noqa: E402

from evidence_agent.catalog.database import migrate, open_engine  # noqa: E402
from evidence_agent.catalog.queries import clip_views  # noqa: E402

UNITS = 40
OFFICERS = 2_000
YEAR_START = datetime(2025, 11, 1, tzinfo=UTC)
DAYS = 365
WINDOWS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30)}
TARGET_MS = 50.0
LIMIT = 100


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the data ------------------------------------------------------------------------------------


def officer_weights(rng: random.Random) -> list[float]:
    weights = [rng.lognormvariate(0.0, 0.8) for _ in range(OFFICERS)]
    total = sum(weights)
    return [w / total for w in weights]


def clip_rows(count: int, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """(id, sha256, size, officer_id, recorder_id, unit_id, start, end, important, ingested_at,
    stored_at, source_path) for `count` clips; officer n has recorder n and unit n % UNITS + 1."""
    rng = random.Random(seed)
    officers = rng.choices(range(1, OFFICERS + 1), weights=officer_weights(rng), k=count)
    for n, officer in enumerate(officers):
        day = rng.randrange(DAYS)
        shift_start = 7 if rng.random() < 0.7 else 19  # day or night shift, local 07:00 / 19:00
        offset = timedelta(hours=shift_start - 8, seconds=rng.randrange(12 * 3600))  # UTC+8
        start = YEAR_START + timedelta(days=day) + offset
        seconds = min(1800, int(rng.expovariate(1 / 240)) + 30)
        end = start + timedelta(seconds=seconds)
        ingested = end + timedelta(hours=rng.uniform(1, 20))
        yield (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            f"{rng.getrandbits(256):064x}",
            seconds * 1_250_000,
            officer,
            officer,
            officer % UNITS + 1,
            start,
            end,
            rng.random() < 0.05,
            ingested,
            ingested + timedelta(minutes=5),
            f"DCIM/100MEDIA/R{officer:06d}_{n:08d}.MP4",
        )


def people() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    units = [(u, f"3301{u:08d}", f"unit {u}") for u in range(1, UNITS + 1)]
    officers = [
        (o, f"{100000 + o:06d}", f"officer {o}", o % UNITS + 1) for o in range(1, OFFICERS + 1)
    ]
    recorders = [(r, f"R{r:06d}", r % UNITS + 1) for r in range(1, OFFICERS + 1)]
    return units, officers, recorders


CLIP_COLUMNS = (
    "id, sha256, size, media_kind, source_path, source_path_bytes, recorded_start, recorded_end, "
    "time_source, important, unit_id, recorder_id, officer_id, station_id, ingested_at, "
    "stored_at, state, flags, retention_class, retention_until, legal_hold, retention_grounds, "
    "duration_seconds, format_name, video_codec, audio_codec, width, height"
)


def _retention(end: datetime, important: bool) -> datetime:
    return end + timedelta(days=3 * 365 if important else 183)


# --- SQLite ----------------------------------------------------------------------------------------


def _sqlite_time(t: datetime) -> str:
    # The form SQLAlchemy's DateTime stores on SQLite (the catalog's UTCDateTime keeps UTC, naive).
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill_sqlite(path: Path, count: int) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")  # loading only; the agent itself runs FULL
        units, officers, recorders = people()
        with conn:
            conn.executemany("INSERT INTO units (id, code, name) VALUES (?, ?, ?)", units)
            conn.executemany(
                "INSERT INTO officers (id, badge, name, unit_id) VALUES (?, ?, ?, ?)", officers
            )
            conn.executemany(
                "INSERT INTO recorders (id, serial, vendor, model, unit_id, enrolled) "
                "VALUES (?, ?, 'DemoVision', 'DSJ-D1', ?, 1)",
                recorders,
            )
        marks = ", ".join("?" * len(CLIP_COLUMNS.split(", ")))
        sql = f"INSERT INTO clips ({CLIP_COLUMNS}) VALUES ({marks})"
        batch: list[tuple[Any, ...]] = []
        done = 0
        for row in clip_rows(count):
            cid, sha, size, officer, recorder, unit, start, end, imp, ingested, stored, src = row
            batch.append(
                (
                    cid, sha, size, "video", src, src.encode(), _sqlite_time(start),
                    _sqlite_time(end), "filename", imp, unit, recorder, officer, "bench",
                    _sqlite_time(ingested), _sqlite_time(stored), "stored", "[]",
                    "important" if imp else "standard", _sqlite_time(_retention(end, imp)),
                    False, "[]", (end - start).total_seconds(), "mov,mp4,m4a,3gp,3g2,mj2",
                    "h264", "aac", 1920, 1080,
                )
            )  # fmt: skip
            if len(batch) == 50_000:
                with conn:
                    conn.executemany(sql, batch)
                done += len(batch)
                batch.clear()
                log(f"  sqlite: {done:,} clips")
        if batch:
            with conn:
                conn.executemany(sql, batch)
        conn.execute("ANALYZE")
    finally:
        conn.close()


# --- PostgreSQL ------------------------------------------------------------------------------------


def fill_postgres(url: str, count: int) -> None:
    import psycopg

    units, officers, recorders = people()
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO units (id, code, name) VALUES (%s, %s, %s)", units)
            cur.executemany(
                "INSERT INTO officers (id, badge, name, unit_id) VALUES (%s, %s, %s, %s)",
                officers,
            )
            cur.executemany(
                "INSERT INTO recorders (id, serial, vendor, model, unit_id, enrolled) "
                "VALUES (%s, %s, 'DemoVision', 'DSJ-D1', %s, true)",
                recorders,
            )
            for table in ("units", "officers", "recorders"):
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            done = 0
            with cur.copy(f"COPY clips ({CLIP_COLUMNS}) FROM STDIN") as copy:
                for row in clip_rows(count):
                    (
                        cid,
                        sha,
                        size,
                        officer,
                        recorder,
                        unit,
                        start,
                        end,
                        imp,
                        ingested,
                        stored,
                        src,
                    ) = row
                    copy.write_row(
                        (
                            cid, sha, size, "video", src, src.encode(), start, end, "filename",
                            imp, unit, recorder, officer, "bench", ingested, stored, "stored",
                            "[]", "important" if imp else "standard", _retention(end, imp), False,
                            "[]", (end - start).total_seconds(), "mov,mp4,m4a,3gp,3g2,mj2",
                            "h264", "aac", 1920, 1080,
                        )
                    )  # fmt: skip
                    done += 1
                    if done % 200_000 == 0:
                        log(f"  postgresql: {done:,} clips")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


# --- the measurement -------------------------------------------------------------------------------


def busiest_officers(count: int, seed: int = 7) -> list[int]:
    """The officers with the most clips (the same draw as clip_rows)."""
    weights = officer_weights(random.Random(seed))
    return sorted(range(1, OFFICERS + 1), key=lambda o: weights[o - 1], reverse=True)[:count]


def measure(engine: Engine, queries: int, seed: int = 11) -> dict[str, Any]:
    """A fifth of the queries are for the 20 busiest officers: the slowest searches."""
    rng = random.Random(seed)
    busiest = busiest_officers(20)
    plans = []
    for _ in range(queries):
        window = rng.choice(list(WINDOWS))
        since = YEAR_START + timedelta(days=rng.uniform(0, DAYS - 30))
        officer = rng.choice(busiest) if rng.random() < 0.2 else rng.randrange(1, OFFICERS + 1)
        plans.append((f"{100000 + officer:06d}", since, window))
    with Session(engine) as session:
        for badge, since, window in plans[:10]:  # warm the cache and the connection
            clip_views(
                session, officer=badge, since=since, until=since + WINDOWS[window], limit=LIMIT
            )
        times: dict[str, list[float]] = {w: [] for w in WINDOWS}
        found: list[int] = []
        for badge, since, window in plans:
            t0 = time.perf_counter()
            rows = clip_views(
                session, officer=badge, since=since, until=since + WINDOWS[window], limit=LIMIT
            )
            times[window].append((time.perf_counter() - t0) * 1000)
            found.append(len(rows))
    every = sorted(t for ts in times.values() for t in ts)
    return {
        "queries": len(every),
        "p50_ms": round(statistics.median(every), 2),
        "p95_ms": round(_percentile(every, 95), 2),
        "max_ms": round(every[-1], 2),
        "p95_ms_by_window": {w: round(_percentile(sorted(ts), 95), 2) for w, ts in times.items()},
        "clips_returned_mean": round(statistics.mean(found), 1),
        "clips_returned_max": max(found),
        "under_target": _percentile(every, 95) < TARGET_MS,
    }


def _percentile(ordered: list[float], p: float) -> float:
    k = max(0, math.ceil(p / 100 * len(ordered)) - 1)
    return ordered[k]


def run_sqlite(work: Path, count: int, queries: int) -> dict[str, Any]:
    path = work / "catalog.sqlite3"
    engine = open_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    t0 = time.perf_counter()
    fill_sqlite(path, count)
    load = time.perf_counter() - t0
    engine = open_engine(f"sqlite:///{path}")
    try:
        result = measure(engine, queries)
    finally:
        engine.dispose()
    return {"load_seconds": round(load, 1), "database_bytes": path.stat().st_size, **result}


def run_postgres(count: int, queries: int) -> dict[str, Any]:
    from tests.services.postgres import PostgresServer, find_pg_bin, missing_reason

    reason = missing_reason()
    bin_dir = find_pg_bin()
    if reason is not None or bin_dir is None:
        raise SystemExit(f"PostgreSQL cannot be started here: {reason}")
    with PostgresServer(bin_dir) as server:
        database = server.create_database("bench")
        engine = open_engine(database.url)
        try:
            migrate(engine)
            t0 = time.perf_counter()
            fill_postgres(database.url, count)
            load = time.perf_counter() - t0
            result = measure(engine, queries)
            with engine.connect() as conn:
                size = conn.exec_driver_sql("SELECT pg_database_size('bench')").scalar()
            version = server_version(engine)
        finally:
            engine.dispose()
    return {"load_seconds": round(load, 1), "database_bytes": size, "server": version, **result}


def server_version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("SHOW server_version").scalar())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-search-", dir=args.workdir))
    results: dict[str, Any] = {}
    try:
        if args.backend in ("sqlite", "both"):
            log(f"SQLite: loading {args.clips:,} clips")
            results["sqlite"] = run_sqlite(work, args.clips, args.queries)
            log(f"SQLite: {results['sqlite']}")
        if args.backend in ("postgresql", "both"):
            log(f"PostgreSQL: loading {args.clips:,} clips")
            results["postgresql"] = run_postgres(args.clips, args.queries)
            log(f"PostgreSQL: {results['postgresql']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "search",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "platform": platform.platform(),
                    "cpu": _cpu(),
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version,
                },
                "clips": args.clips,
                "officers": OFFICERS,
                "query": "clip_views(officer=badge, since=t, until=t + day|week|month, "
                f"limit={LIMIT})",
                "target_p95_ms": TARGET_MS,
                "results": results,
                "load_average": [round(x, 2) for x in os.getloadavg()],
            },
            indent=2,
        )
    )


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
