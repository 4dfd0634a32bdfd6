"""The statistics report written out: HTML with charts drawn as inline SVG, CSV, JSON; its hash logged."""

from __future__ import annotations

import csv
import html
import io as text_io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from evidence_agent.catalog.models import StatisticsReport
from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.services.guard import require
from evidence_agent.services.output_directory import (
    LocalDirectory,
    OutputDirectory,
    output_directory,
    write_whole,
)
from evidence_agent.services.station import Station
from publish.statistics import Period, figures

FILES = ("statistics.html", "statistics.csv", "statistics.json")
_BAR = 22  # px per bar
_WIDTH = 640
_LABEL = 180


def produce_report(
    station: Station,
    caller: Caller,
    period: Period,
    directory: Path,
    reason: str = "",
    *,
    output: OutputDirectory | None = None,
) -> dict[str, Any]:
    """Compute the figures, write the three files and log their hashes (one custody event).
    `output`: the directory, by default written by this process (the local API passes the
    caller's)."""
    require(station, caller, Action.STATISTICS, reason=reason)
    now = station.clock.now()
    data = figures(station, period, now)
    out = output_directory(output or LocalDirectory(directory))
    target = out.path
    json_bytes = canonical_json(data)
    hashes = {
        "statistics.json": write_whole(out, "statistics.json", json_bytes),
        "statistics.csv": write_whole(out, "statistics.csv", csv_text(data).encode()),
        "statistics.html": write_whole(out, "statistics.html", html_page(data).encode()),
    }
    with station.transaction() as session:
        session.add(
            StatisticsReport(
                year=period.year,
                period_start=period.start,
                period_end=period.end,
                produced_at=now,
                produced_by=caller.actor,
                sha256=hashes["statistics.json"],
            )
        )
        station.record(
            session,
            EventType.STATISTICS_REPORTED.event(
                station.settings.station_id,
                actor=caller.actor,
                reason=reason or "statistics report",
                sha256=hashes["statistics.json"],
                data={
                    "period_start": period.start.isoformat(),
                    "period_end": period.end.isoformat(),
                    "year": period.year,
                    "files": hashes,
                },
            ),
        )
    return {"directory": str(target), "files": hashes, "figures": data}


# ---------------------------------------------------------------- CSV


def csv_rows(data: dict[str, Any]) -> Iterator[tuple[str, str, str, str, Any]]:
    """section, unit, officer, measure, value: one figure a row."""
    for g in data["footage"]["by_unit_and_officer"]:
        for measure in ("clips", "hours", "late"):
            yield "footage", g["unit"] or "", g["officer"] or "", measure, g[measure]
    yield "footage", "", "", "clips", data["footage"]["clips"]
    yield "footage", "", "", "hours", data["footage"]["hours"]
    for measure, value in data["footage"]["unattributed"].items():
        yield "unattributed", "", "", measure, value
    for cause, value in data["footage"]["late"]["by_cause"].items():
        yield "late", "", "", cause, value
    full = data["full_recording"]
    yield "full_recording", "", "", "cases", full["cases"]
    yield "full_recording", "", "", "complete", full["complete"]
    for case in full["with_gaps"]:
        yield "full_recording", "", "", f"gaps:{case['case']}", case["gaps"]
    for section in ("legal_reviews", "notices", "access"):
        yield from _flat(section, data[section])


def _flat(section: str, value: Any, prefix: str = "") -> Iterator[tuple[str, str, str, str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flat(
                section, item, f"{prefix}{key}." if isinstance(item, dict) else prefix + key
            )
    else:
        yield section, "", "", prefix, "" if value is None else value


def csv_text(data: dict[str, Any]) -> str:
    out = text_io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "unit", "officer", "measure", "value"))
    writer.writerows(csv_rows(data))
    return out.getvalue()


# ---------------------------------------------------------------- HTML and charts


def bar_chart(chart_id: str, title: str, bars: Sequence[tuple[str, float]]) -> str:
    """A horizontal bar chart as inline SVG: our own drawing, no script, nothing fetched."""
    e = html.escape
    top = max((v for _, v in bars), default=0) or 1
    height = _BAR * max(len(bars), 1) + 30
    parts = [
        f'<figure><figcaption>{e(title)}</figcaption><svg id="{e(chart_id)}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'role="img" aria-label="{e(title)}">'
    ]
    scale = (_WIDTH - _LABEL - 60) / top
    for i, (label, value) in enumerate(bars):
        y = 10 + i * _BAR
        width = max(value * scale, 1 if value else 0)
        parts.append(
            f'<text x="{_LABEL - 6}" y="{y + 15}" text-anchor="end" font-size="12">{e(label)}</text>'
            f'<rect class="bar" x="{_LABEL}" y="{y + 3}" width="{width:.1f}" height="{_BAR - 6}" '
            f'fill="#3b6ea5"><title>{e(label)}: {value:g}</title></rect>'
            f'<text x="{_LABEL + width + 4:.1f}" y="{y + 15}" font-size="12">{value:g}</text>'
        )
    if not bars:
        parts.append('<text x="10" y="20" font-size="12">nothing in the period</text>')
    parts.append("</svg></figure>")
    return "".join(parts)


def _table(table_id: str, head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    e = html.escape
    cells = "".join(
        "<tr>" + "".join(f"<td>{e('' if c is None else str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    header = "".join(f"<th>{e(h)}</th>" for h in head)
    return f'<table id="{table_id}"><thead><tr>{header}</tr></thead><tbody>{cells}</tbody></table>'


def _unit_hours(data: dict[str, Any]) -> list[tuple[str, float]]:
    hours: dict[str, float] = {}
    for g in data["footage"]["by_unit_and_officer"]:
        unit = g["unit"] or "(none)"
        hours[unit] = round(hours.get(unit, 0.0) + g["hours"], 2)
    return sorted(hours.items())


def html_page(data: dict[str, Any]) -> str:
    e = html.escape
    footage = data["footage"]
    period = data["period"]
    reviews = data["legal_reviews"]
    notices = data["notices"]
    title = (
        f"{period['year']} annual statistics" if period["year"] else "Statistics"
    ) + f" — {period['start']} to {period['end']}"
    charts = "".join(
        (
            bar_chart("chart-unit-hours", "Hours of footage by unit", _unit_hours(data)),
            bar_chart(
                "chart-late",
                "Clips catalogued late, by cause",
                list(footage["late"]["by_cause"].items()),
            ),
            bar_chart("chart-reviews", "Legal review opinions", list(reviews["opinions"].items())),
            bar_chart(
                "chart-notices", "Notices: publication", list(notices["publication"].items())
            ),
        )
    )
    by_group = _table(
        "footage",
        ("unit", "officer", "clips", "hours", "late"),
        [
            (g["unit"] or "(none)", g["officer"] or "(none)", g["clips"], g["hours"], g["late"])
            for g in footage["by_unit_and_officer"]
        ],
    )
    summary = _table(
        "summary",
        ("section", "measure", "value"),
        [(s, m, v) for s, _u, _o, m, v in csv_rows(data) if s != "footage" or (not _u and not _o)],
    )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}"
        "th,td{border:1px solid #999;padding:.2em .6em;text-align:left}"
        "figure{margin:1em 0}figcaption{font-weight:bold}"
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{style}</style></head><body><h1>{e(title)}</h1>"
        f"<p>Station {e(data['station'])}, as of {e(data['as_of'])}: "
        f"{footage['clips']} clips, {footage['hours']} hours.</p>"
        f"{charts}<h2>Footage by unit and officer</h2>{by_group}"
        f"<h2>All figures</h2>{summary}"
        "</body></html>\n"
    )
