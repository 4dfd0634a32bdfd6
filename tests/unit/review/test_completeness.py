"""Coverage of an action window by footage: gaps, overlaps, unlinked footage, 24-hour breaches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from review.completeness import Footage, Span, coverage, gaps_in, merge, overlaps_of

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def span(a: float, b: float) -> Span:
    return Span(at(a), at(b))


def clip(
    clip_id: str,
    a: float,
    b: float,
    officer: str | None = "100231",
    linked: bool = True,
    late_by: timedelta | None = None,
) -> Footage:
    return Footage(clip_id, officer, at(a), at(b), linked, late_by)


def test_merge_joins_touching_and_overlapping_spans_and_drops_empty_ones() -> None:
    assert merge([span(10, 20), span(0, 10), span(15, 30), span(40, 40), span(50, 60)]) == [
        span(0, 30),
        span(50, 60),
    ]


def test_gaps_at_the_start_middle_and_end_of_the_window() -> None:
    gaps = gaps_in(span(0, 100), [span(10, 40), span(50, 90)], timedelta(0))
    assert gaps == [span(0, 10), span(40, 50), span(90, 100)]


def test_gaps_within_the_tolerance_are_not_gaps() -> None:
    # A recorder closing one file and opening the next loses a second or so.
    assert gaps_in(span(0, 60), [span(0, 29), span(30, 60)], timedelta(seconds=2)) == []
    assert gaps_in(span(0, 60), [span(0, 27), span(30, 60)], timedelta(seconds=2)) == [span(27, 30)]


def test_footage_outside_the_window_covers_nothing() -> None:
    assert gaps_in(span(100, 200), [span(0, 100), span(200, 300)], timedelta(0)) == [span(100, 200)]


def test_overlapping_clips_of_one_officer_are_reported() -> None:
    found = overlaps_of(
        "100231", [clip("a", 0, 60), clip("b", 50, 100), clip("c", 100, 120)], timedelta(0)
    )
    assert [(o.first, o.second, o.span) for o in found] == [("a", "b", span(50, 60))]


def test_a_clip_inside_a_longer_one_overlaps_it() -> None:
    found = overlaps_of(
        "1", [clip("long", 0, 100), clip("x", 10, 20), clip("y", 30, 40)], timedelta(0)
    )
    assert [(o.first, o.second) for o in found] == [("long", "x"), ("long", "y")]


def test_complete_when_linked_footage_covers_the_window() -> None:
    report = coverage(
        span(0, 12),
        [clip("1", 0, 4), clip("2", 4, 8), clip("3", 8, 12)],
        handling_officers=["100231"],
        required=True,
    )
    assert report.complete and report.gaps == () and report.ratio == 1.0
    assert report.to_json()["complete"] is True


def test_a_missing_clip_is_a_gap_and_is_named_as_unlinked() -> None:
    report = coverage(
        span(0, 12),
        [clip("1", 0, 4), clip("2", 4, 8, linked=False), clip("3", 8, 12)],
        handling_officers=["100231"],
        required=True,
    )
    assert not report.complete
    assert report.gaps == (span(4, 8),)
    assert report.unlinked == ("2",)
    assert round(report.covered_seconds) == 8


def test_two_officers_together_cover_the_window_each_with_their_own_gaps() -> None:
    report = coverage(
        span(0, 100),
        [clip("a", 0, 60, officer="1"), clip("b", 50, 100, officer="2")],
        handling_officers=["1", "2"],
        required=True,
    )
    assert report.gaps == ()
    by_officer = {o.officer: o for o in report.officers}
    assert by_officer["1"].gaps == (span(60, 100),)
    assert by_officer["2"].gaps == (span(0, 50),)
    assert report.complete


def test_footage_of_other_officers_is_not_unlinked_footage_of_the_case() -> None:
    report = coverage(
        span(0, 10),
        [clip("a", 0, 10, officer="1"), clip("other", 0, 10, officer="9", linked=False)],
        handling_officers=["1"],
        required=True,
    )
    assert report.unlinked == ()


def test_a_photo_in_the_window_counts_as_unlinked_but_covers_no_time() -> None:
    report = coverage(
        span(0, 10),
        [clip("v", 0, 10), clip("photo", 5, 5, linked=False), clip("after", 10, 10, linked=False)],
        handling_officers=["100231"],
        required=True,
    )
    assert report.unlinked == ("photo",)


def test_late_footage_is_a_24_hour_breach() -> None:
    report = coverage(
        span(0, 10),
        [clip("v", 0, 10, late_by=timedelta(hours=3))],
        handling_officers=["100231"],
        required=True,
    )
    assert [(b.clip_id, b.late_by) for b in report.breaches] == [("v", timedelta(hours=3))]
    assert not report.complete


def test_no_linked_footage_is_a_problem() -> None:
    report = coverage(span(0, 10), [], handling_officers=["1"], required=False)
    assert report.problems == ("no footage is linked to the case",)
    assert report.gaps == (span(0, 10),)
    assert not report.complete


def test_a_window_ending_before_it_starts_is_a_problem() -> None:
    report = coverage(span(10, 0), [clip("a", 0, 10)], handling_officers=["1"], required=True)
    assert "the action ends before it starts" in report.problems
