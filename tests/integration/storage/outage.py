"""A loopback TCP forwarder to the object store that can be switched off (connections refused) and on."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType


class StoreOutage:
    """Forwards 127.0.0.1:<port> to the store. `down()` closes the listening socket and cuts every
    open connection, so a client sees "connection refused", as with a store that is switched
    off; `up()` listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener: socket.socket | None = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting: threading.Thread | None = None
        self._start_accepting()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start_accepting(self) -> None:
        listener = self._listener
        assert listener is not None
        listener.settimeout(0.1)  # here, not in the thread: down() may close it at once
        thread = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True)
        thread.start()
        self._accepting = thread

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            open_sockets = list(self._open)
        if listener is not None:
            listener.close()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._accepting is not None:
            self._accepting.join(timeout=5)

    def up(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            self._listener = socket.create_server(("127.0.0.1", self.port))
        self._start_accepting()

    def close(self) -> None:
        self._stop.set()
        self.down()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
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
        with self._lock:
            self._open.update((client, upstream))
        try:
            with client, upstream, selectors.DefaultSelector() as sel:
                sel.register(client, selectors.EVENT_READ, upstream)
                sel.register(upstream, selectors.EVENT_READ, client)
                while not self._stop.is_set():
                    for key, _ in sel.select(timeout=0.1):
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        sink: socket.socket = key.data
                        try:
                            data = source.recv(65536)
                            if not data:
                                return
                            sink.sendall(data)
                        except OSError:
                            return
        finally:
            with self._lock:
                self._open.difference_update((client, upstream))

    def __enter__(self) -> StoreOutage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
