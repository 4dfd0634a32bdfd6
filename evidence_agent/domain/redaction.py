"""Redaction plans (blur boxes and mutes over time ranges, a trim) and the ffmpeg command that applies one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from evidence_agent.errors import InputError

# Lossless output: what the plan does not touch stays the original's decoded picture and sound
# (H.264 at quantiser 0, Apple Lossless audio), so a derivative differs only where it says.
VIDEO_CODEC = ("-c:v", "libx264", "-qp", "0", "-preset", "veryfast", "-pix_fmt", "yuv420p")
AUDIO_CODEC = ("-c:a", "alac")
MIN_BOX = 8  # pixels: a smaller box cannot be blurred (its chroma planes have no room)
_MAX_ITEMS = 256
_PLAN_KEYS = frozenset({"blur", "mute", "trim"})


@dataclass(frozen=True)
class Span:
    """A time range of the original, in seconds from its start: [start, end)."""

    start: float
    end: float


@dataclass(frozen=True)
class Box:
    """A rectangle of the picture (pixels, from the top left) blurred during a time range."""

    span: Span
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class RedactionPlan:
    blur: tuple[Box, ...] = ()
    mute: tuple[Span, ...] = ()
    trim: Span | None = None  # only this range of the original is kept

    def to_json(self) -> dict[str, Any]:
        return {
            "blur": [
                {"start": b.span.start, "end": b.span.end, "x": b.x, "y": b.y, "w": b.w, "h": b.h}
                for b in self.blur
            ],
            "mute": [{"start": s.start, "end": s.end} for s in self.mute],
            "trim": {"start": self.trim.start, "end": self.trim.end} if self.trim else None,
        }


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"redaction plan: {where} is not a number of seconds")
    if value < 0:
        raise InputError(f"redaction plan: {where} is negative")
    return float(value)


def _pixels(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"redaction plan: {where} is not a whole number of pixels")
    return value


def _span(doc: Any, where: str) -> Span:
    if not isinstance(doc, dict):
        raise InputError(f"redaction plan: {where} is not an object with start and end")
    start = _number(doc.get("start"), f"{where}.start")
    end = _number(doc.get("end"), f"{where}.end")
    if end <= start:
        raise InputError(f"redaction plan: {where} ends at {end}, not after its start {start}")
    return Span(start, end)


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    items = doc.get(key, [])
    if not isinstance(items, list) or len(items) > _MAX_ITEMS:
        raise InputError(f"redaction plan: {key} is not a list of at most {_MAX_ITEMS}")
    return items


def parse_plan(doc: Any) -> RedactionPlan:
    """A plan from its JSON document; InputError naming the first bad item."""
    if not isinstance(doc, dict) or not set(doc) <= _PLAN_KEYS:
        raise InputError(
            "a redaction plan is a JSON object with blur, mute and trim",
            remedy='e.g. {"blur": [{"start": 1, "end": 3, "x": 0, "y": 0, "w": 160, "h": 120}], '
            '"mute": [{"start": 4, "end": 6}], "trim": {"start": 0.5, "end": 10}}',
        )
    boxes = []
    for n, item in enumerate(_list(doc, "blur")):
        where = f"blur[{n}]"
        span = _span(item, where)
        x, y = _pixels(item.get("x"), f"{where}.x"), _pixels(item.get("y"), f"{where}.y")
        w, h = _pixels(item.get("w"), f"{where}.w"), _pixels(item.get("h"), f"{where}.h")
        if w < MIN_BOX or h < MIN_BOX:
            raise InputError(f"redaction plan: {where} is smaller than {MIN_BOX}x{MIN_BOX} pixels")
        boxes.append(Box(span, x, y, w, h))
    mutes = [_span(item, f"mute[{n}]") for n, item in enumerate(_list(doc, "mute"))]
    trim = _span(doc["trim"], "trim") if doc.get("trim") is not None else None
    plan = RedactionPlan(tuple(boxes), tuple(mutes), trim)
    if not plan.blur and not plan.mute and plan.trim is None:
        raise InputError("the redaction plan changes nothing: give blur, mute or trim")
    return plan


def plan_problems(plan: RedactionPlan, width: int, height: int, duration: float) -> list[str]:
    """What of the plan does not fit the clip: boxes outside the picture, times past its end."""
    problems = []
    for n, box in enumerate(plan.blur):
        if box.x + box.w > width or box.y + box.h > height:
            problems.append(f"blur[{n}] reaches outside the {width}x{height} picture")
    spans = [("blur", n, b.span) for n, b in enumerate(plan.blur)]
    spans += [("mute", n, s) for n, s in enumerate(plan.mute)]
    if plan.trim is not None:
        spans.append(("trim", 0, plan.trim))
    for kind, n, span in spans:
        if span.start >= duration:
            problems.append(f"{kind}[{n}] starts at {span.start} s, after the clip's end")
    return problems


def _seconds(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def _between(span: Span) -> str:
    return f"enable='between(t,{_seconds(span.start)},{_seconds(span.end)})'"


def filter_graph(plan: RedactionPlan, has_audio: bool) -> str:
    """The filtergraph: each box blurred (cropped, box-blurred, laid back) while its range
    lasts, the sound silenced in each mute range, then the trim; times are the original's."""
    parts = []
    label = "0:v"
    for n, box in enumerate(plan.blur):
        # The chroma planes are half the size: the radius must fit within them.
        radius = max(1, min(20, min(box.w, box.h) // 4))
        parts.append(
            f"[{label}]split[base{n}][crop{n}];"
            f"[crop{n}]crop={box.w}:{box.h}:{box.x}:{box.y},boxblur={radius}:4[blur{n}];"
            f"[base{n}][blur{n}]overlay={box.x}:{box.y}:{_between(box.span)}[v{n}]"
        )
        label = f"v{n}"
    trim = plan.trim
    if trim is not None:
        cut = f"trim=start={_seconds(trim.start)}:end={_seconds(trim.end)},setpts=PTS-STARTPTS"
        parts.append(f"[{label}]{cut}[vout]")
    else:
        parts.append(f"[{label}]null[vout]")
    if has_audio:
        # Per sample (aeval), not per frame as a filter's `enable` is: a mute starts and ends
        # where the plan says, not at the next frame of 1,024 samples.
        # Half a sample later: a sample whose time computes as 2.9999... still counts as 3.
        silent = "+".join(
            f"gte(t+0.5/s,{_seconds(m.start)})*lt(t+0.5/s,{_seconds(m.end)})" for m in plan.mute
        )
        chain = [f"aeval='val(ch)*not({silent})':c=same"] if plan.mute else []
        if trim is not None:
            chain.append(
                f"atrim=start={_seconds(trim.start)}:end={_seconds(trim.end)},asetpts=PTS-STARTPTS"
            )
        parts.append(f"[0:a]{','.join(chain) or 'anull'}[aout]")
    return ";".join(parts)


def ffmpeg_arguments(
    plan: RedactionPlan, source: str, target: str, *, has_audio: bool
) -> list[str]:
    """The ffmpeg command line making the derivative of `source` at `target` (an MP4 file
    that must not exist: ffmpeg is told never to overwrite)."""
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-n", "-i", source]
    args += ["-filter_complex", filter_graph(plan, has_audio), "-map", "[vout]"]
    if has_audio:
        args += ["-map", "[aout]", *AUDIO_CODEC]
    args += [*VIDEO_CODEC, "-map_metadata", "-1", "-fflags", "+bitexact", "-f", "mp4", target]
    return args
