"""The copy's I/O buffers, on this machine's kernel: aligned for direct I/O, huge pages asked for."""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import mmap
import os
import re
import threading
from pathlib import Path

import pytest

from evidence_agent.io.copying import FileReader, io_buffers, pump

THP = Path("/sys/kernel/mm/transparent_hugepage")


def address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def mapping_of(start: int) -> dict[str, str]:
    """The /proc/self/smaps fields of the mapping that holds `start`."""
    text = Path("/proc/self/smaps").read_text()
    for block in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", text):
        lo, hi = (int(x, 16) for x in block.split()[0].split("-"))
        if lo <= start < hi:
            fields = {}
            for line in block.splitlines()[1:]:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
            return fields
    raise AssertionError(f"no mapping holds {start:#x}")


def pmd_huge_pages_enabled() -> bool:
    """Whether this kernel gives huge pages of the PMD size to a mapping that asks for them
    (a newer kernel also has a switch per size, which may say "inherit")."""
    if not (THP / "enabled").exists():
        return False
    setting = (THP / "enabled").read_text()
    size_kib = int((THP / "hpage_pmd_size").read_text()) >> 10
    per_size = THP / f"hugepages-{size_kib}kB" / "enabled"
    if per_size.exists() and "[inherit]" not in (own := per_size.read_text()):
        setting = own
    return "[never]" not in setting


def test_buffers_are_whole_pages_page_aligned_and_apart() -> None:
    buffers = io_buffers(4, 64 * 1024 + 1)
    assert [len(b) for b in buffers] == [64 * 1024 + mmap.PAGESIZE] * 4
    starts = [address(b) for b in buffers]
    assert all(s % mmap.PAGESIZE == 0 for s in starts)
    assert starts == sorted(starts)
    assert all(b - a >= len(buffers[0]) for a, b in itertools.pairwise(starts))
    for i, b in enumerate(buffers):
        b[:] = bytes([i]) * len(b)
    assert [b[0] for b in buffers] == [0, 1, 2, 3]  # no buffer overwrote another


def test_buffers_ask_for_huge_pages_where_the_kernel_has_them() -> None:
    """A private mapping, advised and aligned so that the kernel may back it with huge pages:
    a direct request then takes a buffer in one segment instead of one per 4 KiB page."""
    buffers = io_buffers(4, 1 << 20)
    start = address(buffers[0])
    fields = mapping_of(start)
    if not pmd_huge_pages_enabled():
        assert fields.get("THPeligible", "0") == "0"
        return
    huge = int((THP / "hpage_pmd_size").read_text())
    assert start % huge == 0
    assert "hg" in fields["VmFlags"].split()  # MADV_HUGEPAGE
    assert fields["THPeligible"] == "1"


def test_a_direct_read_into_the_buffers_is_exact(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 12345)
    path = tmp_path / "object"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        read = FileReader(fd)
        assert read.direct  # the test disk takes direct I/O (see test_ingest.py)
        got = bytearray()
        buffers = io_buffers(2, 1 << 20)
        i = 0
        while view := read(buffers[i % 2]):
            got += view
            i += 1
    finally:
        os.close(fd)
    assert bytes(got) == data


@pytest.mark.parametrize("expected", [None, 4, 1 << 20], ids=["unknown", "less", "chunk"])
def test_a_source_that_grows_past_what_was_expected_is_copied_whole(expected: int | None) -> None:
    """The copy in turn (a source expected to fit one chunk) still reads to the end."""
    chunks = [os.urandom(1 << 20), os.urandom(1 << 20), os.urandom(77)]
    left = list(chunks)
    threads: set[str] = set()

    def read(buf: memoryview) -> memoryview:
        threads.add(threading.current_thread().name)
        if not left:
            return buf[:0]
        data = left.pop(0)
        buf[: len(data)] = data
        return buf[: len(data)]

    written = bytearray()
    hashed = hashlib.sha256()
    total = pump(read, written.extend, hashed.update, chunk_bytes=1 << 20, expected_bytes=expected)
    whole = b"".join(chunks)
    assert total == len(whole) and bytes(written) == whole
    assert hashed.hexdigest() == hashlib.sha256(whole).hexdigest()
    # a small file is copied by the calling thread alone; anything else by a reader thread
    assert (threads == {threading.current_thread().name}) == (expected is not None)
