"""A case's action window against its footage in the catalog: what `case check` reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import Case, Clip, Officer
from evidence_agent.catalog.queries import clip_views
from evidence_agent.domain.deadline import DeadlineRule, lateness
from evidence_agent.domain.states import ClipState
from evidence_agent.errors import IncompleteError
from evidence_agent.services.station import Station
from review.completeness import CoverageReport, Footage, Span, coverage
from review.lookup import json_list, linked_clip_ids


def case_coverage(station: Station, case: Case) -> tuple[dict[str, Any], CoverageReport | None]:
    """The action window's coverage by the case's footage: the linked clips and those of its
    handling officers recorded within the window; None for the report when there is no window."""
    officers = json_list(case.handling_officers)
    required = station.settings.review.requires_full_recording(case.enforcement_type)
    result: dict[str, Any] = {"case": case.number, "enforcement_type": case.enforcement_type}
    if case.action_start is None or case.action_end is None:
        result.update(
            {
                "full_recording_required": required,
                "complete": False,
                "problems": ["the case has no action start and end: coverage cannot be checked"],
            }
        )
        return result, None
    window = Span(case.action_start, case.action_end)
    footage, untimed = _footage_of(station, case, window, officers)
    report = coverage(
        window,
        footage,
        handling_officers=officers,
        required=required,
        tolerance=station.settings.review.gap_tolerance,
    )
    result.update(report.to_json())
    if untimed:
        result["problems"] = [
            *result["problems"],
            *(
                f"clip {c} has no recording time: it cannot be placed in the window"
                for c in untimed
            ),
        ]
        result["complete"] = False
    return result, report


def incomplete_override(station: Station, case: Case) -> dict[str, Any] | None:
    """The gaps and problems of a case that needs full recording and whose footage does not
    cover its action window (what `case check` reports); None when the rule does not hold it.

    A case so held is neither closed nor sent for legal review unless the person acting
    overrides it with a reason: the override and what it went over are logged with the act."""
    coverage_now, _ = case_coverage(station, case)
    if not coverage_now.get("full_recording_required") or coverage_now["complete"]:
        return None
    return {k: coverage_now.get(k) for k in ("gaps", "problems")}


def incomplete_error(case: Case, override: dict[str, Any], act: str) -> IncompleteError:
    """The refusal of `act` (close it, send it for review) on an incomplete case."""
    return IncompleteError(
        f"case {case.number} needs full-process recording and its footage does not "
        f"cover the action window ({len(override.get('gaps') or [])} gap(s), "
        f"{len(override.get('problems') or [])} problem(s)): not {act}",
        remedy="`evidence-agent case check` shows what is missing; link the footage, or "
        "go on anyway with --override-incomplete and a --reason saying why",
    )


def _footage_of(
    station: Station, case: Case, window: Span, officers: list[str]
) -> tuple[list[Footage], list[str]]:
    """The case's footage as the check sees it, and the ids of clips without a recording time."""
    deadline = station.settings.deadline
    rule = DeadlineRule(
        limit=timedelta(hours=deadline.limit_hours), warn=timedelta(hours=deadline.warn_hours)
    )
    with station.reading() as session:
        assert case.id is not None
        linked = set(linked_clip_ids(session, case.id))
        rows = _clips_with_officers(session, linked)
        for handling in officers:
            for view in clip_views(session, officer=handling, since=window.start, until=window.end):
                rows.setdefault(view.clip.id, (view.clip, view.officer))
    footage = []
    untimed = []
    for clip_id, (clip, officer) in sorted(rows.items()):
        if clip.state == ClipState.DELETED and clip_id not in linked:
            continue
        if clip.recorded_start is None:
            untimed.append(clip_id)
            continue
        footage.append(
            Footage(
                clip_id=clip_id,
                officer=officer,
                start=clip.recorded_start,
                end=clip.recorded_end or clip.recorded_start,
                linked=clip_id in linked,
                late_by=lateness(clip.recorded_end, clip.ingested_at, rule),
            )
        )
    return footage, untimed


def _clips_with_officers(
    session: Session, clip_ids: set[str]
) -> dict[str, tuple[Clip, str | None]]:
    """Each clip by its id, with the badge of the officer it is attributed to."""
    if not clip_ids:
        return {}
    return {
        clip.id: (clip, badge)
        for clip, badge in session.exec(
            select(Clip, Officer.badge)
            .outerjoin(Officer, col(Clip.officer_id) == Officer.id)
            .where(col(Clip.id).in_(clip_ids))
        )
    }
