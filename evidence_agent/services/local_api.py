"""The daemon's local API: one request per connection, acted on as the kernel names its caller.

A person's `evidence-agent` command, where it cannot open the station's private data directory,
sends the operation it would run (a name and its fields) over the daemon's Unix socket. The
daemon takes the caller from the socket (SO_PEERCRED), never from the request, and runs the
operation through the table the CLI uses too (review/operations.py). Files the caller reads or
writes (a retrieval's target, a document to attach, every file of a directory of output) are
opened by the caller's own process, which passes the descriptors (SCM_RIGHTS): the station's
account never opens a path a caller chose, and what is written lands with the caller's rights.

Conversation on one connection: the client sends {"op", "request"} (with descriptors for the
files it names); while the operation runs, the daemon may send {"ask": {...}} for a target
directory's file work ({"target": ...} for copies, {"output": ...} for a directory of output),
each answered by {"reply": {...}} or {"error": {...}} with descriptors;
the daemon ends with {"result": ..., "error": null or {...}}.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from evidence_agent.adapters.api_socket import (
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
from evidence_agent.domain.roles import Identity
from evidence_agent.errors import EvidenceError, InputError, StorageError
from evidence_agent.services.copy_out import DirectoryTarget, Target
from evidence_agent.services.output_directory import LocalDirectory, OutputDirectory, relative

log = logging.getLogger(__name__)

_IO_TIMEOUT = 120.0  # a caller that stops answering frees its thread after this long
# A request that waited this long for a thread is answered "busy" rather than run: its caller
# has most likely given up, and the queue must not grow without end.
QUEUE_TIMEOUT = 300.0
DEFAULT_WORKERS = 4  # the configuration's dock.api_workers sets the daemon's
REQUEST_NICENESS = 10  # added to a request thread's niceness: below the docks'

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

    def ask(self, question: Mapping[str, Any]) -> tuple[dict[str, Any], list[int]]:
        send_message(self.sock, {"ask": dict(question)})
        answer, fds = recv_message(self.sock)
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
) -> Outcome:
    """Run `op` at the daemon as this process's account; `target`, a directory this process
    writes the retrieved files in; `output`, a directory this process writes a command's
    output in, file by file as the daemon asks; `files`, opened here and passed. Returns the
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
            return _converse(
                sock,
                DirectoryTarget(target) if target is not None else None,
                LocalDirectory(output) if output is not None else None,
            )
    finally:
        for fd in fds:
            os.close(fd)


def _converse(
    sock: socket.socket, target: DirectoryTarget | None, output: LocalDirectory | None
) -> Outcome:
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
        question = message.get("ask")
        if question is None:
            error = message.get("error")
            return message.get("result"), (error_from(error) if error else None)
        try:
            if "output" in question and output is not None:
                reply, passed = answer_output(output, question)
            elif "target" in question and "within" in question and output is not None:
                within = output.target(str(question["within"]))
                reply, passed = answer_target(within, question)
            elif "target" in question and target is not None:
                reply, passed = answer_target(target, question)
            else:
                raise InputError("the daemon asked about a directory this command did not name")
        except EvidenceError as e:
            send_message(sock, {"error": error_message(e)})
            continue
        try:
            send_message(sock, {"reply": reply}, passed)
        finally:
            for fd in passed:
                os.close(fd)
