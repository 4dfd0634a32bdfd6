"""A volume read through the caller's process (local_api.PeerVolume): what the caller's side
answers with the station's own reader, and what a hostile caller's answers cannot do."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.adapters.api_socket import recv_message, send_message
from evidence_agent.errors import InputError
from evidence_agent.io.volume_reader import LocalVolume
from evidence_agent.services.local_api import Peer, PeerVolume, answer_volume

Answer = Callable[[dict[str, Any]], tuple[dict[str, Any], list[int]]]


@contextmanager
def caller(answer: Answer) -> Iterator[Peer]:
    """The daemon's side of a connection whose other end answers every question with `answer`."""
    ours, theirs = socket.socketpair()

    def serve() -> None:
        with theirs:
            while True:
                try:
                    message, fds = recv_message(theirs)
                except ConnectionError:
                    return
                for fd in fds:
                    os.close(fd)
                reply, passed = answer(message["ask"])
                send_message(theirs, {"reply": reply}, passed)
                for fd in passed:
                    os.close(fd)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield Peer(ours, [])
    finally:
        ours.close()
        thread.join(timeout=10)


def hostile_volume(root: Path) -> Path:
    (root / "DCIM").mkdir(parents=True)
    (root / "DCIM" / "A.MP4").write_bytes(b"clip bytes")
    (root / "DCIM" / "LINK.MP4").symlink_to("/etc/passwd")
    os.mkfifo(root / "DCIM" / "PIPE.MP4")
    (root / "DCIM" / b"\xff name.MP4".decode(errors="surrogateescape")).write_bytes(b"odd")
    return root


def test_the_listing_and_files_through_the_caller_are_those_read_here(tmp_path: Path) -> None:
    root = hostile_volume(tmp_path / "vol")
    with caller(answer_volume) as peer:
        remote = PeerVolume(peer, root)
        listing = remote.listing()
        assert listing == LocalVolume(root).listing()
        fd = remote.open_file(b"DCIM/A.MP4")
        try:
            assert os.read(fd, 100) == b"clip bytes"
        finally:
            os.close(fd)
        with pytest.raises(OSError) as link:
            remote.open_file(b"DCIM/LINK.MP4")  # the caller's reader follows no link either
        assert link.value.errno == 40
        with pytest.raises(FileNotFoundError):
            remote.open_file(b"DCIM/GONE.MP4")


def test_a_caller_that_passes_a_pipe_is_refused(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()

    def passes_a_pipe(question: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        return {}, [read_end]

    try:
        with caller(passes_a_pipe) as peer, pytest.raises(InputError, match="not a regular file"):
            PeerVolume(peer, tmp_path).open_file(b"A.MP4")
    finally:
        os.close(write_end)


@pytest.mark.parametrize("rel", ["Li4vc2VjcmV0", "L2V0Yy9wYXNzd2Q=", "YS8vYg==", "bm90IGJhc2U2NA!"])
def test_a_listing_naming_paths_outside_the_volume_is_refused(tmp_path: Path, rel: str) -> None:
    """../secret, /etc/passwd, a//b, and a name that is not base64."""

    def lies(question: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        return {"files": [[rel, 1, 1]], "skipped": []}, []

    with caller(lies) as peer, pytest.raises(InputError, match="malformed"):
        PeerVolume(peer, tmp_path).listing()
