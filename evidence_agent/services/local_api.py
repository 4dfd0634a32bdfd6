"""The daemon's local API: one request per connection, acted on as the kernel names its caller.

A person's `evidence-agent` command, where it cannot open the station's private data directory,
sends the operation it would run (a name and its fields) over the daemon's Unix socket. The
daemon takes the caller from the socket (SO_PEERCRED), never from the request, and runs the
operation through the table the CLI uses too (review/operations.py). Files the caller reads or
writes (a retrieval's target, a document to attach, every file of a directory of output) are
opened by the caller's own process, which passes the descriptors (SCM_RIGHTS): the station's
account never opens a path a caller chose, and what is written lands with the caller's rights.

A volume to ingest is read the same way: the caller's process lists it and opens each file with
the station's own safe reader (io/volume_reader.py: no link followed, no device opened, depth
bounded) and passes the descriptor; the daemon hashes and copies from it (PeerVolume).

Conversation on one connection: the client sends {"op", "request"} (with descriptors for the
files it names); while the operation runs, the daemon may send {"ask": {...}} for a target
directory's file work ({"target": ...} for copies, {"output": ...} for a directory of output,
{"volume": ...} for a volume to ingest), each answered by {"reply": {...}} or {"error": {...}}
with descriptors, and {"progress": bytes} as an ingest reads; the daemon ends with
{"result": ..., "error": null or {...}}.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import queue
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evidence_agent.adapters.api_socket import (
    MAX_REQUEST,
    MAX_RESULT,
    connect,
    error_from,
    error_message,
    listening_socket,
    peer_identity,
    peer_login_user,
    recv_message,
    send_message,
)
from evidence_agent.domain.flags import SkipReason
from evidence_agent.domain.roles import Identity
from evidence_agent.errors import EvidenceError, InputError, StorageError
from evidence_agent.io.volume_reader import (
    MAX_DEPTH,
    LocalVolume,
    SkippedEntry,
    VolumeFile,
    VolumeGoneError,
    VolumeListing,
)
from evidence_agent.services.copy_out import DirectoryTarget, Target
from evidence_agent.services.output_directory import LocalDirectory, OutputDirectory, relative

log = logging.getLogger(__name__)

_IO_TIMEOUT = 120.0  # a caller that stops answering frees its thread after this long
# A request that waited this long for a thread is answered "busy" rather than run: its caller
# has most likely given up, and the queue must not grow without end.
QUEUE_TIMEOUT = 300.0
DEFAULT_WORKERS = 4  # the configuration's dock.api_workers sets the daemon's
REQUEST_NICENESS = 10  # added to a request thread's niceness: below the docks'
# A volume's listing comes from the caller: large for a recorder of many small files, bounded
# so that a caller cannot make the daemon hold what it likes.
_MAX_LISTING = 64 << 20
_CALLER_GONE = "the command that asked for this ingest stopped while its volume was read"

Outcome = tuple[Any, EvidenceError | None]  # the result, and the error the command ends with
# (caller, operation name, its fields, the caller's side of the connection) -> outcome
Handler = Callable[[Identity, str, Mapping[str, Any], "Peer"], Outcome]


class Peer:
    """The caller's side of one request: descriptors it passed, and file work in its process."""

    def __init__(self, sock: socket.socket, fds: Sequence[int]) -> None:
        self.sock = sock
        self.fds = list(fds)

    def login_user(self) -> str | None:
        """The person behind the caller's session (the kernel's login uid): who ran sudo."""
        return peer_login_user(self.sock)

    def take_fd(self) -> int:
        """The next descriptor the caller passed with its request (the taker closes it)."""
        if not self.fds:
            raise InputError("the request names a file but passed no descriptor for it")
        return self.fds.pop(0)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()

    def ask(
        self, question: Mapping[str, Any], max_bytes: int = MAX_REQUEST
    ) -> tuple[dict[str, Any], list[int]]:
        send_message(self.sock, {"ask": dict(question)})
        answer, fds = recv_message(self.sock, max_bytes)
        if answer.get("error") is not None:
            for fd in fds:
                os.close(fd)
            raise error_from(answer["error"])
        reply = answer.get("reply")
        return (reply if isinstance(reply, dict) else {}), fds

    def target(self, path: str) -> PeerTarget:
        return PeerTarget(self, Path(path))

    def output(self, path: str) -> PeerOutput:
        return PeerOutput(self, Path(path))

    def volume(self, path: str) -> PeerVolume:
        return PeerVolume(self, Path(path))

    def progress(self, done: int) -> None:
        """Bytes an ingest has read, for the caller's progress bar; no answer is awaited."""
        try:
            send_message(self.sock, {"progress": done})
        except OSError as e:
            raise VolumeGoneError(_CALLER_GONE) from e


class PeerVolume:
    """A recorder volume the caller's process lists and opens (io/volume_reader.VolumeSource):
    the daemon reads only the descriptors it is passed, never a path the caller named. What
    the caller sends is checked as coming from anyone: names, sizes, the kind of each file."""

    def __init__(self, peer: Peer, root: Path) -> None:
        self.peer = peer
        self.root = root  # the caller's name for it, kept in the catalog as the dock's volume

    def _ask(
        self, op: str, max_bytes: int = MAX_REQUEST, **fields: Any
    ) -> tuple[dict[str, Any], list[int]]:
        try:
            return self.peer.ask({"volume": op, "path": str(self.root), **fields}, max_bytes)
        except OSError as e:  # the connection, not the volume: the caller is gone
            raise VolumeGoneError(_CALLER_GONE) from e

    def listing(self) -> VolumeListing:
        reply, fds = self._ask("list", _MAX_LISTING)
        for fd in fds:
            os.close(fd)
        try:
            files = [VolumeFile(_rel(r), _count(n), _count(t)) for r, n, t in reply["files"]]
            skipped = [
                SkippedEntry(_rel(r), SkipReason(why), str(detail)[:1000])
                for r, why, detail in reply["skipped"]
            ]
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"the volume's listing the command sent is malformed: {e}") from e
        return VolumeListing(sorted(files, key=lambda f: f.rel), skipped)

    def open_file(self, rel: bytes) -> int:
        reply, fds = self._ask("open", rel=base64.b64encode(rel).decode())
        if "refused" in reply or "errno" in reply:
            for fd in fds:
                os.close(fd)
            if "refused" in reply:
                raise InputError(str(reply["refused"]))
            if reply.get("gone"):
                raise VolumeGoneError(f"recorder vanished: {reply.get('strerror')}")
            raise OSError(int(reply["errno"]), str(reply.get("strerror")))
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise InputError("the command passed no descriptor for a file of its volume")
        fd = fds[0]
        # Whatever the caller passed is read only if it is a regular file, from its start: a
        # pipe or a device would hang or feed the reader without end.
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise InputError("the command passed a descriptor that is not a regular file")
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    def gone(self, error: OSError) -> bool:
        try:
            reply, fds = self._ask("gone", errno=error.errno, strerror=error.strerror)
        except EvidenceError:
            return True  # the caller cannot say: it is gone, and so is the volume to us
        for fd in fds:
            os.close(fd)
        return bool(reply.get("gone"))


def _rel(value: Any) -> bytes:
    """A file's path inside the volume as the caller sent it: relative, without `.` or `..`,
    no deeper than the reader goes."""
    try:
        rel = base64.b64decode(str(value), validate=True)
    except binascii.Error as e:
        raise ValueError("a file name is not base64") from e
    parts = rel.split(b"/")
    if b"\0" in rel or len(parts) > MAX_DEPTH + 1 or any(p in (b"", b".", b"..") for p in parts):
        raise ValueError(f"{rel!r} is not a path inside the volume")
    return rel


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a size or a time")
    return value


def answer_volume(question: Mapping[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """The caller's side of a PeerVolume question: the volume read in this process, with its
    rights, by the same reader the station uses on its own volumes."""
    volume = LocalVolume(Path(str(question.get("path"))))
    op = question.get("volume")
    if op == "list":
        listing = volume.listing()
        return {
            "files": [[_b64(f.rel), f.size, f.mtime_ns] for f in listing.files],
            "skipped": [[_b64(s.rel), str(s.reason), s.detail] for s in listing.skipped],
        }, []
    if op == "open":
        rel = base64.b64decode(str(question["rel"]), validate=True)
        try:
            return {}, [volume.open_file(rel)]
        except OSError as e:
            gone = volume.gone(e)
            return {"errno": e.errno or 0, "strerror": e.strerror, "gone": gone}, []
        except InputError as e:
            return {"refused": e.message}, []
    if op == "gone":
        error = OSError(int(question["errno"] or 0), str(question.get("strerror")))
        return {"gone": volume.gone(error)}, []
    raise InputError(f"the daemon asked for {op!r}, which this command does not do")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class PeerTarget:
    """A target directory whose every file the caller's process opens (copy_out.Target);
    `within`: a directory inside the caller's output directory (PeerOutput.target)."""

    def __init__(self, peer: Peer, path: Path, within: str | None = None) -> None:
        self.peer = peer
        self.path = path
        self.within = within

    def _ask(self, op: str, **fields: Any) -> tuple[dict[str, Any], list[int]]:
        where = {} if self.within is None else {"within": self.within}
        return self.peer.ask({"target": op, **where, **fields})

    def prepare(self, needed: int, spare: int) -> Path:
        reply, _ = self._ask("prepare", needed=needed, spare=spare)
        self.path = Path(str(reply.get("path")))
        return self.path

    def open_existing(self, name: str) -> tuple[bool, int | None]:
        reply, fds = self._ask("open_existing", name=name)
        return bool(reply.get("exists")), (fds[0] if fds else None)

    def create_temp(self) -> tuple[str, int]:
        reply, fds = self._ask("create_temp")
        if len(fds) != 1:
            raise StorageError("the caller passed no descriptor for the copy")
        return str(reply.get("temp")), fds[0]

    def seal(self, temp: str) -> None:
        self._ask("seal", temp=temp)

    def discard(self, temp: str) -> None:
        self._ask("discard", temp=temp)

    def place(self, temp: str, name: str, fallback: str | None) -> Path:
        reply, _ = self._ask("place", temp=temp, name=name, fallback=fallback)
        return Path(str(reply.get("path")))

    def write_document(self, name: str, data: bytes) -> Path:
        reply, _ = self._ask("write_document", name=name, data=base64.b64encode(data).decode())
        return Path(str(reply.get("path")))


class PeerOutput:
    """An output directory whose every file the caller's process makes and opens
    (output_directory.OutputDirectory); the bytes go through the descriptors it passes."""

    def __init__(self, peer: Peer, path: Path) -> None:
        self.peer = peer
        self.path = path

    def _ask(self, op: str, rel: str, **fields: Any) -> tuple[dict[str, Any], list[int]]:
        return self.peer.ask({"output": op, "rel": rel, **fields})

    def state(self, rel: str) -> str:
        return str(self._ask("state", rel)[0].get("state"))

    def make(self, rel: str) -> Path:
        return Path(str(self._ask("make", rel)[0].get("path")))

    def create(self, rel: str, mode: int) -> int:
        _, fds = self._ask("create", rel, mode=mode)
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise StorageError(f"the caller passed no descriptor for {self.path / rel}")
        return fds[0]

    def rename(self, rel: str, new: str) -> None:
        self._ask("rename", rel, new=new)

    def sync(self, rel: str) -> None:
        self._ask("sync", rel)

    def remove(self, rel: str) -> None:
        self._ask("remove", rel)

    def files(self) -> dict[str, int]:
        listed = self._ask("files", "")[0].get("files")
        if not isinstance(listed, dict):
            raise StorageError(f"the caller sent no listing of {self.path}")
        return {str(name): int(size) for name, size in listed.items()}

    def target(self, rel: str) -> PeerTarget:
        return PeerTarget(self.peer, self.path / relative(rel), within=rel)


def answer_output(
    out: OutputDirectory, question: Mapping[str, Any]
) -> tuple[dict[str, Any], list[int]]:
    """The caller's side of a PeerOutput question: done in this process, with its rights."""
    op, rel = question.get("output"), str(question.get("rel", ""))
    if op == "state":
        return {"state": out.state(rel)}, []
    if op == "make":
        return {"path": str(out.make(rel))}, []
    if op == "create":
        # The daemon chooses no mode wider than a file's usual (0666 under the umask).
        return {}, [out.create(rel, int(question.get("mode", 0o666)) & 0o666)]
    if op == "rename":
        out.rename(rel, str(question["new"]))
        return {}, []
    if op == "sync":
        out.sync(rel)
        return {}, []
    if op == "remove":
        out.remove(rel)
        return {}, []
    if op == "files":
        return {"files": out.files()}, []
    raise InputError(f"the daemon asked for {op!r}, which this command does not do")


def answer_target(target: Target, question: Mapping[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """The caller's side of a PeerTarget question: done in this process, with its rights."""
    op = question.get("target")
    if op == "prepare":
        return {"path": str(target.prepare(int(question["needed"]), int(question["spare"])))}, []
    if op == "open_existing":
        exists, fd = target.open_existing(str(question["name"]))
        return {"exists": exists}, ([fd] if fd is not None else [])
    if op == "create_temp":
        temp, fd = target.create_temp()
        return {"temp": temp}, [fd]
    if op == "seal":
        target.seal(str(question["temp"]))
        return {}, []
    if op == "discard":
        target.discard(str(question["temp"]))
        return {}, []
    if op == "place":
        fallback = question.get("fallback")
        path = target.place(str(question["temp"]), str(question["name"]), fallback)
        return {"path": str(path)}, []
    if op == "write_document":
        data = base64.b64decode(str(question["data"]))
        return {"path": str(target.write_document(str(question["name"]), data))}, []
    raise InputError(f"the daemon asked for {op!r}, which this command does not do")


class ApiServer:
    """Serves the local API on its socket until stopped: every connection accepted at once and
    queued in order, answered by a fixed pool of request threads at a lower CPU priority than
    the docks, so that people's requests never take a dock's share of the machine."""

    def __init__(
        self,
        path: Path,
        handler: Handler,
        environ: Mapping[str, str] | None = None,
        *,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.path = path
        self.handler = handler
        self.environ = os.environ if environ is None else environ
        self.workers = workers
        self._sock: socket.socket | None = None
        self._bound = False
        self._stopping = threading.Event()
        # (connection, when it was accepted); None tells a request thread to end.
        self._queue: queue.SimpleQueue[tuple[socket.socket, float] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._acceptor: threading.Thread | None = None

    def start(self) -> ApiServer:
        self._sock, self._bound = listening_socket(self.path, self.environ)
        self._sock.settimeout(0.5)  # the accept loop looks at the stop flag this often
        self._threads = [
            threading.Thread(target=self._work, name=f"local-api-{n}", daemon=True)
            for n in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()
        self._acceptor = threading.Thread(target=self._accept, name="local-api", daemon=True)
        self._acceptor.start()
        log.info(
            "local API on %s, %d request threads",
            self.path if self._bound else "the socket systemd passed",
            self.workers,
        )
        return self

    def stop(self) -> None:
        """Accept no more; requests under way finish, those still queued are told the daemon
        stops (an answer, not a dropped connection)."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join()
        for _ in self._threads:
            self._queue.put(None)  # behind every connection already queued
        for thread in self._threads:
            thread.join()
        if self._sock is not None:
            self._sock.close()
        if self._bound:
            self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError as e:
                log.error("local API: accept failed: %s", e)
                continue
            self._queue.put((conn, time.monotonic()))

    def _work(self) -> None:
        lower_priority()
        while (item := self._queue.get()) is not None:
            conn, accepted = item
            with conn:
                conn.settimeout(_IO_TIMEOUT)
                if _caller_gone(conn):
                    continue  # nobody waits for the answer: its place goes to the next
                if self._stopping.is_set():
                    _turn_away(conn, "the station's daemon is stopping")
                elif time.monotonic() - accepted > QUEUE_TIMEOUT:
                    _turn_away(conn, "the station's daemon is too busy to answer now")
                else:
                    self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        try:
            identity = peer_identity(conn)
            message, fds = recv_message(conn)
        except (OSError, EvidenceError, ValueError) as e:
            log.warning("local API: a request could not be read: %s", e)
            return
        peer = Peer(conn, fds)
        try:
            result, error = self.handler(
                identity, str(message.get("op", "")), _fields(message), peer
            )
            reply = {"result": result, "error": error_message(error) if error else None}
        except EvidenceError as e:
            reply = {"result": None, "error": error_message(e)}
        except (OSError, ValueError) as e:
            # A caller that went away mid-request (a closed connection, a timeout) is not
            # answered; what the operation did is in the custody log.
            log.warning(
                "local API: request %s of %s ended: %s", message.get("op"), identity.user, e
            )
            return
        finally:
            peer.close()
        try:
            send_message(conn, reply)
        except OSError as e:
            log.warning("local API: the answer to %s was not delivered: %s", identity.user, e)


def lower_priority() -> None:
    """This thread yields the CPU to the docks: a nicer value for it alone (Linux gives each
    thread its own)."""
    tid = threading.get_native_id()
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, niceness + REQUEST_NICENESS))
    except OSError as e:
        log.warning("local API: requests run at the docks' priority: %s", e)


def _caller_gone(conn: socket.socket) -> bool:
    """True when the caller closed its connection while its request waited in the queue (a
    caller that only ended its sending side still waits for the answer)."""
    poller = select.poll()
    poller.register(conn, select.POLLHUP)
    return bool(poller.poll(0))


def _turn_away(conn: socket.socket, why: str) -> None:
    """Read the request (a close over unread data would reset the connection before the
    caller reads why) and answer that it was not run."""
    error = StorageError(why, remedy="run the command again in a moment")
    try:
        _message, fds = recv_message(conn)
        for fd in fds:
            os.close(fd)
        send_message(conn, {"result": None, "error": error_message(error)})
    except (OSError, EvidenceError, ValueError) as e:
        log.warning("local API: a request turned away (%s) was not told: %s", why, e)


def _fields(message: Mapping[str, Any]) -> Mapping[str, Any]:
    request = message.get("request")
    if not isinstance(request, dict):
        raise InputError("a local API request has no fields")
    return request


def call(
    path: Path,
    op: str,
    request: Mapping[str, Any],
    *,
    target: Path | None = None,
    output: Path | None = None,
    files: Sequence[Path] = (),
    volume: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Run `op` at the daemon as this process's account; `target`, a directory this process
    writes the retrieved files in; `output`, a directory this process writes a command's
    output in, file by file as the daemon asks; `files`, opened here and passed; `volume`, a
    recorder volume this process lists and opens for the daemon, `progress` told the bytes
    read. Returns the
    result and the error the command must end with (the daemon's, with its exit code)."""
    fds: list[int] = []
    try:
        for file in files:
            try:
                fds.append(os.open(file, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as e:
                raise InputError(f"cannot read {file}: {e.strerror}") from e
        with connect(path) as sock:
            send_message(sock, {"op": op, "request": dict(request)}, fds)
            for fd in fds:
                os.close(fd)
            fds.clear()
            answers = _Answers(
                DirectoryTarget(target) if target is not None else None,
                LocalDirectory(output) if output is not None else None,
                volume,
                progress,
            )
            return _converse(sock, answers)
    finally:
        for fd in fds:
            os.close(fd)


class _Answers:
    """What this process does for the daemon during one call: the questions it may answer."""

    def __init__(
        self,
        target: DirectoryTarget | None,
        output: LocalDirectory | None,
        volume: Path | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.target = target
        self.output = output
        self.volume = volume
        self.progress = progress

    def answer(self, question: Mapping[str, Any]) -> tuple[dict[str, Any], list[int]]:
        if "volume" in question:
            # Only the volume this command named: a daemon cannot have it read another path.
            if self.volume is None or question.get("path") != str(self.volume):
                raise InputError("the daemon asked for a volume this command did not name")
            return answer_volume(question)
        if "output" in question and self.output is not None:
            return answer_output(self.output, question)
        if "target" in question and "within" in question and self.output is not None:
            return answer_target(self.output.target(str(question["within"])), question)
        if "target" in question and self.target is not None:
            return answer_target(self.target, question)
        raise InputError("the daemon asked about a directory this command did not name")


def _converse(sock: socket.socket, answers: _Answers) -> Outcome:
    while True:
        try:
            message, fds = recv_message(sock, MAX_RESULT)
        except ConnectionError as e:
            raise StorageError(
                "the station's daemon closed the connection before answering",
                remedy="see its log (journalctl -u evidence-agent)",
            ) from e
        for fd in fds:
            os.close(fd)
        if "progress" in message:
            if answers.progress is not None:
                answers.progress(int(message["progress"]))
            continue
        question = message.get("ask")
        if question is None:
            error = message.get("error")
            return message.get("result"), (error_from(error) if error else None)
        try:
            reply, passed = answers.answer(question)
        except EvidenceError as e:
            send_message(sock, {"error": error_message(e)})
            continue
        try:
            send_message(sock, {"reply": reply}, passed)
        finally:
            for fd in passed:
                os.close(fd)
