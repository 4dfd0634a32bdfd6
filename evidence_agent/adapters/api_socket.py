"""The local API's Unix socket: messages with passed descriptors, the peer from SO_PEERCRED."""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evidence_agent.adapters.os_accounts import identity_of_uid, login_user
from evidence_agent.domain.roles import Identity
from evidence_agent.errors import EvidenceError, ExitCode, InputError, StorageError

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3  # sd_listen_fds(3): the first descriptor systemd passes
MAX_FDS = 4  # descriptors one message may carry
_HEADER = struct.Struct("!I")
# What a caller may send the daemon (a request, an answer about a file): small. What the
# daemon sends back (a listing of every clip) may be large, and comes from the station.
MAX_REQUEST = 1 << 20
MAX_RESULT = 1 << 30
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ApiUnavailableError(EvidenceError):
    """No daemon answers on the local API's socket."""


def send_message(sock: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    """One message: a 4-byte length, then JSON; `fds` ride with its first byte (SCM_RIGHTS)."""
    body = json.dumps(message, ensure_ascii=False).encode("utf-8")
    data = _HEADER.pack(len(body)) + body
    sent = socket.send_fds(sock, [data], list(fds)) if fds else sock.send(data)
    if sent < len(data):
        sock.sendall(data[sent:])


def recv_message(
    sock: socket.socket, max_bytes: int = MAX_REQUEST
) -> tuple[dict[str, Any], list[int]]:
    """The next message and the descriptors passed with it (the receiver closes them).

    Raises ConnectionError when the peer closed the connection between messages."""
    header, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, MAX_FDS)
    try:
        header += _recv_exactly(sock, _HEADER.size - len(header), at_start=not header)
        (length,) = _HEADER.unpack(header)
        if length > max_bytes:
            raise InputError(f"a local API message of {length} bytes is too large")
        message = json.loads(_recv_exactly(sock, length, at_start=False))
        if not isinstance(message, dict):
            raise InputError("a local API message is not a JSON object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return message, fds


def _recv_exactly(sock: socket.socket, n: int, *, at_start: bool) -> bytes:
    parts: list[bytes] = []
    while n:
        part = sock.recv(min(n, 1 << 20))
        if not part:
            raise ConnectionError("the local API connection closed" if at_start else "cut short")
        parts.append(part)
        n -= len(part)
        at_start = False
    return b"".join(parts)


def peer_identity(sock: socket.socket) -> Identity:
    """The connected process's account as the kernel gives it (SO_PEERCRED: its uid when it
    connected), its name and groups from the system's user database. Nothing the peer sends
    or sets in its environment takes part."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    _pid, uid, _gid = _UCRED.unpack(raw)
    return identity_of_uid(uid)


def peer_login_user(sock: socket.socket) -> str | None:
    """The account that logged in to the connected process's session (its kernel login uid):
    the person behind `sudo`. The process waits for its answer, so its pid is still its own."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, _uid, _gid = _UCRED.unpack(raw)
    return login_user(pid)


def error_message(error: EvidenceError) -> dict[str, Any]:
    """An error as the local API sends it: the message, the remedy and the exit code."""
    return {"message": error.message, "remedy": error.remedy, "exit_code": int(error.exit_code)}


def error_from(fields: Mapping[str, Any]) -> EvidenceError:
    """The error the other side sent, with its exit code."""
    error = EvidenceError(str(fields.get("message", "")), remedy=fields.get("remedy"))
    try:
        error.exit_code = ExitCode(int(fields.get("exit_code", ExitCode.ERROR)))
    except ValueError:
        error.exit_code = ExitCode.ERROR
    return error


def listening_socket(path: Path, environ: Mapping[str, str]) -> tuple[socket.socket, bool]:
    """The socket to serve: the one systemd passed (LISTEN_FDS, for this process), else `path`
    bound here, mode 0660 and the process's group. True when bound here (the caller removes
    the file when it stops)."""
    if environ.get("LISTEN_PID") == str(os.getpid()) and environ.get("LISTEN_FDS", "0") != "0":
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise StorageError("the socket systemd passed is not a Unix stream socket")
        sock.set_inheritable(False)
        return sock, False
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o660)  # bound under the umask (0077): never wider in between
        sock.listen(64)
    except OSError as e:
        sock.close()
        raise StorageError(
            f"cannot serve the local API on {path}: {e.strerror}",
            remedy="set paths.api_socket to a directory the station's account may write, "
            "or install the socket unit (systemd/evidence-agent.socket)",
        ) from e
    return sock, True


def _remove_stale(path: Path) -> None:
    """A socket file left by a daemon that died; one that still answers is refused."""
    try:
        if not stat.S_ISSOCK(os.stat(path, follow_symlinks=False).st_mode):
            raise StorageError(f"{path} exists and is not a socket: not replaced")
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(str(path))
    except OSError as e:
        if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise StorageError(f"cannot check the socket {path}: {e.strerror}") from e
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise StorageError(
        f"another daemon serves the local API on {path}",
        remedy="stop it first, or give this station another paths.api_socket",
    )


def connect(path: Path) -> socket.socket:
    """A connection to the daemon's local API."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(str(path))
    except OSError as e:
        sock.close()
        raise ApiUnavailableError(
            f"cannot reach the station's daemon on {path}: {e.strerror}",
            remedy="is `evidence-agent run` (systemctl status evidence-agent) running, and is "
            "your account in the station's group (docs/review.md, 'People's own accounts')?"
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.EACCES)
            else None,
        ) from e
    return sock
