"""Fixtures for the USB hot-plug tests: a fresh umockdev testbed per test, under umockdev-wrapper."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.support import service_missing
from tests.umockdev import WRAPPER_COMMAND, Testbed, library_available, preload_active


@pytest.fixture
def testbed() -> Iterator[Testbed]:
    if not library_available():
        service_missing("libumockdev.so.0 missing: apt-get install -y umockdev gir1.2-umockdev-1.0")
    if not preload_active():
        service_missing(f"USB tests must run under umockdev-wrapper: {WRAPPER_COMMAND}")
    before = {t.ident for t in threading.enumerate()}
    bed = Testbed()
    try:
        yield bed
    finally:
        bed.close()
    leaked = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"
