"""The Prober port on ffprobe (through ffmpeg-python): media facts of one file on a recorder volume."""

from __future__ import annotations

import json
import re
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ffmpeg

from evidence_agent.domain.media import MediaInfo, parse_probe
from evidence_agent.errors import EvidenceError, InputError

DEFAULT_TIMEOUT_SECONDS = 60.0

# Bounds on what ffprobe reads: the demuxer stops probing after this many bytes / microseconds,
# so a huge or hostile file cannot make it scan gigabytes.
_PROBE_SIZE_BYTES = 50 * 1024 * 1024
_ANALYZE_MICROSECONDS = 10_000_000

# Demuxers of single still images: a photo has no meaningful duration and is still readable.
_STILL_IMAGE_FORMATS = ("image2",)

# ffprobe reads any text file as "video" in text-mode art codecs (tty demuxer): not media.
_TEXT_ART_CODECS = ("ansi", "bintext", "xbin", "idf")

# "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d0c0ffee00] moov atom not found" -> "moov atom not found"
_CONTEXT_PREFIX = re.compile(r"^\[[^\]]*@ 0x[0-9a-fA-F]+\]\s*")

_INSTALL_REMEDY = "apt-get install ffmpeg"


class FfprobeProber:
    """Reads duration, creation time, codecs and resolution with ffprobe.

    ffmpeg.probe has no timeout of its own, so each call runs in a daemon thread that the caller
    waits on for at most `timeout` seconds; past that the file is reported unreadable (the ffprobe
    process is left to finish on its own, which only happens when the device itself hangs).
    ffprobe is also told to read at most ~50 MB / 10 s of media while probing, to open the path
    only as a local file (a name like "concat:a|b" or a playlist inside a clip cannot make it open
    anything else), and special files (FIFOs, devices) are refused before ffprobe sees them.
    """

    def __init__(self, cmd: str = "ffprobe", timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._cmd = cmd
        self._timeout = timeout

    def probe(self, path: Path) -> MediaInfo:
        """Media facts of `path`; InputError when it is not readable media."""
        _check_regular_file(path)
        raw = self._run(path)
        info = parse_probe(raw)
        _check_readable(path, info)
        return info

    def _run(self, path: Path) -> Mapping[str, Any]:
        result: dict[str, Any] = {}
        # "file:" + an absolute path: never read as an option ("-x.mp4") or another protocol.
        target = "file:" + str(path.absolute())

        def call() -> None:
            try:
                result["value"] = ffmpeg.probe(
                    target,
                    cmd=self._cmd,
                    hide_banner=None,
                    loglevel="error",
                    protocol_whitelist="file",
                    probesize=_PROBE_SIZE_BYTES,
                    analyzeduration=_ANALYZE_MICROSECONDS,
                )
            # not swallowed: handed to the calling thread, which wraps it (with its traceback)
            except Exception as e:  # noqa: BLE001
                result["error"] = e

        worker = threading.Thread(target=call, name=f"ffprobe {path.name}", daemon=True)
        worker.start()
        worker.join(self._timeout)
        if worker.is_alive():
            raise InputError(
                f"{path}: ffprobe did not finish within {self._timeout:g} s",
                remedy="the device may be failing: check its USB connection and dock it again",
            )
        error = result.get("error")
        if error is not None:
            raise self._translate(path, error) from error
        value = result.get("value")
        if not isinstance(value, dict):
            raise InputError(f"{path}: ffprobe gave no JSON object")
        return value

    def _translate(self, path: Path, error: Exception) -> EvidenceError:
        if isinstance(error, ffmpeg.Error):
            return InputError(f"{path}: not readable media: {_first_line(error.stderr, path)}")
        if isinstance(error, FileNotFoundError | PermissionError | NotADirectoryError):
            # the input was stat'ed just before, so a missing file here is the ffprobe binary
            what = (
                "not found"
                if isinstance(error, FileNotFoundError)
                else f"cannot be run ({error.strerror})"
            )
            return EvidenceError(f"ffprobe ({self._cmd}) {what}", remedy=_INSTALL_REMEDY)
        if isinstance(error, OSError):
            return EvidenceError(f"cannot run ffprobe ({self._cmd}) on {path}: {error}")
        if isinstance(error, UnicodeDecodeError | json.JSONDecodeError):
            return InputError(f"{path}: ffprobe output is not UTF-8 JSON: {error}")
        return EvidenceError(f"ffprobe failed on {path}: {type(error).__name__}: {error}")


def _check_regular_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise InputError(f"{path}: no such file") from e
    except OSError as e:
        raise InputError(f"{path}: cannot be read: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise InputError(f"{path}: empty file, not readable media")


def _check_readable(path: Path, info: MediaInfo) -> None:
    if info.video_codec is None and info.audio_codec is None:
        raise InputError(f"{path}: no audio or video stream that ffprobe can read")
    if info.video_codec in _TEXT_ART_CODECS and info.audio_codec is None:
        raise InputError(f"{path}: text, not media (ffprobe sees {info.video_codec} text art)")
    still = info.format_name in _STILL_IMAGE_FORMATS or (
        info.format_name is not None and info.format_name.endswith("_pipe")
    )
    if not still and not info.duration_seconds:
        raise InputError(f"{path}: no duration; the recording is incomplete or damaged")


def _first_line(stderr: object, path: Path) -> str:
    """The first non-empty line of ffprobe's stderr, without its context tag or the path."""
    if isinstance(stderr, bytes):
        text = stderr.decode("utf-8", errors="replace")
    elif isinstance(stderr, str):
        text = stderr
    else:
        text = ""
    prefixes = ("file:" + str(path.absolute()) + ": ", str(path.absolute()) + ": ")
    for raw_line in text.splitlines():
        line = _CONTEXT_PREFIX.sub("", raw_line.strip())
        for prefix in prefixes:
            line = line.removeprefix(prefix)
        if line:
            return line
    return "ffprobe failed without a message"
