"""Human-readable tables for terminals; times shown in the station's zone (stored as UTC)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import Any, TextIO

from evidence_agent.config import Settings
from evidence_agent.domain.text import shown


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


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns; the last column is not padded (it may be long). Every cell is
    shown escaped: a reason or file name cannot break a row or drive the terminal."""
    cells = [
        [shown(v) for v in header],
        *[["-" if v is None else shown(v) for v in r] for r in rows],
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header) - 1)]
    lines = []
    for r in cells:
        lines.append(
            "  ".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        )
    return "\n".join(line.rstrip() for line in lines) + "\n"


def text_lines(lines: Iterable[str]) -> str:
    """Lines for the terminal, each escaped so that what it quotes stays on that one line."""
    return "".join(shown(line) + "\n" for line in lines)


def write_line(stream: TextIO, line: str) -> None:
    """One line to a terminal or log, escaped as `text_lines` escapes it."""
    stream.write(shown(line) + "\n")


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
    rows_out = [
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
    return table(header, rows_out)


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
        *spool_lines(settings),
        f"docks running: {len(data['docks_running'])}",
    ]
    for dock in data["docks_running"]:
        progress = ""
        if dock.get("bytes_total"):
            done, total = dock.get("bytes_done") or 0, dock["bytes_total"]
            progress = f"  {human_bytes(done)} of {human_bytes(total)} ({100 * done // total}%)"
        recorder = f"recorder {dock['recorder']} " if dock.get("recorder") else ""
        lines.append(
            f"  {recorder}{dock['source']}: {dock['volume']} since "
            f"{local_time(dock['started_at'], tz)}{progress}"
        )
    refused = data.get("refused_devices", [])
    if refused:
        lines.append(f"USB storage refused (last 24 hours, not read): {len(refused)}")
        for item in refused:
            usb = item.get("usb", {})
            ident = " ".join(
                str(usb[k])
                for k in ("ID_VENDOR_ID", "ID_MODEL_ID", "ID_VENDOR", "ID_MODEL", "ID_SERIAL_SHORT")
                if usb.get(k)
            )
            lines.append(
                f"  {local_time(item['at'], tz)}  {item['device']}  {ident or '-'}: {item['reason']}"
            )
    unidentified = data.get("unidentified_docks", [])
    if unidentified:
        lines.append(
            f"docks no recorder is named for (nothing read; `dock identify`): {len(unidentified)}"
        )
        for item in unidentified:
            oldest = ""
            if item["oldest_file_at"]:
                oldest = (
                    f", oldest file {local_time(item['oldest_file_at'], tz)} "
                    f"({item['hours_since_oldest_file']:.1f} h ago: {item['deadline']})"
                )
            lines.append(
                f"  {item['dock_session']}  {item['source']}: {item['volume']}  "
                f"{item['files']} media file(s), {human_bytes(item['bytes'])}{oldest}"
            )
    for item in data.get("clock_skew", []):
        lines.append(
            f"warning: recorder {item['recorder']} clock was off by "
            f"{item['clock_skew_seconds']:+.0f} s at its last dock "
            f"({local_time(item['docked_at'], tz)})"
        )
    for item in data.get("undocked_recorders", []):
        lines.append(
            f"warning: recorder {item['recorder']} (officer {item['officer']}) not docked for "
            f"{item['hours_undocked']:.1f} hours (last dock {local_time(item['last_docked_at'], tz)})"
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
    return text_lines(lines)


def spool_lines(settings: Settings) -> list[str]:
    """The spool's free space, and the warning before it fills (see services/spool_space.py)."""
    from evidence_agent.io.spool import Spool
    from evidence_agent.services.spool_space import spool_space

    space = spool_space(Spool(settings.spool_dir), settings.ingest.min_spool_free_bytes)
    if space is None:
        return []
    line = f"spool: {human_bytes(space.free_bytes)} free of {human_bytes(space.total_bytes)}"
    return [line] + ([f"warning: {space.message}"] if space.message else [])
