"""The statistics report: its figures against a count made here from the rows put in, its
charts and tables drawn in Chromium, its hash in the custody log."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from evidence_agent.catalog.models import Clip, CustodyEntry, DockSession, Officer, Unit
from evidence_agent.domain.roles import Role
from evidence_agent.services.station import Station
from publish.notices import NoticeInput, add_notice, publish_notice
from publish.statistics import Period
from publish.statistics_report import produce_report
from review.cases import CaseInput, create_case
from review.legal_review import give_opinion, request_review
from review.retrieval import RetrievalRequest, retrieve
from tests.browser import chromium_page
from tests.unit.review.fakes import AddClip, FixedClock, caller

CLERK = caller(Role.CLERK, user="clerk")
REVIEWER = caller(Role.REVIEWER, user="lawyer")
AUDITOR = caller(Role.AUDITOR, user="auditor")
UNITS = ("110101000001", "110101000002", "110101000003")
BADGES = ("100001", "100002", "100003", "100004", "100005")


def _spec(rng: random.Random, i: int) -> dict[str, Any]:
    """One clip: its unit, officer, times and lateness, chosen at random but reproducibly."""
    # 2025-12-31 17:00 UTC is already 2026 in Shanghai: the first clips test the boundary.
    start = datetime(2025, 12, 31, 16, 0, tzinfo=UTC) + timedelta(hours=i * 7)
    seconds = rng.choice((30, 60, 600, 1800))
    kind = rng.random()
    return {
        "unit": rng.choice((*UNITS, None)),
        "officer": rng.choice((*BADGES, None)),
        "start": None if kind < 0.05 else start,
        "ingested": start + timedelta(seconds=seconds, hours=rng.choice((1, 3, 30))),
        "seconds": seconds,
        "late": None if kind < 0.05 else ("docked_late" if kind < 0.2 else None),
        "backlog": 0.2 <= kind < 0.3,
        "recorder": rng.random() > 0.1,
    }


def _insert(station: Station, specs: list[dict[str, Any]]) -> None:
    with station.transaction() as session:
        units = {}
        for code in UNITS:
            unit = Unit(code=code, name="")
            session.add(unit)
            session.flush()
            units[code] = unit.id
        officers = {}
        for badge in BADGES:
            officer = Officer(badge=badge, name="")
            session.add(officer)
            session.flush()
            officers[badge] = officer.id
        for spec in specs:
            start, seconds = spec["start"], spec["seconds"]
            end = start + timedelta(seconds=seconds) if start else None
            late = spec["late"] or spec["backlog"]
            dock = None
            if late:
                dock = DockSession(
                    id=str(uuid.uuid4()),
                    station_id="station-01",
                    started_at=end + timedelta(hours=30 if spec["late"] else 2),
                    state="finished",
                )
                session.add(dock)
                session.flush()  # no ORM relationship orders the inserts: the dock goes first
            session.add(
                Clip(
                    id=str(uuid.uuid4()),
                    sha256=uuid.uuid4().hex * 2,
                    size=1,
                    source_path="x",
                    source_path_bytes=b"x",
                    duration_seconds=seconds,
                    recorded_start=start,
                    recorded_end=end,
                    unit_id=units[spec["unit"]] if spec["unit"] else None,
                    officer_id=officers[spec["officer"]] if spec["officer"] else None,
                    recorder_id=None,
                    dock_session_id=dock.id if dock else None,
                    station_id="station-01",
                    ingested_at=(end + timedelta(hours=26)) if late else spec["ingested"],
                    state="stored",
                    flags='["late"]' if late else "[]",
                )
            )


def _independent_count(specs: list[dict[str, Any]], year: int) -> dict[str, Any]:
    """What the report must say, counted here from the specs, in Python, clip by clip."""
    shanghai = timedelta(hours=8)
    groups: Counter[tuple[str | None, str | None]] = Counter()
    seconds: Counter[tuple[str | None, str | None]] = Counter()
    causes: Counter[str] = Counter()
    no_officer = no_unit = no_time = 0
    for spec in specs:
        when = spec["start"] or spec["ingested"]
        if (when + shanghai).year != year:
            continue
        key = (spec["unit"], spec["officer"])
        groups[key] += 1
        seconds[key] += spec["seconds"]
        no_officer += spec["officer"] is None
        no_unit += spec["unit"] is None
        no_time += spec["start"] is None
        if spec["late"]:
            causes["docked_late"] += 1
        elif spec["backlog"]:
            causes["station_backlog"] += 1
    return {
        "groups": {k: (v, round(seconds[k] / 3600, 2)) for k, v in groups.items()},
        "clips": sum(groups.values()),
        "causes": dict(causes),
        "no_officer": no_officer,
        "no_unit": no_unit,
        "no_time": no_time,
    }


def _reviews_notices_and_a_retrieval(
    station: Station, clock: FixedClock, add_clip: AddClip, tmp_path: Path
) -> None:
    clock.time = datetime(2026, 11, 5, 2, 0, tzinfo=UTC)
    for number in ("R-1", "R-2"):
        create_case(
            station,
            CLERK,
            CaseInput(number, "t", [], "c", "licensing", None, [], None, None),
            None,
        )
        request_review(station, CLERK, number, "licence")
    clock.time = datetime(2026, 11, 12, 2, 0, tzinfo=UTC)
    give_opinion(station, REVIEWER, "R-1", "agree", "lawful")
    for number, kind in (("N-1", "penalty"), ("N-2", "other")):
        add_notice(
            station,
            CLERK,
            NoticeInput(number, kind, "决定", "正文", date(2026, 11, 5)),
        )
    publish_notice(station, CLERK, "N-1", "published")
    clip = add_clip(b"retrieved", start=datetime(2024, 5, 1, tzinfo=UTC))
    retrieve(station, CLERK, RetrievalRequest([clip.id], None, tmp_path / "out", "court"))
    clock.time = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)


def test_the_annual_report_matches_an_independent_count(
    station: Station, clock: FixedClock, add_clip: AddClip, tmp_path: Path
) -> None:
    rng = random.Random(22)
    specs = [_spec(rng, i) for i in range(1300)]  # 1300 x 7 h: into 2027
    _insert(station, specs)
    _reviews_notices_and_a_retrieval(station, clock, add_clip, tmp_path)
    out = tmp_path / "report"
    result = produce_report(station, AUDITOR, Period.of_year(2026), out, "annual statistics")
    data = result["figures"]
    expected = _independent_count(specs, 2026)

    footage = data["footage"]
    assert footage["clips"] == expected["clips"]
    got = {
        (g["unit"], g["officer"]): (g["clips"], g["hours"]) for g in footage["by_unit_and_officer"]
    }
    assert got == expected["groups"]
    assert footage["late"]["by_cause"] == expected["causes"]
    assert footage["unattributed"]["no_officer"] == expected["no_officer"]
    assert footage["unattributed"]["no_unit"] == expected["no_unit"]
    assert footage["unattributed"]["no_recording_time"] == expected["no_time"]
    assert data["legal_reviews"]["requested"] == 2
    assert data["legal_reviews"]["opinions"] == {"agree": 1, "correct": 0, "refer_back": 0}
    assert data["legal_reviews"]["clock"] == {"on_time": 1, "late": 0, "due": 0, "overdue": 1}
    assert data["notices"]["publication"]["on_time"] == 1
    assert data["notices"]["publication"]["overdue"] == 1  # N-2: 20 working days, due Dec 3
    assert data["access"] == {"retrievals": 1, "clips_retrieved": 1, "disclosures": None}

    # The files are the ones logged, and the CSV says what the JSON says.
    files = {name: (out / name).read_bytes() for name in result["files"]}
    for name, content in files.items():
        assert hashlib.sha256(content).hexdigest() == result["files"][name]
    with station.reading() as session:
        entry = session.exec(
            select(CustodyEntry)
            .where(CustodyEntry.event_type == "statistics.reported")
            .order_by(col(CustodyEntry.seq).desc())
        ).first()
    assert entry is not None
    logged = json.loads(entry.entry)
    assert logged["data"]["files"] == result["files"]
    assert logged["sha256"] == result["files"]["statistics.json"]
    rows = list(csv.DictReader((out / "statistics.csv").read_text().splitlines()))
    csv_clips = sum(
        int(r["value"])
        for r in rows
        if r["section"] == "footage" and r["measure"] == "clips" and (r["unit"] or r["officer"])
    )
    assert csv_clips == expected["clips"] - sum(
        n for (u, o), (n, _) in expected["groups"].items() if u is None and o is None
    )

    with chromium_page() as page:
        page.goto((out / "statistics.html").as_uri())
        for chart in ("chart-unit-hours", "chart-late", "chart-reviews", "chart-notices"):
            svg = page.locator(f"svg#{chart}")
            box = svg.bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0, chart
            bars = svg.locator("rect.bar")
            assert bars.count() > 0, chart
            widths = [bars.nth(i).bounding_box() for i in range(bars.count())]
            assert any(b is not None and b["width"] > 0 and b["height"] > 0 for b in widths)
        table = page.locator("table#footage tbody tr")
        assert table.count() == len(expected["groups"])
        shown = {tuple(table.nth(i).locator("td").all_inner_texts()) for i in range(table.count())}
    assert shown == {
        (
            u or "(none)",
            o or "(none)",
            str(n),
            f"{h:g}" if h != int(h) else str(h),
            _late(specs, u, o),
        )
        for (u, o), (n, h) in expected["groups"].items()
    }


def _late(specs: list[dict[str, Any]], unit: str | None, officer: str | None) -> str:
    shanghai = timedelta(hours=8)
    return str(
        sum(
            1
            for s in specs
            if (s["late"] or s["backlog"])
            and s["unit"] == unit
            and s["officer"] == officer
            and ((s["start"] or s["ingested"]) + shanghai).year == 2026
        )
    )
