"""Redaction plans: what is accepted, what is refused (naming the item), and the ffmpeg command built."""

from __future__ import annotations

from typing import Any

import pytest

from evidence_agent.domain.redaction import (
    ffmpeg_arguments,
    filter_graph,
    parse_plan,
    plan_problems,
)
from evidence_agent.errors import InputError

BOX = {"start": 1, "end": 2.5, "x": 10, "y": 20, "w": 64, "h": 48}


def test_a_full_plan_round_trips_and_builds_one_command() -> None:
    plan = parse_plan(
        {"blur": [BOX], "mute": [{"start": 3, "end": 4}], "trim": {"start": 0.5, "end": 9}}
    )
    assert parse_plan(plan.to_json()) == plan
    args = ffmpeg_arguments(plan, "in.mp4", "out.mp4", has_audio=True)
    assert args[:2] == ["ffmpeg", "-nostdin"] and "-n" in args and args[-1] == "out.mp4"
    graph = args[args.index("-filter_complex") + 1]
    assert "crop=64:48:10:20,boxblur=12:4" in graph
    assert "overlay=10:20:enable='between(t,1,2.5)'" in graph
    assert "gte(t+0.5/s,3)*lt(t+0.5/s,4)" in graph
    assert "trim=start=0.5:end=9,setpts=PTS-STARTPTS[vout]" in graph
    assert "atrim=start=0.5:end=9" in graph
    assert args[args.index("-c:v") + 1] == "libx264" and args[args.index("-qp") + 1] == "0"


def test_without_sound_or_trim_the_graph_passes_the_rest_through() -> None:
    graph = filter_graph(parse_plan({"blur": [BOX]}), has_audio=False)
    assert graph.endswith("[v0]null[vout]") and "[0:a]" not in graph
    assert filter_graph(parse_plan({"mute": [{"start": 0, "end": 1}]}), has_audio=True).startswith(
        "[0:v]null[vout];[0:a]aeval="
    )


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        ({}, "changes nothing"),
        ([], "JSON object"),
        ({"blur": [BOX], "crop": 1}, "JSON object"),
        ({"blur": [{**BOX, "end": 1}]}, "blur[0] ends at 1.0"),
        ({"blur": [{**BOX, "w": 4}]}, "blur[0] is smaller than 8x8"),
        ({"blur": [{**BOX, "x": -1}]}, "blur[0].x"),
        ({"blur": [{**BOX, "x": 1.5}]}, "blur[0].x"),
        ({"mute": [{"start": "1", "end": 2}]}, "mute[0].start"),
        ({"mute": [{"start": float("nan"), "end": 2}]}, "mute[0].start"),
        ({"mute": [{"start": True, "end": 2}]}, "mute[0].start"),
        ({"trim": {"start": 2, "end": 2}}, "trim ends"),
        ({"mute": {"start": 1, "end": 2}}, "mute is not a list"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_item(doc: Any, named: str) -> None:
    with pytest.raises(InputError, match=named.replace("[", r"\[").replace("]", r"\]")):
        parse_plan(doc)


def test_a_plan_that_does_not_fit_the_clip_says_where() -> None:
    plan = parse_plan({"blur": [{**BOX, "x": 600}], "mute": [{"start": 30, "end": 31}]})
    assert plan_problems(plan, 640, 360, 10.0) == [
        "blur[0] reaches outside the 640x360 picture",
        "mute[0] starts at 30.0 s, after the clip's end",
    ]
    assert plan_problems(parse_plan({"blur": [BOX]}), 640, 360, 10.0) == []
