"""The local API's wire: the caller named by the kernel, descriptors passed, errors with their exit codes."""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.adapters.api_socket import peer_identity, recv_message, send_message
from evidence_agent.domain.roles import Identity
from evidence_agent.errors import ExitCode, PermissionDeniedError, StorageError
from evidence_agent.services.bundle_writer import StationExport, write_bundle
from evidence_agent.services.local_api import ApiServer, Outcome, Peer, call

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
