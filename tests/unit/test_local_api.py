"""The local API's wire: the caller named by the kernel, descriptors passed, errors with their exit codes."""

from __future__ import annotations

import os
import pwd
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.adapters.api_socket import peer_identity, recv_message, send_message
from evidence_agent.domain.roles import Identity
from evidence_agent.errors import ExitCode, PermissionDeniedError, StorageError
from evidence_agent.services import local_api
from evidence_agent.services.bundle_writer import StationExport, write_bundle
from evidence_agent.services.local_api import REQUEST_NICENESS, ApiServer, Outcome, Peer, call

T0 = datetime(2026, 12, 1, tzinfo=UTC)
BUNDLE = StationExport(
    station_id="st-1",
    verifier_key="st-1+0000+AAAA",
    public_key_pem="-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
    entries=(),
    checkpoints=(),
)


def handler(identity: Identity, name: str, fields: Mapping[str, Any], peer: Peer) -> Outcome:
    if name == "whoami":
        return {"user": identity.user, "uid": identity.uid, "claimed": fields.get("user")}, None
    if name == "refuse":
        raise PermissionDeniedError("refused: no role", remedy="ask an admin")
    if name == "write":
        target = peer.target(str(fields["target"]))
        target.prepare(16, 0)
        temp, fd = target.create_temp()
        with os.fdopen(fd, "wb") as f:  # written here, through the descriptor the caller opened
            f.write(fields["text"].encode())
        target.seal(temp)
        placed = target.place(temp, "note.txt", None)
        return {"file": str(placed)}, None
    if name == "bundle":
        dest = Path(str(fields["dest"]))
        export = replace(BUNDLE, entries=[e.encode() for e in fields["entries"]],
                         checkpoints=[(int(n), note) for n, note in fields["checkpoints"]])  # fmt: skip
        return write_bundle(dest, [export], created_at=T0, created_by="user:a",
                            output=peer.output(str(dest.parent))).to_json(), None  # fmt: skip
    if name == "escape":
        peer.output(str(fields["dir"])).create("../outside", 0o644)
        return None, None
    if name == "read":
        with os.fdopen(peer.take_fd(), "rb") as f:
            return {"text": f.read().decode()}, None
    return None, StorageError(f"no operation {name}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "api.sock"
    running = ApiServer(path, handler, environ={}).start()
    try:
        yield path
    finally:
        running.stop()
    assert not path.exists()  # a socket it bound itself is removed when it stops


def test_the_caller_is_who_the_kernel_says_not_who_the_request_says(server: Path) -> None:
    result, error = call(server, "whoami", {"user": "root", "uid": 0})
    assert error is None
    me = pwd.getpwuid(os.getuid()).pw_name
    assert (result["user"], result["uid"], result["claimed"]) == (me, os.getuid(), "root")


def test_an_error_comes_back_with_its_message_remedy_and_exit_code(server: Path) -> None:
    result, error = call(server, "refuse", {})
    assert result is None and error is not None
    assert (error.message, error.remedy, error.exit_code) == (
        "refused: no role",
        "ask an admin",
        ExitCode.PERMISSION,
    )


def test_the_server_writes_through_descriptors_the_caller_opened(
    server: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    result, error = call(server, "write", {"target": str(target), "text": "hello"}, target=target)
    assert error is None
    placed = Path(result["file"])
    assert placed == target.resolve() / "note.txt" and placed.read_text() == "hello"
    assert placed.stat().st_mode & 0o777 == 0o444
    assert [p.name for p in target.iterdir()] == ["note.txt"]  # no temporary file left


def test_a_file_the_caller_names_is_opened_by_the_caller_and_passed(
    server: Path, tmp_path: Path
) -> None:
    document = tmp_path / "decision.txt"
    document.write_text("penalty decision")
    result, error = call(server, "read", {"file": str(document)}, files=[document])
    assert error is None and result == {"text": "penalty decision"}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_directory_written_through_the_caller_is_the_one_written_here(
    server: Path, tmp_path: Path
) -> None:
    """An audit bundle whose every file the caller made: byte for byte the local one."""
    entries = ['{"seq":0}', '{"seq":1}']
    checkpoints = [(2, "st-1\n2\nAAAA\n\n- st-1 sig\n")]
    export = replace(BUNDLE, entries=[e.encode() for e in entries], checkpoints=checkpoints)
    here = tmp_path / "here" / "bundle"
    write_bundle(here, [export], created_at=T0, created_by="user:a")
    there = tmp_path / "there" / "bundle"
    fields = {"dest": str(there), "entries": entries, "checkpoints": checkpoints}
    result, error = call(server, "bundle", fields, output=there.parent)
    assert error is None and result["path"] == str(there)
    assert tree(there) == tree(here) and len(tree(here)) > 3
    assert [p.name for p in there.parent.iterdir()] == ["bundle"]  # no staging left


def test_the_daemon_cannot_name_a_file_outside_the_callers_directory(
    server: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _, error = call(server, "escape", {"dir": str(out)}, output=out)
    assert error is not None and "not a name inside" in error.message
    assert not (tmp_path / "outside").exists()


def test_a_socket_still_served_is_not_taken_over(server: Path) -> None:
    with pytest.raises(StorageError, match="another daemon serves"):
        ApiServer(server, handler, environ={}).start()


def test_peer_credentials_of_a_socket_pair() -> None:
    a, b = socket.socketpair()
    with a, b:
        send_message(a, {"x": 1})
        assert recv_message(b) == ({"x": 1}, [])
        assert peer_identity(b).uid == os.getuid()


class Gate:
    """A handler whose `hold` requests wait until released: the pool's threads kept busy."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.held = threading.Semaphore(0)
        self.ran: list[str] = []
        self.niceness: list[int] = []

    def __call__(
        self, identity: Identity, name: str, fields: Mapping[str, Any], peer: Peer
    ) -> Outcome:
        self.niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        if name == "hold":
            self.held.release()
            self.release.wait(30)
        self.ran.append(str(fields.get("n", name)))
        return {"n": fields.get("n")}, None


def _send(path: Path, n: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    send_message(sock, {"op": "echo", "request": {"n": str(n)}})
    return sock


def test_every_caller_of_a_burst_is_answered_in_order_by_a_few_threads(tmp_path: Path) -> None:
    gate = Gate()
    path = tmp_path / "api.sock"
    server = ApiServer(path, gate, environ={}, workers=2).start()
    try:
        holders = [threading.Thread(target=call, args=(path, "hold", {})) for _ in range(2)]
        for t in holders:
            t.start()
        assert gate.held.acquire(timeout=30) and gate.held.acquire(timeout=30)
        burst = [_send(path, n) for n in range(100)]  # more than the old 64 threads
        gate.release.set()
        for n, sock in enumerate(burst):
            with sock:
                assert recv_message(sock)[0] == {"result": {"n": str(n)}, "error": None}
        for t in holders:
            t.join()
    finally:
        server.stop()
    # The two held requests finish alongside the burst: "hold" may come anywhere.
    assert sorted((r for r in gate.ran if r != "hold"), key=int) == [str(n) for n in range(100)]
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert set(gate.niceness) == {min(19, base + REQUEST_NICENESS)}  # below this thread's


def test_a_queued_caller_that_went_away_is_not_run(tmp_path: Path) -> None:
    gate = Gate()
    path = tmp_path / "api.sock"
    server = ApiServer(path, gate, environ={}, workers=1).start()
    try:
        holder = threading.Thread(target=call, args=(path, "hold", {}))
        holder.start()
        assert gate.held.acquire(timeout=30)
        _send(path, 1).close()  # gave up while waiting
        waiting = _send(path, 2)
        gate.release.set()
        with waiting:
            assert recv_message(waiting)[0]["result"] == {"n": "2"}
        holder.join()
    finally:
        server.stop()
    assert gate.ran == ["hold", "2"]


def test_stopping_finishes_the_request_under_way_and_answers_the_queued(tmp_path: Path) -> None:
    gate = Gate()
    path = tmp_path / "api.sock"
    server = ApiServer(path, gate, environ={}, workers=1).start()
    outcome: list[Outcome] = []
    holder = threading.Thread(target=lambda: outcome.append(call(path, "hold", {})))
    holder.start()
    assert gate.held.acquire(timeout=30)
    queued = _send(path, 1)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    gate.release.set()
    stopper.join(30)
    holder.join(30)
    assert not stopper.is_alive() and outcome == [({"n": None}, None)]
    with queued:
        answer = recv_message(queued)[0]
    assert answer["result"] is None and "stopping" in answer["error"]["message"]
    assert answer["error"]["exit_code"] == ExitCode.ERROR
    assert gate.ran == ["hold"]


def test_a_request_that_waited_too_long_is_answered_busy_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(local_api, "QUEUE_TIMEOUT", 0.0)  # every request has waited too long
    path = tmp_path / "api.sock"
    server = ApiServer(path, gate, environ={}, workers=1).start()
    try:
        result, error = call(path, "echo", {"n": "1"})
    finally:
        server.stop()
    assert result is None and error is not None and "too busy" in error.message
    assert error.exit_code == ExitCode.ERROR and gate.ran == []
