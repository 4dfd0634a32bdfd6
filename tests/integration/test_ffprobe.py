"""FfprobeProber against the real ffprobe, on clips made by the real ffmpeg."""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evidence_agent.adapters.ffprobe import FfprobeProber
from evidence_agent.errors import EvidenceError, InputError
from evidence_agent.services.demo_recorder import generate_audio, generate_clip
from tests.support import service_missing

CREATED = datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        service_missing("ffmpeg/ffprobe not installed (apt-get install ffmpeg)")
    folder = tmp_path_factory.mktemp("media")
    generate_clip(folder / "good.MP4", seconds=2, creation_time=CREATED, size="320x240")
    return folder


@pytest.fixture
def prober() -> FfprobeProber:
    return FfprobeProber(timeout=30)


@pytest.fixture
def good(media: Path) -> Path:
    return media / "good.MP4"


def test_generated_clip(prober: FfprobeProber, good: Path) -> None:
    info = prober.probe(good)
    assert info.duration_seconds == pytest.approx(2.0, abs=0.1)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == (320, 240)
    assert info.creation_time == CREATED
    assert info.format_name is not None and "mp4" in info.format_name


def test_audio_note_and_clip_without_creation_time(
    prober: FfprobeProber, media: Path, tmp_path: Path
) -> None:
    audio = tmp_path / "note.M4A"
    generate_audio(audio, seconds=1, creation_time=CREATED)
    info = prober.probe(audio)
    assert (info.video_codec, info.audio_codec, info.creation_time) == (None, "aac", CREATED)
    plain = tmp_path / "plain.mp4"
    generate_clip(plain, seconds=1, creation_time=None, size="160x120")
    assert prober.probe(plain).creation_time is None


def test_truncated_clip_is_unreadable(prober: FfprobeProber, good: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.MP4"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="moov atom not found") as info:
        prober.probe(cut)
    assert str(cut) in info.value.message


def test_garbage_header_is_unreadable(prober: FfprobeProber, good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "garbage.MP4"
    data = good.read_bytes()
    bad.write_bytes(os.urandom(4096) + data[4096:])
    with pytest.raises(InputError, match=r"garbage\.MP4"):
        prober.probe(bad)


def test_random_bytes_are_unreadable(prober: FfprobeProber, tmp_path: Path) -> None:
    noise = tmp_path / "noise.MP4"
    noise.write_bytes(b"\x00\x01\x02\x03" * 4096)
    with pytest.raises(InputError):
        prober.probe(noise)


@pytest.mark.parametrize(
    "text",
    [
        "recorder log\n",
        "".join(f"2026-11-21T18:00:{i:02d}+08:00 REC A123456_{i}.MP4\n" for i in range(40)),
    ],
)
def test_text_file_is_unreadable(prober: FfprobeProber, tmp_path: Path, text: str) -> None:
    # ffprobe reads longer .txt files as "ansi" text-art video; that is not media either
    log = tmp_path / "LOG.TXT"
    log.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"LOG\.TXT"):
        prober.probe(log)


def test_zero_byte_file_is_unreadable(prober: FfprobeProber, tmp_path: Path) -> None:
    empty = tmp_path / "empty.MP4"
    empty.touch()
    with pytest.raises(InputError, match="empty"):
        prober.probe(empty)


def test_missing_file_directory_and_fifo(prober: FfprobeProber, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        prober.probe(tmp_path / "missing.MP4")
    with pytest.raises(InputError, match="not a regular file"):
        prober.probe(tmp_path)
    fifo = tmp_path / "pipe.MP4"
    os.mkfifo(fifo)
    # refused before ffprobe would block on opening it
    with pytest.raises(InputError, match="not a regular file"):
        prober.probe(fifo)


def test_names_that_look_like_options_or_protocols(
    prober: FfprobeProber, good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = tmp_path / "concat:a|b"
    odd.mkdir()
    target = odd / "-i x.MP4"
    shutil.copyfile(good, target)
    monkeypatch.chdir(odd)
    assert prober.probe(Path("-i x.MP4")).video_codec == "h264"


def test_playlist_disguised_as_a_clip_opens_nothing_else(
    prober: FfprobeProber, tmp_path: Path
) -> None:
    playlist = tmp_path / "clip.MP4"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nhttp://127.0.0.1:9/seg.ts\n#EXT-X-ENDLIST\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="not on whitelist"):
        prober.probe(playlist)


def test_missing_ffprobe_binary(good: Path, tmp_path: Path) -> None:
    with pytest.raises(EvidenceError) as info:
        FfprobeProber(cmd=str(tmp_path / "no-ffprobe")).probe(good)
    assert not isinstance(info.value, InputError)
    assert info.value.remedy == "apt-get install ffmpeg"
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_ffprobe_not_executable(good: Path, tmp_path: Path) -> None:
    fake = tmp_path / "ffprobe"
    fake.write_text("#!/bin/sh\n", encoding="utf-8")
    with pytest.raises(EvidenceError, match="cannot be run") as info:
        FfprobeProber(cmd=str(fake)).probe(good)
    assert info.value.remedy == "apt-get install ffmpeg"


@pytest.fixture
def slow_ffprobe(tmp_path: Path) -> Iterator[Path]:
    fake = tmp_path / "slow-ffprobe"
    fake.write_text("#!/bin/sh\nsleep 2\n", encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    yield fake
    # the abandoned worker ends with the fake ffprobe; do not leak it into other tests
    for thread in threading.enumerate():
        if thread.name.startswith("ffprobe "):
            thread.join(10)


def test_timeout(good: Path, slow_ffprobe: Path) -> None:
    began = time.monotonic()
    with pytest.raises(InputError, match=r"did not finish within 0\.3 s"):
        FfprobeProber(cmd=str(slow_ffprobe), timeout=0.3).probe(good)
    assert time.monotonic() - began < 1.5


def test_ffprobe_output_that_is_not_json(good: Path, tmp_path: Path) -> None:
    fake = tmp_path / "chatty-ffprobe"
    fake.write_text("#!/bin/sh\necho hello\n", encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(InputError, match="not UTF-8 JSON"):
        FfprobeProber(cmd=str(fake)).probe(good)


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        FfprobeProber(timeout=0)
