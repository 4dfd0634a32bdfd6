"""A tiny sd_notify(3) client: READY, WATCHDOG, STOPPING and STATUS over $NOTIFY_SOCKET; no-op elsewhere."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

logger = logging.getLogger(__name__)


def socket_address(value: str) -> str | bytes:
    """$NOTIFY_SOCKET as an AF_UNIX address: a leading '@' names an abstract socket."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds within which systemd wants a WATCHDOG=1 (WatchdogSec=), or None if it does not.

    Ping at half this interval. WATCHDOG_PID, when set, must be this process (as sd_watchdog_enabled).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


class SystemdNotifier:
    """Sends state to the service manager; every method is a no-op when not run as Type=notify."""

    def __init__(self, notify_socket: str | None) -> None:
        self._address = socket_address(notify_socket) if notify_socket else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send "KEY=value" lines in one datagram; True when sent (False when disabled or failed).

        A failure is logged, not raised: losing a status line must not stop ingest.
        """
        if self._address is None:
            return False
        message = "\n".join(assignments).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._sock.sendto(message, self._address)
            except OSError as e:
                if not self._warned:
                    logger.warning("cannot notify systemd through $NOTIFY_SOCKET: %s", e)
                    self._warned = True
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([_status(status)] if status is not None else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([_status(status)] if status is not None else []))

    def status(self, text: str) -> bool:
        return self.notify(_status(text))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _status(text: str) -> str:
    # One line: a newline would start a new (unintended) assignment.
    return "STATUS=" + " ".join(text.splitlines())
