"""Completeness of a case's recording: coverage of the action window by footage, as pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from evidence_agent.custody.events import format_time


@dataclass(frozen=True)
class Span:
    """A half-open time interval [start, end) in aware UTC."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())

    def to_json(self) -> dict[str, Any]:
        return {
            "start": format_time(self.start),
            "end": format_time(self.end),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Footage:
    """One clip as the check sees it."""

    clip_id: str
    officer: str | None  # badge
    start: datetime
    end: datetime  # equal to start for a photo or an unreadable clip: it covers no time
    linked: bool  # linked to the case under check
    late_by: timedelta | None = None  # past the 24-hour rule by this much, when it was


@dataclass(frozen=True)
class Overlap:
    officer: str
    first: str  # clip ids
    second: str
    span: Span

    def to_json(self) -> dict[str, Any]:
        return {"officer": self.officer, "clips": [self.first, self.second], **self.span.to_json()}


@dataclass(frozen=True)
class OfficerCoverage:
    officer: str
    handling: bool  # named among the case's handling officers
    covered_seconds: float
    gaps: tuple[Span, ...]
    overlaps: tuple[Overlap, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "officer": self.officer,
            "handling": self.handling,
            "covered_seconds": round(self.covered_seconds, 3),
            "gaps": [g.to_json() for g in self.gaps],
            "overlaps": [o.to_json() for o in self.overlaps],
        }


@dataclass(frozen=True)
class Breach:
    clip_id: str
    late_by: timedelta

    def to_json(self) -> dict[str, Any]:
        return {"clip": self.clip_id, "late_by_seconds": round(self.late_by.total_seconds(), 3)}


@dataclass(frozen=True)
class CoverageReport:
    window: Span
    required: bool  # the enforcement type requires full-process recording
    tolerance: timedelta
    covered_seconds: float
    gaps: tuple[Span, ...]  # of the union of every linked clip
    officers: tuple[OfficerCoverage, ...]
    unlinked: tuple[str, ...]  # footage of handling officers in the window, not in the case
    breaches: tuple[Breach, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """Nothing a legal reviewer must look at: no gap, nothing unlinked, no late footage."""
        return not (self.gaps or self.unlinked or self.breaches or self.problems)

    @property
    def ratio(self) -> float:
        total = self.window.seconds
        return 1.0 if total == 0 else min(1.0, self.covered_seconds / total)

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window.to_json(),
            "full_recording_required": self.required,
            "complete": self.complete,
            "covered_seconds": round(self.covered_seconds, 3),
            "coverage_ratio": round(self.ratio, 6),
            "gap_tolerance_seconds": self.tolerance.total_seconds(),
            "gaps": [g.to_json() for g in self.gaps],
            "officers": [o.to_json() for o in self.officers],
            "unlinked_in_window": list(self.unlinked),
            "breaches_24h": [b.to_json() for b in self.breaches],
            "problems": list(self.problems),
        }


def merge(spans: Iterable[Span]) -> list[Span]:
    """The union of spans as disjoint spans in time order; empty spans cover nothing."""
    merged: list[Span] = []
    for span in sorted((s for s in spans if s.end > s.start), key=lambda s: s.start):
        if merged and span.start <= merged[-1].end:
            if span.end > merged[-1].end:
                merged[-1] = Span(merged[-1].start, span.end)
        else:
            merged.append(span)
    return merged


def clip_to(span: Span, window: Span) -> Span | None:
    start, end = max(span.start, window.start), min(span.end, window.end)
    return Span(start, end) if end > start else None


def gaps_in(window: Span, spans: Iterable[Span], tolerance: timedelta) -> list[Span]:
    """Parts of the window no span covers, longer than the tolerance.

    The tolerance absorbs the moment a recorder takes to close one file and open the next."""
    inside = [c for s in spans if (c := clip_to(s, window)) is not None]
    gaps = []
    cursor = window.start
    for span in merge(inside):
        if span.start - cursor > tolerance:
            gaps.append(Span(cursor, span.start))
        cursor = max(cursor, span.end)
    if window.end - cursor > tolerance:
        gaps.append(Span(cursor, window.end))
    return gaps


def covered(window: Span, spans: Iterable[Span]) -> float:
    inside = [c for s in spans if (c := clip_to(s, window)) is not None]
    return sum(s.seconds for s in merge(inside))


def overlaps_of(officer: str, footage: Sequence[Footage], tolerance: timedelta) -> list[Overlap]:
    """Clips of one officer that overlap each other by more than the tolerance.

    One recorder records one stream: its clips overlapping points at a clock or naming fault."""
    found = []
    ordered = sorted((f for f in footage if f.end > f.start), key=lambda f: (f.start, f.end))
    latest: Footage | None = None  # the clip seen so far that ends last
    for clip in ordered:
        if latest is not None and min(latest.end, clip.end) - clip.start > tolerance:
            found.append(
                Overlap(
                    officer,
                    latest.clip_id,
                    clip.clip_id,
                    Span(clip.start, min(latest.end, clip.end)),
                )
            )
        if latest is None or clip.end > latest.end:
            latest = clip
    return found


def in_window(f: Footage, window: Span) -> bool:
    if f.end > f.start:
        return f.start < window.end and f.end > window.start
    return window.start <= f.start < window.end  # a photo: a moment


def coverage(
    window: Span,
    footage: Sequence[Footage],
    *,
    handling_officers: Sequence[str],
    required: bool,
    tolerance: timedelta = timedelta(seconds=2),
) -> CoverageReport:
    """Check a case: `footage` holds its linked clips and the handling officers' clips near the window.

    The case's recording is complete when the union of its linked clips leaves no gap in the
    action window, no footage of a handling officer in the window is left out of the case, and
    no clip broke the 24-hour rule. Per officer, coverage, gaps and overlaps are reported too:
    with several officers, one camera covering a moment is enough for the union."""
    problems = []
    if window.end < window.start:
        problems.append("the action ends before it starts")
        window = Span(window.start, window.start)
    linked = [f for f in footage if f.linked]
    spans = [Span(f.start, f.end) for f in linked]
    gaps = gaps_in(window, spans, tolerance) if window.seconds > 0 else []
    officers = []
    badges = list(
        dict.fromkeys([*handling_officers, *sorted({f.officer for f in linked if f.officer})])
    )
    for badge in badges:
        own = [f for f in linked if f.officer == badge]
        own_spans = [Span(f.start, f.end) for f in own]
        officers.append(
            OfficerCoverage(
                officer=badge,
                handling=badge in handling_officers,
                covered_seconds=covered(window, own_spans),
                gaps=tuple(gaps_in(window, own_spans, tolerance)) if window.seconds > 0 else (),
                overlaps=tuple(overlaps_of(badge, own, tolerance)),
            )
        )
    handling = set(handling_officers)
    unlinked = sorted(
        f.clip_id
        for f in footage
        if not f.linked and f.officer in handling and in_window(f, window)
    )
    considered = [
        f for f in footage if f.linked or (f.officer in handling and in_window(f, window))
    ]
    breaches = sorted(
        (Breach(f.clip_id, f.late_by) for f in considered if f.late_by is not None),
        key=lambda b: b.clip_id,
    )
    if not linked:
        problems.append("no footage is linked to the case")
    return CoverageReport(
        window=window,
        required=required,
        tolerance=tolerance,
        covered_seconds=covered(window, spans),
        gaps=tuple(gaps),
        officers=tuple(officers),
        unlinked=tuple(unlinked),
        breaches=tuple(breaches),
        problems=tuple(problems),
    )
