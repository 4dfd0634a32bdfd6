"""Terminal text for the review commands; times in the station's zone (stored and --json in UTC)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from evidence_agent.cli.display import human_bytes, local_time, table, text_lines
from evidence_agent.custody.vocabulary import EventType


def clip_rows(rows: Sequence[dict[str, Any]], tz: tzinfo | None) -> str:
    if not rows:
        return "no clips\n"
    return table(
        (
            "ID",
            "RECORDED (local)",
            "SECONDS",
            "OFFICER",
            "RECORDER",
            "UNIT",
            "STATE",
            "RETENTION",
            "CASES",
            "SOURCE",
        ),
        [
            (
                r["id"][:8],
                local_time(r["recorded_start"], tz),
                f"{r['duration_seconds']:.0f}" if r.get("duration_seconds") is not None else "-",
                r["officer"],
                r["recorder"],
                r["unit"],
                r["state"],
                r["retention_class"] + (" +hold" if r.get("legal_hold") else ""),
                ",".join(r.get("cases", [])) or "-",
                r["source_path"],
            )
            for r in rows
        ],
    )


def case_rows(cases: Sequence[dict[str, Any]], tz: tzinfo | None) -> str:
    if not cases:
        return "no cases\n"
    return (
        table(
            ("NUMBER", "STATE", "TYPE", "ACTION START (local)", "CLIPS", "FILE DUE", "TITLE"),
            [
                (
                    c["number"],
                    c["state"],
                    c["enforcement_type"] + (" *" if c["full_recording_required"] else ""),
                    local_time(c["action_start"], tz),
                    c["clips"],
                    local_time(c["case_file_due"], tz)[:10],
                    c["title"],
                )
                for c in cases
            ],
        )
        + "(* full-process recording required)\n"
    )


def case_text(case: dict[str, Any], tz: tzinfo | None) -> str:
    lines = [
        f"case {case['number']}  [{case['state']}]  {case['title']}",
        f"  enforcement type: {case['enforcement_type']}"
        + ("  (full-process recording required)" if case["full_recording_required"] else ""),
        f"  cause of action: {case['cause_of_action'] or '-'}",
        f"  parties: {', '.join(case['parties']) or '-'}",
        f"  unit: {case['unit'] or '-'}   handling officers: {', '.join(case['handling_officers']) or '-'}",
        f"  action: {local_time(case['action_start'], tz)} to {local_time(case['action_end'], tz)}",
    ]
    if case["case_file_due"]:
        left = case.get("case_file_days_left")
        lines.append(
            f"  case file due: {local_time(case['case_file_due'], tz)}"
            + (f" ({left} days left)" if left is not None else "")
        )
    lines.append(f"  footage: {len(case['footage'])} clip(s); documents: {len(case['documents'])}")
    lines.append("timeline:")
    for event in case["timeline"]:
        end = f" - {local_time(event['end'], tz)[11:]}" if event.get("end") else ""
        ref = f"  [{event['ref'][:8]}]" if event.get("ref") else ""
        lines.append(f"  {local_time(event['time'], tz)}{end}  {event['text']}{ref}")
    return text_lines(lines)


def check_text(result: dict[str, Any], tz: tzinfo | None) -> str:
    verdict = "COMPLETE" if result["complete"] else "INCOMPLETE"
    required = result.get("full_recording_required")
    lines = [
        f"case {result['case']} ({result['enforcement_type']}): {verdict}"
        + ("" if required else "  (full-process recording not required for this type)")
    ]
    if "window" in result:
        w = result["window"]
        lines.append(
            f"  action window {local_time(w['start'], tz)} to {local_time(w['end'], tz)}: "
            f"{result['covered_seconds']:.0f} of {w['seconds']:.0f} s covered "
            f"({100 * result['coverage_ratio']:.1f} %)"
        )
        for gap in result["gaps"]:
            lines.append(
                f"  GAP {local_time(gap['start'], tz)} to {local_time(gap['end'], tz)} "
                f"({gap['seconds']:.0f} s without linked footage)"
            )
        for officer in result["officers"]:
            tag = "" if officer["handling"] else " (not a handling officer)"
            lines.append(
                f"  officer {officer['officer']}{tag}: {officer['covered_seconds']:.0f} s, "
                f"{len(officer['gaps'])} gap(s), {len(officer['overlaps'])} overlap(s)"
            )
            for overlap in officer["overlaps"]:
                a, b = overlap["clips"]
                lines.append(f"    overlap {a[:8]} / {b[:8]}: {overlap['seconds']:.0f} s")
        for clip in result["unlinked_in_window"]:
            lines.append(f"  NOT LINKED: clip {clip} of a handling officer is in the window")
        for breach in result["breaches_24h"]:
            hours = breach["late_by_seconds"] / 3600
            lines.append(f"  24-HOUR BREACH: clip {breach['clip']} stored {hours:.1f} h late")
    for problem in result.get("problems", []):
        lines.append(f"  PROBLEM: {problem}")
    return text_lines(lines)


def access_rows(rows: Sequence[dict[str, Any]], tz: tzinfo | None) -> str:
    if not rows:
        return "no access events\n"
    out = []
    for r in rows:
        data = r.get("data", {})
        what = r["subject"]["kind"] + " " + r["subject"]["id"][:36]
        detail = data.get("cause") or data.get("target") or data.get("command") or ""
        if r["type"] == EventType.ACCESS_REFUSED:
            detail = f"{data.get('action')}: {detail}"
        out.append(
            (
                r["seq"],
                local_time(r["time"], tz),
                r["actor"],
                r["type"],
                what,
                r["reason"] or "-",
                detail,
            )
        )
    return table(("SEQ", "TIME (local)", "WHO", "WHAT", "SUBJECT", "WHY", "DETAIL"), out)


def retrieval_text(report: dict[str, Any]) -> str:
    lines = []
    for item in [*report["handed_over"], *report["documents"]]:
        how = (
            "already in the target, identical, verified"
            if item["already_there"]
            else "verified and handed over"
        )
        what = f"clip {item['clip'][:8]}" if "clip" in item else f"document {item['document']}"
        lines.append(
            f"{how}: {item['file']}  ({human_bytes(item['size'])}, "
            f"sha256 {item['sha256'][:16]}..., {what})"
        )
    for clip, cause in report["integrity_failures"].items():
        lines.append(f"NOT handed over: clip {clip}: {cause}")
    for document, cause in report["document_integrity_failures"].items():
        lines.append(f"NOT handed over: document {document}: {cause}")
    if report["receipt"]:
        lines.append(f"receipt: {report['receipt']}")
    return text_lines(lines)


def due_rows(rows: Sequence[dict[str, Any]], tz: tzinfo | None) -> str:
    if not rows:
        return "no clips past retention\n"
    return table(
        ("ID", "RECORDED (local)", "OFFICER", "CLASS", "KEPT UNTIL (local)", "REQUESTS", "SOURCE"),
        [
            (
                r["id"][:8],
                local_time(r["recorded_start"], tz),
                r["officer"],
                r["retention_class"],
                local_time(r["retention_until"], tz),
                ", ".join(f"#{q['id']} by {q['requested_by']}" for q in r["deletion_requests"])
                or "-",
                r["source_path"],
            )
            for r in rows
        ],
    )
