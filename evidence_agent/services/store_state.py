"""What one station learns about its object store as it runs: when it was away, when it passed the self-test."""

from __future__ import annotations

import threading
import time
import weakref
from datetime import datetime
from typing import Any

AWAY_SECONDS = 30.0  # after the store was unreachable, the worker leaves clips to the retry


class StoreAvailability:
    """Per store of one station: until when uploads are left to the retry because the store was
    unreachable. Keyed weakly by the store, so a store replaced on the station starts afresh."""

    def __init__(self) -> None:
        self._until: weakref.WeakKeyDictionary[Any, tuple[float, str]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def mark(self, store: object, reason: str, seconds: float = AWAY_SECONDS) -> None:
        with self._lock:
            self._until[store] = (time.monotonic() + seconds, reason)

    def clear(self, store: object) -> None:
        with self._lock:
            self._until.pop(store, None)

    def reason(self, store: object) -> str | None:
        """Why the store is away, or None when it is not (any more)."""
        with self._lock:
            entry = self._until.get(store)
        if entry is None or time.monotonic() >= entry[0]:
            return None
        return entry[1]


class SelfTestPasses:
    """Per store of one station: when it passed the evidence-mode self-test in this process.

    Keyed weakly by the store, so a store replaced on the station is tested afresh."""

    def __init__(self) -> None:
        self._passed: weakref.WeakKeyDictionary[Any, datetime] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        # Held while the self-test runs: uploads starting together run one, not one each.
        self.running = threading.Lock()

    def passed(self, store: object) -> bool:
        with self._lock:
            return store in self._passed

    def remember(self, store: object, when: datetime) -> None:
        with self._lock:
            self._passed[store] = when
