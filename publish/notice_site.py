"""The notices exported for the agency's publication platform: a static HTML site and a JSON feed."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from evidence_agent.catalog.models import Notice
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.domain.personal_data import redact
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.services.guard import require
from evidence_agent.services.output_directory import (
    LocalDirectory,
    OutputDirectory,
    output_directory,
    write_whole,
)
from evidence_agent.services.station import Station
from publish.notices import published_document

KIND_NAMES = {"penalty": "行政处罚", "licence": "行政许可", "other": "其他行政执法决定"}

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 60em; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #999; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
article { border-top: 1px solid #ccc; margin-top: 1.5em; padding-top: 0.5em; }
.text { white-space: pre-wrap; }
"""


def export_notices(
    station: Station,
    caller: Caller,
    directory: Path,
    reason: str,
    *,
    output: OutputDirectory | None = None,
) -> dict[str, Any]:
    """Write index.html and feed.json of every notice published and not withdrawn; only the
    redacted text is written, and a notice concerning a minor never is. `output`: the
    directory, by default written by this process (the local API passes the caller's)."""
    require(station, caller, Action.NOTICE_WRITE, reason=reason)
    with station.reading() as session:
        rows = session.exec(
            select(Notice)
            .where(col(Notice.published_on).is_not(None))
            .where(col(Notice.withdrawn_on).is_(None))
            .where(col(Notice.minors).is_(False))
            .order_by(col(Notice.published_on).desc(), col(Notice.number))
        ).all()
    notices = [_document(row) for row in rows]
    out = output_directory(output or LocalDirectory(directory))
    target = out.path
    feed = {"station": station.settings.station_id, "notices": notices}
    feed_sha = write_whole(
        out,
        "feed.json",
        (json.dumps(feed, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode(),
    )
    index_sha = write_whole(out, "index.html", site_page(notices).encode())
    with station.transaction() as session:
        station.record(
            session,
            EventType.NOTICES_EXPORTED.event(
                station.settings.station_id,
                actor=caller.actor,
                reason=reason or "notices exported for publication",
                sha256=index_sha,
                data={
                    "directory": str(target),
                    "notices": [n["number"] for n in notices],
                    "feed_sha256": feed_sha,
                },
            ),
        )
    return {
        "directory": str(target),
        "notices": len(notices),
        "index_sha256": index_sha,
        "feed_sha256": feed_sha,
    }


def _document(row: Notice) -> dict[str, Any]:
    assert row.published_on is not None and row.published_text is not None
    title = redact(row.title, json.loads(row.persons)).text
    return {
        **published_document(row, title, row.published_text, row.published_on),
        "sha256": row.published_sha256,
    }


def site_page(notices: list[dict[str, Any]]) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><td><a href="#n-{i}">{e(n["number"])}</a></td><td>{e(KIND_NAMES[n["kind"]])}</td>'
        f"<td>{e(n['title'])}</td><td>{e(n['decision_date'])}</td>"
        f"<td>{e(n['published_on'])}</td></tr>"
        for i, n in enumerate(notices)
    )
    articles = "".join(
        f'<article id="n-{i}"><h2>{e(n["title"])}</h2>'
        f"<p>{e(KIND_NAMES[n['kind']])} · 文号 {e(n['number'])} · 决定日期 "
        f"{e(n['decision_date'])} · 公开日期 {e(n['published_on'])}</p>"
        f'<p class="text">{e(n["text"])}</p></article>'
        for i, n in enumerate(notices)
    )
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>行政执法公示</title><style>{_STYLE}</style></head><body>"
        f"<h1>行政执法公示</h1><p>{len(notices)} 条</p>"
        '<table id="notices"><thead><tr><th>文号</th><th>类别</th><th>标题</th>'
        f"<th>决定日期</th><th>公开日期</th></tr></thead><tbody>{rows}</tbody></table>"
        f"{articles}</body></html>\n"
    )
