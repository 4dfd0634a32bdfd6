"""End to end: 50 people's callers at once on the local API while 8 recorders dock in the daemon.

The station is installed as a service (tests/e2e/installed.py): the daemon runs as the
service's account, and the clerk, the supervisor and an outsider without a role each run 20,
20 and 10 callers at once, in one process of their own account (tests/e2e/api_callers.py),
every thread a round of searches, a retrieval and case edits, while eight recorder volumes
are renamed into the dock folder. Every request must be answered, every act logged under the
account that made it, every refusal under the outsider's, and every dock finish with all its
clips stored and read back."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evidence_agent.services.demo_recorder import generate_clip
from tests.e2e.installed import Accounts, Station, installed_station, sh

RECORDERS = 8
CLIPS_PER_RECORDER = 2
CALLERS = {"clerk": 20, "supervisor": 20, "outsider": 10}  # 50 at once
# The custody event each operation's act leaves.
EVENT_OF = {
    "case.create": "case.created",
    "case.link": "case.clip_linked",
    "case.unlink": "case.clip_unlinked",
    "clips.search": "clips.searched",
    "retrieve": "clip.retrieved",
}


@pytest.fixture(scope="module")
def station(accounts: Accounts, program: Path) -> Iterator[Station]:
    # A small pool, so that most of the 50 callers wait in its queue.
    with installed_station(
        accounts,
        program,
        EVIDENCE_AGENT__DOCK__SETTLE_SECONDS="0.5",
        EVIDENCE_AGENT__DOCK__API_WORKERS="2",
    ) as made:
        yield made


def make_volume(root: Path, index: int) -> None:
    """A recorder volume of short clips of its own (their creation times differ)."""
    media = root / "DCIM" / "100MEDIA"
    media.mkdir(parents=True)
    serial, badge = f"L{index:06d}", f"2{index:05d}"
    now = datetime.now(UTC)
    identity = {"serial": serial, "badge": badge, "unit_code": "330100000000"}
    (root / "RECORDER.JSON").write_text(json.dumps({**identity, "device_time": now.isoformat()}))
    for seq in range(1, CLIPS_PER_RECORDER + 1):
        moment = now - timedelta(hours=2, minutes=index, seconds=10 * seq)
        name = f"{serial}_{badge}_{moment.strftime('%Y%m%d%H%M%S')}_{seq:04d}.MP4"
        generate_clip(media / name, seconds=2, creation_time=moment, size="320x180")


def acts_by_type(station: Station, user: str) -> Counter[str]:
    rows = station.access_log(
        "--actor", user, *(a for t in [*EVENT_OF.values(), "access.refused"] for a in ("--type", t))
    )
    return Counter(row["type"] for row in rows)


def catalog_rows(station: Station, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{station.data / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def start_callers(station: Station, role: str, user: str, threads: int) -> subprocess.Popen[str]:
    out = station.base / f"out-{user}"
    out.mkdir(mode=0o700)
    sh("chown", user, str(out))
    clips = [[c["id"], c["sha256"]] for c in station.videos]
    spec = {"socket": str(station.socket), "threads": threads, "prefix": f"LOAD-{role}"}
    spec.update(clips=clips, out=str(out))
    python = station.program.with_name("python")
    return subprocess.Popen(
        ["runuser", "-u", user, "--", str(python), "-m", "tests.e2e.api_callers", json.dumps(spec)],
        env=station.env(),
        cwd=station.base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_fifty_callers_while_eight_recorders_dock(station: Station) -> None:
    users = {
        "clerk": station.accounts.clerk,
        "supervisor": station.accounts.supervisor,
        "outsider": station.accounts.outsider,
    }
    before = {role: acts_by_type(station, user) for role, user in users.items()}
    staged = station.base / "recorders"
    for n in range(RECORDERS):
        make_volume(staged / f"L{n:06d}", n)
    sh("chown", "-R", f"{station.accounts.service}:", str(staged))

    callers = {role: start_callers(station, role, users[role], n) for role, n in CALLERS.items()}
    for volume in sorted(staged.iterdir()):
        volume.rename(station.data / "dock" / volume.name)
    results = {}
    for role, proc in callers.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results[role] = json.loads(out)

    # Every request answered; the people with a role got results, the outsider refusals.
    for role, rows in results.items():
        assert len(rows) == 6 * CALLERS[role]
        assert not [r for r in rows if r["lost"]], role
        expected_exit = 5 if role == "outsider" else 0
        assert {r["exit"] for r in rows} == {expected_exit}, [r for r in rows if r["exit"]][:3]
    copies = [r["same_bytes"] for role in ("clerk", "supervisor") for r in results[role]
              if r["op"] == "retrieve"]  # fmt: skip
    assert len(copies) == 40 and all(copies)

    # Every act in the custody log under the account that made it, as many as it made.
    for role, user in users.items():
        made = acts_by_type(station, user) - before[role]
        if role == "outsider":
            assert made == Counter({"access.refused": 6 * CALLERS[role]})
        else:
            sent = Counter(EVENT_OF[r["op"]] for r in results[role])
            assert made == sent, role

    # Every dock finished, every clip of the recorders stored (read back and checked).
    deadline = time.monotonic() + 120
    finished = 0
    while finished < RECORDERS and time.monotonic() < deadline:
        finished = len(
            catalog_rows(
                station,
                "SELECT id FROM dock_sessions WHERE state = 'finished' AND volume LIKE '%/L0%'",
            )
        )
        time.sleep(0.5)
    assert finished == RECORDERS
    stored = catalog_rows(
        station,
        "SELECT c.state, count(*) FROM clips c JOIN recorders r ON c.recorder_id = r.id "
        "WHERE r.serial LIKE 'L%' GROUP BY c.state",
    )
    assert stored == [("stored", RECORDERS * CLIPS_PER_RECORDER)]
