"""A loopback TCP proxy that can drop connections mid-request, to test a server dropping a part."""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from types import TracebackType


class FlakyProxy:
    """Forwards 127.0.0.1:<port> to a target; the next `drops` connections that send more than
    `drop_after` bytes are cut there (both sides closed), like a server dying mid-part."""

    def __init__(self, target_port: int, *, drop_after: int = 1024 * 1024) -> None:
        self.target = ("127.0.0.1", target_port)
        self.drop_after = drop_after
        self.drops = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def drop_next(self, count: int) -> None:
        with self._lock:
            self.drops = count

    def start(self) -> None:
        thread = threading.Thread(target=self._accept_loop, name="flaky-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._pipe, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        sent = 0
        doomed = False
        with client, upstream, selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.1):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    sink: socket.socket = key.data
                    try:
                        data = source.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    if source is client:
                        sent += len(data)
                        if not doomed and sent > self.drop_after:
                            with self._lock:
                                if self.drops > 0:
                                    self.drops -= 1
                                    self.dropped += 1
                                    doomed = True
                        if doomed:
                            # Cut mid-request: reset both sides, as a crashing server would.
                            client.setsockopt(
                                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                            )
                            return
                    try:
                        sink.sendall(data)
                    except OSError:
                        return

    def __enter__(self) -> FlakyProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
