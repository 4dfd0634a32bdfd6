"""Media facts in ffprobe's JSON shape: duration, creation time, codecs, resolution; whether readable."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Demuxers of single still images: a photo has no meaningful duration and is still readable.
_STILL_IMAGE_FORMATS = ("image2",)

# FFmpeg reads any text file as "video" in text-mode art codecs (tty demuxer): not media.
_TEXT_ART_CODECS = ("ansi", "bintext", "xbin", "idf")


@dataclass(frozen=True)
class MediaInfo:
    format_name: str | None = None
    duration_seconds: float | None = None
    creation_time: datetime | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None


def media_kind(
    name: str, video: Sequence[str], photo: Sequence[str], audio: Sequence[str]
) -> str | None:
    """'video', 'photo' or 'audio' by the configured patterns (case-insensitive), else None."""
    lowered = name.lower()
    for kind, patterns in (("video", video), ("photo", photo), ("audio", audio)):
        if any(fnmatch.fnmatchcase(lowered, p.lower()) for p in patterns):
            return kind
    return None


def parse_probe(probe: Mapping[str, Any]) -> MediaInfo:
    """Read the fields we keep from ffprobe's -show_format -show_streams JSON."""
    fmt = probe.get("format") or {}
    streams = probe.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    tags = fmt.get("tags") or {}
    created = _parse_creation_time(tags.get("creation_time"))
    if created is None and video is not None:
        created = _parse_creation_time((video.get("tags") or {}).get("creation_time"))
    duration = _float(fmt.get("duration"))
    if duration is None and video is not None:
        duration = _float(video.get("duration"))
    return MediaInfo(
        format_name=fmt.get("format_name"),
        duration_seconds=duration,
        creation_time=created,
        video_codec=video.get("codec_name") if video else None,
        audio_codec=audio.get("codec_name") if audio else None,
        width=_int(video.get("width")) if video else None,
        height=_int(video.get("height")) if video else None,
    )


def unreadable_reason(info: MediaInfo) -> str | None:
    """Why a file FFmpeg opened is still not readable media (None when it is): no audio or
    video stream, text taken for text art, or a recording without a duration."""
    if info.video_codec is None and info.audio_codec is None:
        return "no audio or video stream that FFmpeg can read"
    if info.video_codec in _TEXT_ART_CODECS and info.audio_codec is None:
        return f"text, not media (FFmpeg sees {info.video_codec} text art)"
    still = info.format_name in _STILL_IMAGE_FORMATS or (
        info.format_name is not None and info.format_name.endswith("_pipe")
    )
    if not still and not info.duration_seconds:
        return "no duration; the recording is incomplete or damaged"
    return None


def _float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if 0 <= result < float("inf") else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _parse_creation_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # a container time with no zone is UTC by the MP4/QuickTime convention
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
