"""parse_probe, unreadable_reason and media_kind on plain ffprobe JSON values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from evidence_agent.domain.media import MediaInfo, media_kind, parse_probe, unreadable_reason

VIDEO = ("*.mp4", "*.mov")
PHOTO = ("*.jpg",)
AUDIO = ("*.m4a", "*.wav")


def _clip(**format_overrides: Any) -> dict[str, Any]:
    fmt: dict[str, Any] = {
        "format_name": "mov,mp4,m4a,3gp,3g2,mj2",
        "duration": "4.000000",
        "tags": {"creation_time": "2026-11-21T10:00:05.000000Z"},
    }
    fmt.update(format_overrides)
    return {
        "streams": [
            {
                "codec_type": "video",
                "codec_name": "h264",
                "width": 1280,
                "height": 720,
                "duration": "4.000000",
                "tags": {"creation_time": "2026-11-21T10:00:05.000000Z"},
            },
            {"codec_type": "audio", "codec_name": "aac", "duration": "3.990000"},
        ],
        "format": fmt,
    }


def test_typical_recorder_clip() -> None:
    assert parse_probe(_clip()) == MediaInfo(
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        duration_seconds=4.0,
        creation_time=datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC),
        video_codec="h264",
        audio_codec="aac",
        width=1280,
        height=720,
    )


def test_empty_document() -> None:
    assert parse_probe({}) == MediaInfo()
    assert parse_probe({"format": None, "streams": None}) == MediaInfo()


def test_duration_and_time_fall_back_to_the_video_stream() -> None:
    info = parse_probe(_clip(duration="N/A", tags={}))
    assert info.duration_seconds == 4.0
    assert info.creation_time == datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["N/A", "", "-1.5", "nan", None, [], "4s"])
def test_unusable_durations_are_none(bad: Any) -> None:
    probe = {"format": {"duration": bad}, "streams": []}
    assert parse_probe(probe).duration_seconds is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T10:00:05.000000Z", datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC)),
        ("2026-11-21T18:00:05+08:00", datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC)),
        # no zone in the container: UTC by the MP4 convention
        ("2026-11-21 10:00:05", datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (1700000000, None),
    ],
)
def test_creation_time_forms(text: Any, expected: datetime | None) -> None:
    info = parse_probe({"format": {"tags": {"creation_time": text}}, "streams": []})
    assert info.creation_time == expected
    if info.creation_time is not None:
        assert info.creation_time.tzinfo is UTC


def test_audio_only_file() -> None:
    probe = {
        "format": {"format_name": "wav", "duration": "2.5"},
        "streams": [{"codec_type": "audio", "codec_name": "pcm_s16le"}],
    }
    info = parse_probe(probe)
    assert (info.video_codec, info.audio_codec, info.width, info.height) == (
        None,
        "pcm_s16le",
        None,
        None,
    )
    assert info.duration_seconds == 2.5


def test_photo_and_non_numeric_sizes() -> None:
    probe = {
        "format": {"format_name": "image2", "duration": "0.040000"},
        "streams": [{"codec_type": "video", "codec_name": "mjpeg", "width": "x", "height": None}],
    }
    info = parse_probe(probe)
    assert info.video_codec == "mjpeg"
    assert info.width is None and info.height is None


def test_first_stream_of_each_type_wins_and_others_are_ignored() -> None:
    probe = {
        "format": {},
        "streams": [
            {"codec_type": "data", "codec_name": "bin_data"},
            {"codec_type": "subtitle", "codec_name": "mov_text"},
            {"codec_type": "video", "codec_name": "hevc", "width": 1920, "height": 1080},
            {"codec_type": "video", "codec_name": "mjpeg", "width": 160, "height": 90},
        ],
    }
    info = parse_probe(probe)
    assert (info.video_codec, info.width, info.height, info.audio_codec) == (
        "hevc",
        1920,
        1080,
        None,
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("A.MP4", "video"),
        ("clip.Mov", "video"),
        ("P.JPG", "photo"),
        ("n.M4A", "audio"),
        ("LOG.TXT", None),
        ("mp4", None),
    ],
)
def test_media_kind_is_case_insensitive(name: str, kind: str | None) -> None:
    assert media_kind(name, VIDEO, PHOTO, AUDIO) == kind


def test_media_kind_first_family_wins_on_overlap() -> None:
    assert media_kind("x.mp4", ("*.mp4",), ("*",), ("*.mp4",)) == "video"


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (MediaInfo("mov,mp4,m4a,3gp,3g2,mj2", 4.0, None, "h264", "aac"), None),
        (MediaInfo("mov,mp4,m4a,3gp,3g2,mj2", 1.0, None, None, "aac"), None),
        (MediaInfo("jpeg_pipe", None, None, "mjpeg"), None),  # a photo has no duration
        (MediaInfo("image2", None, None, "mjpeg"), None),
        (MediaInfo("mov,mp4,m4a,3gp,3g2,mj2", 4.0), "no audio or video stream"),
        (MediaInfo("tty", 0.32, None, "ansi"), "text, not media (FFmpeg sees ansi text art)"),
        (MediaInfo("mov,mp4,m4a,3gp,3g2,mj2", None, None, "h264"), "no duration"),
        (MediaInfo("mov,mp4,m4a,3gp,3g2,mj2", 0.0, None, "h264"), "no duration"),
    ],
)
def test_unreadable_reason(info: MediaInfo, reason: str | None) -> None:
    found = unreadable_reason(info)
    if reason is None:
        assert found is None
    else:
        assert found is not None and found.startswith(reason)


def test_text_art_with_sound_is_media() -> None:
    # an audio track makes it a recording, whatever the video stream is taken for
    assert unreadable_reason(MediaInfo("mov", 2.0, None, "ansi", "aac")) is None
