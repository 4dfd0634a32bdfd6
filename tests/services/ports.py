"""Free loopback TCP ports for services started by the tests."""

from __future__ import annotations

import random
import socket

GRPC_OFFSET = 10000  # SeaweedFS puts every gRPC port at its HTTP port + 10000


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port the kernel says is free now (another process may take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int, *, with_grpc: bool = False, attempts: int = 200) -> int:
    """The first of `count` consecutive free ports (and their +10000 twins when `with_grpc`)."""
    rng = random.SystemRandom()
    for _ in range(attempts):
        base = rng.randrange(20000, 55000 - count)
        candidates = list(range(base, base + count))
        if with_grpc:
            candidates += [p + GRPC_OFFSET for p in range(base, base + count)]
        if all(port_is_free(p) for p in candidates):
            return base
    raise RuntimeError(f"no block of {count} free loopback ports found")
