"""Fakes of the ports for review tests: an in-memory object store, a fixed clock, a caller."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from evidence_agent.catalog.models import Clip
from evidence_agent.domain.media import MediaInfo
from evidence_agent.domain.roles import Caller, Identity, Role
from evidence_agent.errors import IntegrityError, NotFoundError
from evidence_agent.ports import StoredObject

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class MemoryStore:
    """The object store port, in memory; `objects` may be edited to simulate corruption."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(
        self, sha256: str, source: Path, size: int, retain_until: datetime | None
    ) -> StoredObject:
        self.objects.setdefault(sha256, source.read_bytes())
        return self.verify(sha256)

    def verify(self, sha256: str) -> StoredObject:
        data = self.objects.get(sha256)
        if data is None:
            raise IntegrityError(f"{sha256} missing")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(f"{sha256} corrupt")
        return StoredObject(sha256, len(data), actual)

    def open(self, sha256: str) -> BinaryIO:
        if sha256 not in self.objects:
            raise NotFoundError(f"{sha256} not stored")
        return io.BytesIO(self.objects[sha256])

    def exists(self, sha256: str) -> bool:
        return sha256 in self.objects

    def iter_keys(self) -> Iterator[str]:
        yield from sorted(self.objects)

    def describe(self) -> str:
        return "memory store"

    def delete_object(self, sha256: str) -> None:  # ports.ObjectDeleting
        self.objects.pop(sha256, None)


class NoProber:
    def probe(self, path: Path) -> MediaInfo:
        raise AssertionError("not used")


class FixedClock:
    def __init__(self, now: datetime = NOW) -> None:
        self.time = now

    def now(self) -> datetime:
        return self.time


def caller(*roles: Role, user: str = "alice") -> Caller:
    return Caller(Identity(user, 1000, frozenset()), frozenset(roles), None)


AddClip = Callable[..., Clip]
