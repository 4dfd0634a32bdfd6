"""Helpers shared by the test suite."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def service_missing(reason: str) -> NoReturn:
    """Skip on a developer machine; fail under CI, where a skip would hide a broken install."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"required service missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)
