"""Statistics report benchmark: the annual report over a catalog of 1,000,000 clips (SQLite).

Run: .venv/bin/python bench/bench_statistics.py [--clips 1000000] [--rounds 3]
Prints one JSON document on stdout (figures, machine, date); progress on stderr.

The station is made by the agent itself (`open_station`: migrations, signing key); the rows are
bulk-inserted directly with executemany, not through ingest:

- 40 units, 2,000 officers with a recorder each, activity skewed (log-normal weights);
- a year of clips (2026, Asia/Shanghai), 30 s to 30 min long; 6 % catalogued late (two thirds
  docked late, a third the station's backlog, each with its dock session); 1 % without an
  officer, 0.5 % without a recording time;
- 300 cases of which 60 need full recording, 400 legal reviews, 1,000 notices.

The measured call is what `evidence-agent statistics report --year 2026` runs:
`publish.statistics_report.produce_report`, which computes every figure, writes the HTML (inline
SVG charts), CSV and JSON and logs their hashes in the custody log. The target is under 10 s.
The baseline, measured in the same run on the same warm catalog, is one plain aggregate pass
over the clips (`SELECT count(*), sum(duration_seconds) FROM clips`): what reading every clip
once costs on this machine; the ratio says what the report costs beyond that.
"""

from __future__ import annotations

import argparse
import json
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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evidence_agent.config import build_settings  # noqa: E402
from evidence_agent.domain.roles import Caller, Identity, Role  # noqa: E402
from evidence_agent.services.station import open_station  # noqa: E402
from publish.statistics import Period  # noqa: E402
from publish.statistics_report import produce_report  # noqa: E402

UNITS = 40
OFFICERS = 2_000
YEAR = 2026
YEAR_START = datetime(YEAR - 1, 12, 31, 16, 0, tzinfo=UTC)  # 2026-01-01 00:00 in Shanghai
TARGET_SECONDS = 10.0
DOCKS = 5_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _t(t: datetime) -> str:
    # The form SQLAlchemy's DateTime stores on SQLite (the catalog's UTCDateTime keeps UTC, naive).
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill(path: Path, count: int, seed: int = 22) -> dict[str, int]:
    """Units, officers, recorders, dock sessions, clips, cases, reviews and notices; what was put
    in, counted on the way, for the self-check."""
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    expected = {"clips": 0, "late": 0, "no_officer": 0}
    try:
        conn.execute("PRAGMA synchronous=OFF")  # loading only; the agent itself runs FULL
        with conn:
            conn.executemany(
                "INSERT INTO units (id, code, name) VALUES (?, ?, ?)",
                [(u, f"3301{u:08d}", f"unit {u}") for u in range(1, UNITS + 1)],
            )
            conn.executemany(
                "INSERT INTO officers (id, badge, name, unit_id) VALUES (?, ?, ?, ?)",
                [(o, f"{100000 + o:06d}", "", o % UNITS + 1) for o in range(1, OFFICERS + 1)],
            )
            conn.executemany(
                "INSERT INTO recorders (id, serial, vendor, model, unit_id, enrolled) "
                "VALUES (?, ?, 'DemoVision', 'DSJ-D1', ?, 1)",
                [(r, f"R{r:06d}", r % UNITS + 1) for r in range(1, OFFICERS + 1)],
            )
        docks = _fill_docks(conn, rng)
        _fill_clips(conn, rng, count, docks, expected)
        _fill_clocks(conn, rng)
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return expected


def _fill_docks(conn: sqlite3.Connection, rng: random.Random) -> list[tuple[str, datetime]]:
    docks = [
        (str(uuid.UUID(int=rng.getrandbits(128), version=4)), YEAR_START + timedelta(hours=i * 1.7))
        for i in range(DOCKS)
    ]
    with conn:
        conn.executemany(
            "INSERT INTO dock_sessions (id, station_id, source, volume, actor, started_at, state, "
            "files_seen, clips_new, clips_known, files_not_ingested, bytes_done, device_info, "
            "warnings) VALUES (?, 'bench', 'usb', '', '', ?, 'finished', 0, 0, 0, 0, 0, '{}', '[]')",
            [(d, _t(t)) for d, t in docks],
        )
    return docks


CLIP_SQL = (
    "INSERT INTO clips (id, sha256, size, media_kind, source_path, source_path_bytes, "
    "recorded_start, recorded_end, time_source, important, unit_id, recorder_id, officer_id, "
    "dock_session_id, station_id, ingested_at, stored_at, state, flags, retention_class, "
    "legal_hold, retention_grounds, duration_seconds) "
    "VALUES (?, ?, ?, 'video', ?, ?, ?, ?, 'filename', 0, ?, ?, ?, ?, 'bench', ?, ?, 'stored', "
    "?, 'standard', 0, '[]', ?)"
)


def _fill_clips(
    conn: sqlite3.Connection,
    rng: random.Random,
    count: int,
    docks: list[tuple[str, datetime]],
    expected: dict[str, int],
) -> None:
    weights = [rng.lognormvariate(0.0, 0.8) for _ in range(OFFICERS)]
    officers = rng.choices(range(1, OFFICERS + 1), weights=weights, k=count)
    batch: list[tuple[Any, ...]] = []
    for n, officer in enumerate(officers):
        start = YEAR_START + timedelta(seconds=rng.randrange(365 * 86400))
        seconds = min(1800, int(rng.expovariate(1 / 240)) + 30)
        end = start + timedelta(seconds=seconds)
        ingested = end + timedelta(hours=rng.uniform(1, 20))
        late = rng.random() < 0.06
        dock = None
        if late:
            ingested = end + timedelta(hours=rng.uniform(25, 60))
            dock_id, _ = docks[rng.randrange(len(docks))]
            dock = dock_id
        untimed = rng.random() < 0.005
        anonymous = rng.random() < 0.01
        expected["clips"] += 1
        expected["late"] += late
        expected["no_officer"] += anonymous
        src = f"DCIM/100MEDIA/R{officer:06d}_{n:08d}.MP4"
        batch.append(
            (
                str(uuid.UUID(int=rng.getrandbits(128), version=4)), f"{rng.getrandbits(256):064x}",
                seconds * 1_250_000, src, src.encode(),
                None if untimed else _t(start), None if untimed else _t(end),
                officer % UNITS + 1, officer, None if anonymous else officer, dock,
                _t(start if untimed else ingested), _t(ingested + timedelta(minutes=5)),
                '["late"]' if late and not untimed else "[]", seconds,
            )
        )  # fmt: skip
        if late and untimed:
            expected["late"] -= 1
        if len(batch) == 50_000:
            with conn:
                conn.executemany(CLIP_SQL, batch)
            batch.clear()
            log(f"  {n + 1:,} clips")
    if batch:
        with conn:
            conn.executemany(CLIP_SQL, batch)


def _fill_clocks(conn: sqlite3.Connection, rng: random.Random) -> None:
    """Cases (a fifth of them full-recording), legal reviews and notices over the year."""
    kinds = ("seizure", "on_site_inspection", "licensing", "administrative_penalty", "hearing")
    with conn:
        for c in range(1, 301):
            start = YEAR_START + timedelta(days=rng.randrange(360), hours=rng.randrange(10))
            conn.execute(
                "INSERT INTO cases (id, number, title, parties, cause_of_action, enforcement_type, "
                "handling_officers, action_start, action_end, created_at, state) "
                "VALUES (?, ?, '', '[]', '', ?, ?, ?, ?, ?, 'open')",
                (
                    c, f"2026-{c:04d}", kinds[c % 5],
                    json.dumps([f"{100000 + rng.randrange(1, OFFICERS + 1):06d}"]),
                    _t(start), _t(start + timedelta(hours=1)), _t(start),
                ),
            )  # fmt: skip
        for r in range(1, 401):
            asked = date(YEAR, 1, 5) + timedelta(days=rng.randrange(330))
            given = asked + timedelta(days=rng.randrange(2, 14))
            conn.execute(
                "INSERT INTO legal_reviews (case_id, requested_at, requested_on, requested_by, "
                "reason, case_file_sha256, incomplete_override, working_days, due, state, "
                "opinion, reviewer, given_on) "
                "VALUES (?, ?, ?, 'user:clerk', 'r', ?, 0, 7, ?, 'given', ?, 'user:lawyer', ?)",
                (
                    r % 300 + 1, _t(datetime.combine(asked, datetime.min.time(), UTC)),
                    asked.isoformat(), "0" * 64, (asked + timedelta(days=9)).isoformat(),
                    rng.choice(("agree", "correct", "refer_back")), given.isoformat(),
                ),
            )  # fmt: skip
        for n in range(1, 1001):
            decided = date(YEAR, 1, 5) + timedelta(days=rng.randrange(320))
            published = decided + timedelta(days=rng.randrange(1, 30))
            conn.execute(
                "INSERT INTO notices (number, kind, title, body, persons, minors, decision_date, "
                "due, recorded_at, recorded_by, published_on, published_text) "
                "VALUES (?, ?, 't', 'b', '[]', 0, ?, ?, ?, 'user:clerk', ?, 'b')",
                (
                    f"N-{n:05d}", ("penalty", "licence", "other")[n % 3], decided.isoformat(),
                    (decided + timedelta(days=10)).isoformat(),
                    _t(datetime.combine(decided, datetime.min.time(), UTC)), published.isoformat(),
                ),
            )  # fmt: skip


def baseline_scan(path: Path) -> float:
    conn = sqlite3.connect(path)
    try:
        t0 = time.perf_counter()
        conn.execute("SELECT count(*), sum(duration_seconds) FROM clips").fetchone()
        return time.perf_counter() - t0
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-statistics-", dir=args.workdir))
    try:
        settings = build_settings(
            {"station": {"timezone": "Asia/Shanghai", "id": "bench"}},
            {"EVIDENCE_AGENT_DATA_DIR": str(work / "data")},
        )
        station = open_station(settings, actor="user:bench")
        db = settings.data_dir / "catalog.sqlite3"
        log(f"loading {args.clips:,} clips")
        t0 = time.perf_counter()
        expected = fill(db, args.clips)
        load = time.perf_counter() - t0
        auditor = Caller(Identity("bench", os.getuid()), frozenset({Role.AUDITOR}), None)
        baseline_scan(db)  # warm the page cache for both
        rounds = []
        for i in range(args.rounds):
            base = baseline_scan(db)
            t0 = time.perf_counter()
            result = produce_report(station, auditor, Period.of_year(YEAR), work / f"r{i}")
            took = time.perf_counter() - t0
            rounds.append({"report_seconds": round(took, 3), "baseline_seconds": round(base, 3)})
            log(f"  round {i + 1}: report {took:.2f} s, baseline scan {base:.2f} s")
        figures = result["figures"]["footage"]
        station.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = statistics.median(r["report_seconds"] for r in rounds)
    base = statistics.median(r["baseline_seconds"] for r in rounds)
    print(
        json.dumps(
            {
                "benchmark": "statistics",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {
                    "platform": platform.platform(),
                    "cpu": _cpu(),
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "sqlite": sqlite3.sqlite_version,
                },
                "clips": args.clips,
                "load_seconds": round(load, 1),
                "rounds": rounds,
                "report_seconds_median": report,
                "baseline_scan_seconds_median": base,
                "ratio_to_baseline": round(report / base, 1) if base else None,
                "target_seconds": TARGET_SECONDS,
                "met": report < TARGET_SECONDS,
                "self_check": {
                    "clips": [figures["clips"], expected["clips"]],
                    "late": [figures["late"]["clips"], expected["late"]],
                    "no_officer": [figures["unattributed"]["no_officer"], expected["no_officer"]],
                },
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
