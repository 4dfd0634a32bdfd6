"""The Prober port on PyAV (FFmpeg's libraries), run in a worker process of its own."""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from evidence_agent.domain.media import MediaInfo, parse_probe, unreadable_reason
from evidence_agent.errors import EvidenceError, InputError

DEFAULT_TIMEOUT_SECONDS = 60.0
# Starting the worker (a fresh interpreter importing PyAV) is not the file's doing: it has a
# limit of its own, not charged to the file being probed.
_START_TIMEOUT_SECONDS = 30.0
# Reaping a killed worker: one stuck in the kernel (a failing disk) is left to the kernel.
_REAP_SECONDS = 5.0

# Bounds on what the demuxer reads: it stops probing after this many bytes / microseconds, so
# a huge or hostile file cannot make it scan gigabytes.
_PROBE_SIZE_BYTES = 50 * 1024 * 1024
_ANALYZE_MICROSECONDS = 10_000_000
_CONTAINER_OPTIONS = {
    # only the local file itself: a name like "concat:a|b", or a playlist inside a clip that
    # names an http:// segment, cannot make FFmpeg open anything else
    "protocol_whitelist": "file",
    "probesize": str(_PROBE_SIZE_BYTES),
    "analyzeduration": str(_ANALYZE_MICROSECONDS),
}
# An answer larger than this is not facts of one file: the worker is treated as broken.
_MAX_ANSWER_BYTES = 4 << 20

_WORKER_MODULE = "evidence_agent.adapters.pyav"
# Where this process found the package: the worker imports it from there, however the agent was
# started (installed, or from a checkout on PYTHONPATH).
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_INSTALL_REMEDY = "reinstall evidence-agent with its dependencies (pip install av)"


class PyAVProber:
    """Reads duration, creation time, codecs and resolution with PyAV, in a worker process.

    PyAV opens a file in a few milliseconds where starting ffprobe costs tens; a demuxer that a
    hostile recorder file crashes or hangs must still not take the station with it. So the
    files are opened in one persistent worker process (`python -m evidence_agent.adapters.pyav`,
    a JSON request and a JSON answer per line), started on the first probe. A worker that dies
    while reading a file, or takes more than `timeout` seconds over it, is killed; that file is
    reported unreadable (InputError) and the next probe starts a new worker. Probes of several
    threads take turns on the one worker.

    The limits are ffprobe's as this station used it: the path is opened only as a local file
    ("file:" and the absolute path, FFmpeg's protocol whitelist "file"), probing reads at most
    ~50 MB / 10 s of media, and special files (FIFOs, devices) and empty files are refused
    before the worker sees them. Facts come back in ffprobe's JSON shape and go through the
    same domain rules (domain/media.py).
    """

    def __init__(
        self, timeout: float = DEFAULT_TIMEOUT_SECONDS, *, worker: Sequence[str] | None = None
    ) -> None:
        """`worker`: the worker's command line (tests put stand-ins there)."""
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._timeout = timeout
        # -P: the worker's sys.path does not start with its working directory
        self._argv = list(worker or (sys.executable, "-P", "-m", _WORKER_MODULE))
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._requests = 0

    @property
    def worker_pid(self) -> int | None:
        """The running worker's process id; None before the first probe or after a failure."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive() else None

    def probe(self, path: Path) -> MediaInfo:
        """Media facts of `path`; InputError when it is not readable media."""
        _check_regular_file(path)
        target = os.fsencode(path.absolute())
        with self._lock:
            raw = self._ask(path, target)
        info = parse_probe(raw)
        reason = unreadable_reason(info)
        if reason is not None:
            raise InputError(f"{path}: {reason}")
        return info

    def close(self) -> None:
        """Stop the worker (a later probe starts another)."""
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    def _ask(self, path: Path, target: bytes) -> Mapping[str, Any]:
        self._requests += 1
        request = json.dumps({"id": self._requests, "path": target.hex()}).encode() + b"\n"
        worker = self._send(request)
        try:
            line = worker.read_line(time.monotonic() + self._timeout)
        except _Silent:
            self._discard()
            raise InputError(
                f"{path}: FFmpeg did not finish within {self._timeout:g} s",
                remedy="the device may be failing: check its USB connection and dock it again",
            ) from None
        except _Gone:
            how = self._discard()
            raise InputError(f"{path}: not readable media: FFmpeg {how} reading it") from None
        return self._answer(path, line)

    def _send(self, request: bytes) -> _Worker:
        """The request written to a running worker; one that died while idle is replaced
        without blaming the file."""
        for _ in range(2):
            worker = self._running()
            try:
                worker.send(request)
                return worker
            except BrokenPipeError:
                self._discard()
        raise EvidenceError(
            "the media probe process exits as soon as it is asked anything", remedy=_INSTALL_REMEDY
        )

    def _running(self) -> _Worker:
        if self._worker is not None and self._worker.alive():
            return self._worker
        self._discard()
        self._worker = _Worker.start(self._argv)
        return self._worker

    def _discard(self) -> str:
        """Kill and reap the worker; how it ended, for a message."""
        worker, self._worker = self._worker, None
        return worker.stop() if worker is not None else "stopped"

    def _answer(self, path: Path, line: bytes) -> Mapping[str, Any]:
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("id") != self._requests:
            self._discard()
            raise InputError(
                f"{path}: not readable media: the media probe process answered garbage"
            )
        error = answer.get("error")
        if isinstance(error, str):
            raise InputError(f"{path}: not readable media: {error}")
        raw = answer.get("probe")
        if not isinstance(raw, dict):
            self._discard()
            raise InputError(f"{path}: not readable media: the media probe process gave no facts")
        return raw


class _Silent(Exception):
    """The worker did not answer in time."""


class _Gone(Exception):
    """The worker's output ended: it exited."""


class _Worker:
    """One worker process and the unread part of what it wrote."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        self._stdin: IO[bytes] = process.stdin
        self._stdout = process.stdout.fileno()
        self._pending = bytearray()
        self.pid = process.pid

    @classmethod
    def start(cls, argv: Sequence[str]) -> _Worker:
        search = [_PACKAGE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
        try:
            process = subprocess.Popen(
                argv,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(search)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                bufsize=0,
                # not on a recorder volume, which must unmount; and out of the terminal's
                # process group, so a Ctrl-C reaches the agent, which stops the worker itself
                cwd="/",
                start_new_session=True,
            )
        except OSError as e:
            raise EvidenceError(
                f"cannot start the media probe process ({argv[0]}): {e.strerror or e}",
                remedy=_INSTALL_REMEDY,
            ) from e
        worker = cls(process)
        try:
            line = worker.read_line(time.monotonic() + _START_TIMEOUT_SECONDS)
        except _Silent:
            worker.stop()
            raise EvidenceError(
                f"the media probe process did not start within {_START_TIMEOUT_SECONDS:g} s",
                remedy="the station may be overloaded; the files are probed again at their next dock",
            ) from None
        except _Gone:
            how = worker.stop()
            raise EvidenceError(
                f"the media probe process {how} as it started", remedy=_INSTALL_REMEDY
            ) from None
        try:
            hello = json.loads(line)
        except ValueError:
            hello = None
        if not isinstance(hello, dict) or "ready" not in hello:
            worker.stop()
            error = hello.get("error") if isinstance(hello, dict) else None
            raise EvidenceError(
                f"the media probe process cannot start: {error or 'it answered garbage'}",
                remedy=_INSTALL_REMEDY,
            )
        return worker

    def alive(self) -> bool:
        return self._process.poll() is None

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._stdin.write(view) or 0 :]

    def read_line(self, deadline: float) -> bytes:
        """The worker's next line; _Silent when none came by `deadline`, _Gone when it exited."""
        while True:
            end = self._pending.find(b"\n")
            if end >= 0:
                line = bytes(self._pending[:end])
                del self._pending[: end + 1]
                return line
            if len(self._pending) > _MAX_ANSWER_BYTES:
                raise _Gone
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Silent
            ready, _, _ = select.select([self._stdout], [], [], left)
            if not ready:
                raise _Silent
            chunk = os.read(self._stdout, 1 << 16)
            if not chunk:
                raise _Gone
            self._pending += chunk

    def stop(self) -> str:
        """Kill and reap the process; how it ended ("was killed by SIGSEGV", ...)."""
        process = self._process
        if process.poll() is None:
            process.kill()
        try:
            code = process.wait(_REAP_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
        if code is None:
            return "stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with status {code}"


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


# --- the worker process ------------------------------------------------------------------------


def _serve() -> None:
    """The worker: one request per line on stdin, one JSON answer per line on stdout."""
    # The answers go to a copy of stdout; whatever a library might print on descriptor 1 goes
    # to stderr instead of into the answers.
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    try:
        import av
        import av.logging
    except ImportError as e:
        _write(answers, {"error": f"PyAV cannot be loaded: {e}"})
        return
    av.logging.set_level(av.logging.ERROR)
    _exit_with_parent()
    _write(answers, {"ready": {"pyav": av.__version__}})
    for line in sys.stdin.buffer:
        request = json.loads(line)
        target = "file:" + os.fsdecode(bytes.fromhex(request["path"]))
        answer: dict[str, Any] = {"id": request["id"]}
        with av.logging.Capture() as logs:
            try:
                answer["probe"] = _probe_file(target)
            # The worker exists to stand between FFmpeg and the agent: whatever reading a
            # hostile file raises is an answer about that file, never the worker's end.
            except Exception as e:  # noqa: BLE001
                answer["error"] = _reason(e, logs)
        _write(answers, answer)


def _probe_file(target: str) -> dict[str, Any]:
    """ffprobe's -show_format -show_streams JSON, for the fields domain/media.py reads."""
    import av

    with av.open(target, container_options=_CONTAINER_OPTIONS, metadata_errors="replace") as c:
        fmt: dict[str, Any] = {"format_name": c.format.name, "tags": dict(c.metadata)}
        if c.duration is not None:
            fmt["duration"] = c.duration / av.time_base
        streams = []
        for s in c.streams:
            stream: dict[str, Any] = {"index": s.index, "codec_type": s.type}
            context = s.codec_context
            # None where this FFmpeg has no decoder for the codec: ffprobe named it anyway
            if context is not None:
                stream["codec_name"] = context.codec.canonical_name
                if isinstance(context, av.VideoCodecContext):
                    stream["width"] = context.width
                    stream["height"] = context.height
            if s.duration is not None and s.time_base is not None:
                stream["duration"] = float(s.duration * s.time_base)
            stream["tags"] = dict(s.metadata)
            streams.append(stream)
        return {"format": fmt, "streams": streams}


def _reason(error: Exception, logs: Sequence[tuple[int, str, str]]) -> str:
    """What FFmpeg said first (as ffprobe printed it), else the error itself."""
    for _level, _context, message in logs:
        if message.strip():
            return message.strip()
    strerror = getattr(error, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    return f"{type(error).__name__}: {error}"


def _write(answers: IO[bytes], message: Mapping[str, Any]) -> None:
    answers.write(json.dumps(message).encode() + b"\n")


def _exit_with_parent() -> None:
    """End the worker when the agent is gone, even while a demuxer hangs (it releases the GIL
    while it reads): stdin's end is not seen then."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    _serve()
