"""PyAVProber and its worker process, on clips made by the real ffmpeg."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evidence_agent.adapters.pyav import PyAVProber
from evidence_agent.domain.media import MediaInfo, parse_probe
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
    generate_clip(folder / "plain.mp4", seconds=1, creation_time=None, size="160x120")
    generate_audio(folder / "note.M4A", seconds=1, creation_time=CREATED)
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240", "-frames:v", "1", str(folder / "P.JPG"))
    return folder


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True, capture_output=True
    )


@pytest.fixture
def prober() -> Iterator[PyAVProber]:
    prober = PyAVProber(timeout=30)
    yield prober
    prober.close()


@pytest.fixture
def good(media: Path) -> Path:
    return media / "good.MP4"


def test_generated_clip(prober: PyAVProber, good: Path) -> None:
    info = prober.probe(good)
    assert info.duration_seconds == pytest.approx(2.0, abs=0.1)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == (320, 240)
    assert info.creation_time == CREATED
    assert info.format_name is not None and "mp4" in info.format_name


def test_audio_note_and_clip_without_creation_time(prober: PyAVProber, media: Path) -> None:
    info = prober.probe(media / "note.M4A")
    assert (info.video_codec, info.audio_codec, info.creation_time) == (None, "aac", CREATED)
    assert prober.probe(media / "plain.mp4").creation_time is None


def test_photo(prober: PyAVProber, media: Path, tmp_path: Path) -> None:
    info = prober.probe(media / "P.JPG")
    assert (info.format_name, info.video_codec, info.width, info.height) == (
        "image2",
        "mjpeg",
        320,
        240,
    )
    # the spool names a copy by its hash alone: the content says what it is
    spooled = tmp_path / "0123abcd"
    shutil.copyfile(media / "P.JPG", spooled)
    info = prober.probe(spooled)
    assert (info.format_name, info.video_codec, info.width, info.height) == (
        "jpeg_pipe",
        "mjpeg",
        320,
        240,
    )


@pytest.mark.parametrize("name", ["good.MP4", "plain.mp4", "note.M4A", "P.JPG"])
def test_same_facts_as_ffprobe(prober: PyAVProber, media: Path, name: str) -> None:
    path = media / name
    argv = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json"]
    shown = subprocess.run(
        [*argv, "file:" + str(path)],
        check=True,
        capture_output=True,
    ).stdout
    expected = parse_probe(json.loads(shown))
    assert prober.probe(path) == expected


def test_truncated_clip_is_unreadable(prober: PyAVProber, good: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.MP4"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="moov atom not found") as info:
        prober.probe(cut)
    assert str(cut) in info.value.message


def test_garbage_header_is_unreadable(prober: PyAVProber, good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "garbage.MP4"
    data = good.read_bytes()
    bad.write_bytes(os.urandom(4096) + data[4096:])
    with pytest.raises(InputError, match=r"garbage\.MP4"):
        prober.probe(bad)


def test_random_bytes_are_unreadable(prober: PyAVProber, tmp_path: Path) -> None:
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
def test_text_file_is_unreadable(prober: PyAVProber, tmp_path: Path, text: str) -> None:
    # FFmpeg reads longer .txt files as "ansi" text-art video; that is not media either
    log = tmp_path / "LOG.TXT"
    log.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=r"LOG\.TXT"):
        prober.probe(log)


def test_zero_byte_file_is_unreadable(prober: PyAVProber, tmp_path: Path) -> None:
    empty = tmp_path / "empty.MP4"
    empty.touch()
    with pytest.raises(InputError, match="empty"):
        prober.probe(empty)


def test_missing_file_directory_and_fifo(prober: PyAVProber, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        prober.probe(tmp_path / "missing.MP4")
    with pytest.raises(InputError, match="not a regular file"):
        prober.probe(tmp_path)
    fifo = tmp_path / "pipe.MP4"
    os.mkfifo(fifo)
    # refused before the worker would block on opening it
    with pytest.raises(InputError, match="not a regular file"):
        prober.probe(fifo)
    assert prober.worker_pid is None  # nothing was asked of a worker


def test_names_that_look_like_options_or_protocols(
    prober: PyAVProber, good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = tmp_path / "concat:a|b"
    odd.mkdir()
    target = odd / "-i x.MP4"
    shutil.copyfile(good, target)
    not_utf8 = odd / os.fsdecode(b"clip\xff.MP4")
    shutil.copyfile(good, not_utf8)
    monkeypatch.chdir(odd)
    assert prober.probe(Path("-i x.MP4")).video_codec == "h264"
    assert prober.probe(not_utf8).video_codec == "h264"


@pytest.mark.parametrize("name", ["clip.MP4", "clip.m3u8", "0123abcd"])
def test_playlist_disguised_as_a_clip_opens_nothing_else(
    prober: PyAVProber, tmp_path: Path, name: str
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        playlist = tmp_path / name
        playlist.write_text(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n"
            f"http://127.0.0.1:{port}/seg.ts\n#EXT-X-ENDLIST\n",
            encoding="utf-8",
        )
        with pytest.raises(InputError) as info:
            prober.probe(playlist)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody came for the segment
    if name.endswith(".m3u8"):
        assert "not on whitelist" in info.value.message


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        PyAVProber(timeout=0)


# --- the worker process ------------------------------------------------------------------------


def _wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_one_worker_serves_every_probe(prober: PyAVProber, good: Path, tmp_path: Path) -> None:
    prober.probe(good)
    pid = prober.worker_pid
    assert pid is not None
    bad = tmp_path / "bad.MP4"
    bad.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(InputError):
        prober.probe(bad)
    assert prober.probe(good).video_codec == "h264"
    assert prober.worker_pid == pid


def test_threads_take_turns(prober: PyAVProber, good: Path, media: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.MP4"
    bad.write_bytes(good.read_bytes()[:1000])
    expected = {good: "h264", media / "note.M4A": None, bad: "unreadable"}
    seen: list[tuple[Path, str | None]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(10):
            for path in expected:
                try:
                    codec = prober.probe(path).video_codec
                except InputError:
                    codec = "unreadable"
                with lock:
                    seen.append((path, codec))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(seen) == 4 * 10 * len(expected)
    assert all(codec == expected[path] for path, codec in seen)


def test_worker_killed_mid_probe_is_replaced(prober: PyAVProber, good: Path) -> None:
    prober.probe(good)
    pid = prober.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # holds the next request unanswered
    outcome: list[BaseException | MediaInfo] = []

    def probe() -> None:
        try:
            outcome.append(prober.probe(good))
        except EvidenceError as e:
            outcome.append(e)

    asking = threading.Thread(target=probe)
    asking.start()
    time.sleep(0.5)  # the request is in the worker's pipe by now
    os.kill(pid, signal.SIGKILL)
    asking.join(30)
    [error] = outcome
    assert isinstance(error, InputError)
    assert error.message == f"{good}: not readable media: FFmpeg was killed by SIGKILL reading it"
    assert _gone(pid)
    assert prober.probe(good).video_codec == "h264"
    assert prober.worker_pid not in (None, pid)


def test_hung_worker_times_out_and_is_replaced(good: Path) -> None:
    prober = PyAVProber(timeout=0.5)
    try:
        prober.probe(good)
        pid = prober.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        began = time.monotonic()
        with pytest.raises(InputError, match=r"did not finish within 0\.5 s") as info:
            prober.probe(good)
        assert time.monotonic() - began < 3
        assert info.value.remedy is not None and "device" in info.value.remedy
        assert _gone(pid)  # killed and reaped
        assert prober.probe(good).video_codec == "h264"
        assert prober.worker_pid not in (None, pid)
    finally:
        prober.close()


def test_worker_dead_while_idle_is_replaced_without_blame(prober: PyAVProber, good: Path) -> None:
    prober.probe(good)
    pid = prober.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: prober.worker_pid is None)
    assert prober.probe(good).video_codec == "h264"
    assert prober.worker_pid not in (None, pid)


def test_close_stops_the_worker(good: Path) -> None:
    prober = PyAVProber(timeout=30)
    prober.probe(good)
    pid = prober.worker_pid
    assert pid is not None
    prober.close()
    assert _gone(pid) and prober.worker_pid is None
    prober.close()  # twice is fine
    assert prober.probe(good).video_codec == "h264"  # and a later probe starts another
    prober.close()


def test_worker_ends_with_the_agent(good: Path) -> None:
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from evidence_agent.adapters.pyav import PyAVProber\n"
        "prober = PyAVProber()\n"
        "prober.probe(Path(sys.argv[1]))\n"
        "print(prober.worker_pid, flush=True)\n"
        "os._exit(0)\n"  # no close: as if the agent were killed
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(good)], capture_output=True, text=True, check=True
    )
    pid = int(done.stdout)
    _wait_for(lambda: _gone(pid) or _zombie(pid))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


# Stand-ins for the worker, speaking its protocol: what the agent does when a worker misbehaves.
_STAND_IN = """
import json, os, signal, sys, time
print(json.dumps({"ready": {}}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    path = bytes.fromhex(request["path"])
    if path.endswith(b"crash.MP4"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if path.endswith(b"exit.MP4"):
        sys.exit(3)
    if path.endswith(b"hang.MP4"):
        time.sleep(60)
    if path.endswith(b"chatty.MP4"):
        print("hello", flush=True)
        continue
    probe = {"format": {"format_name": "mov", "duration": 1.0},
             "streams": [{"codec_type": "video", "codec_name": "h264"}]}
    print(json.dumps({"id": request["id"], "probe": probe}), flush=True)
"""


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[PyAVProber]:
    prober = PyAVProber(timeout=1, worker=[sys.executable, "-c", _STAND_IN])
    yield prober
    prober.close()


@pytest.mark.parametrize(
    ("name", "ending"),
    [
        ("crash.MP4", "FFmpeg was killed by SIGSEGV reading it"),
        ("exit.MP4", "FFmpeg exited with status 3 reading it"),
        ("chatty.MP4", "the media probe process answered garbage"),
    ],
)
def test_a_file_that_breaks_the_worker_is_unreadable(
    stand_in: PyAVProber, tmp_path: Path, name: str, ending: str
) -> None:
    fine = tmp_path / "fine.MP4"
    fine.write_bytes(b"x")
    stand_in.probe(fine)
    first = stand_in.worker_pid
    hostile = tmp_path / name
    hostile.write_bytes(b"x")
    with pytest.raises(InputError) as info:
        stand_in.probe(hostile)
    assert info.value.message == f"{hostile}: not readable media: {ending}"
    assert stand_in.probe(fine).video_codec == "h264"
    assert stand_in.worker_pid not in (None, first)


def test_a_file_that_hangs_the_worker_times_out(stand_in: PyAVProber, tmp_path: Path) -> None:
    hang = tmp_path / "hang.MP4"
    hang.write_bytes(b"x")
    with pytest.raises(InputError, match=r"did not finish within 1 s"):
        stand_in.probe(hang)
    fine = tmp_path / "fine.MP4"
    fine.write_bytes(b"x")
    assert stand_in.probe(fine).video_codec == "h264"


@pytest.mark.parametrize(
    ("worker", "message"),
    [
        (["/nonexistent/python"], "cannot start the media probe process"),
        ([sys.executable, "-c", "pass"], "the media probe process exited with status 0"),
        (
            [sys.executable, "-c", 'print(\'{"error": "PyAV cannot be loaded: no av"}\')'],
            "the media probe process cannot start: PyAV cannot be loaded: no av",
        ),
        ([sys.executable, "-c", "print('hello')"], "cannot start: it answered garbage"),
    ],
)
def test_a_worker_that_cannot_start_is_the_station_fault(
    good: Path, worker: list[str], message: str
) -> None:
    prober = PyAVProber(worker=worker)
    with pytest.raises(EvidenceError, match=message) as info:
        prober.probe(good)
    # not the file's fault: not an InputError, and the remedy says what to install
    assert not isinstance(info.value, InputError)
    assert info.value.remedy is not None and "pip install av" in info.value.remedy
