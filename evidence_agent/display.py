"""Human-readable tables for terminals; times shown in the station's zone (stored as UTC)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from evidence_agent.config import Settings


def local_time(text: str | None, tz: tzinfo | None) -> str:
    if not text:
        return "-"
    value = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(tz)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def clip_table(rows: list[dict[str, Any]], tz: tzinfo | None) -> str:
    if not rows:
        return "no clips\n"
    header = (
        "ID",
        "SHA-256",
        "SIZE",
        "RECORDED (local)",
        "RECORDER",
        "OFFICER",
        "UNIT",
        "STATE",
        "FLAGS",
        "SOURCE",
    )
    lines = [
        (
            r["id"][:8],
            r["sha256"][:16],
            human_bytes(r["size"]),
            local_time(r["recorded_start"], tz),
            r["recorder"] or "-",
            r["officer"] or "-",
            r["unit"] or "-",
            r["state"],
            ",".join(r["flags"]) or "-",
            r["source_path"],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header) - 1)]
    out = []
    for row in [header, *lines]:
        out.append(
            "  ".join(str(v).ljust(w) for v, w in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1]
        )
    return "\n".join(out) + "\n"


def status_text(data: dict[str, Any], settings: Settings) -> str:
    tz = settings.tz
    backlog = data["backlog"]
    lines = [
        f"station {data['station']}  ({data['store']})",
        f"clips catalogued: {data['clips_total']}",
        f"backlog: {backlog['spooled_clips']} clip(s), {human_bytes(backlog['spooled_bytes'])} waiting for the store"
        + (
            f", oldest since {local_time(backlog['oldest_spooled_at'], tz)}"
            if backlog["oldest_spooled_at"]
            else ""
        ),
        f"last stored: {local_time(data['last_stored_at'], tz)}",
        f"docks running: {len(data['docks_running'])}",
    ]
    for dock in data["docks_running"]:
        lines.append(
            f"  {dock['source']}: {dock['volume']} since {local_time(dock['started_at'], tz)}"
        )
    limit = settings.deadline.limit_hours
    for title, key in (
        (f"over {limit} hours", "over_24_hours"),
        (f"approaching {limit} hours", "approaching_24_hours"),
    ):
        rows = data[key]
        lines.append(f"clips {title}: {sum(r['clips'] for r in rows)}")
        for r in rows:
            lines.append(f"  unit {r['unit']}  officer {r['officer']}: {r['clips']}")
    for extra in data.get("warnings", []):
        lines.append(f"warning: {extra}")
    return "\n".join(lines) + "\n"
