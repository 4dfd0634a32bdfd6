"""The storage tests' fixtures live in tests/integration/conftest.py (shared with the catalog tests).

The helpers the storage tests import by name are re-exported here."""

from __future__ import annotations

from tests.integration.conftest import (
    TEST_MULTIPART_THRESHOLD,
    TEST_PART_SIZE,
    StoreFactory,
    new_seaweedfs,
    store_settings_for,
)

__all__ = [
    "TEST_MULTIPART_THRESHOLD",
    "TEST_PART_SIZE",
    "StoreFactory",
    "new_seaweedfs",
    "store_settings_for",
]
