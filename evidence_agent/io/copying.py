"""Copying while hashing: a reader thread, the writing thread and a hasher overlap on each chunk.

Used wherever footage moves between a device and a file: the spool copying an original in, a
retrieval copying a stored object out. Each byte is read once; the hash is of the very bytes
read and written. Files are read and written with direct I/O where the file system allows it:
footage is large, moved once and not read again soon, and through the page cache it costs more
CPU than the copy itself on a small or virtualised station, and evicts everything else.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import mmap
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast

# Direct I/O wants buffers, file offsets and lengths aligned to the device's logical block
# (512 or 4096 bytes): page-aligned buffers of whole pages satisfy every device.
ALIGN = mmap.PAGESIZE
_HPAGE_PMD_SIZE = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"
_WRITEBACK_BYTES = 8 << 20  # cached writes: start writeback of every 8 MiB, so the fsync is short
_SYNC_FILE_RANGE_WRITE = 2


def aligned(chunk_bytes: int, align: int = ALIGN) -> int:
    """`chunk_bytes` rounded up to a multiple of `align` (whole pages by default)."""
    return -(-chunk_bytes // align) * align


def io_buffers(count: int, size: int) -> list[memoryview]:
    """`count` page-aligned buffers of `size` bytes (rounded up to whole pages) for direct I/O,
    in one private mapping that asks for transparent huge pages.

    A direct read or write hands the device one segment per physically contiguous run of the
    buffer, and a request takes a bounded number of segments (254 on a virtio disk): a 1 MiB
    buffer of scattered 4 KiB pages is split into two requests, one on huge pages is one. Once
    memory is fragmented (after a large file in tmpfs is deleted, say), ordinary pages are
    scattered, and every request costs the device its fixed overhead: on the machine of
    docs/benchmarks.md a direct read of 1 GiB in 1 MiB chunks took 0.65-0.80 s in 2,048
    requests, and 0.39-0.46 s in 1,024 from huge pages. Where the kernel has no huge page to
    give, the buffers are ordinary pages and only slower."""
    size = aligned(size)
    huge = _huge_page_size()
    total = aligned(count * size, huge)
    # MAP_PRIVATE: a shared anonymous mapping (mmap's default) is tmpfs, without huge pages.
    mapping = mmap.mmap(-1, total + huge, flags=mmap.MAP_PRIVATE)
    address = ctypes.addressof((ctypes.c_char * len(mapping)).from_buffer(mapping))
    start = -address % huge  # the first huge page boundary in the mapping
    with contextlib.suppress(OSError, AttributeError):  # no THP in this kernel: plain pages
        mapping.madvise(mmap.MADV_HUGEPAGE, start, total)
    whole = memoryview(mapping)
    return [whole[start + i * size : start + (i + 1) * size] for i in range(count)]


@functools.cache
def _huge_page_size() -> int:
    try:
        with open(_HPAGE_PMD_SIZE, encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 2 << 20  # x86-64's, and arm64's with 4 KiB pages


class FileReader:
    """Reads a regular file's descriptor into the pump's buffers, directly where the file
    system lets it."""

    def __init__(self, fd: int, *, direct: bool = True) -> None:
        self.fd = fd
        self.direct = direct and _set_direct(fd, True)
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def __call__(self, buf: memoryview) -> memoryview:
        try:
            n = os.readv(self.fd, [buf])
        except OSError as e:
            if not (self.direct and e.errno == errno.EINVAL):
                raise
            # Refused direct (or a short read left the offset unaligned): the rest is read
            # through the cache, from where this read would have started.
            self.direct = _set_direct(self.fd, False)
            n = os.readv(self.fd, [buf])
        return buf[:n]


class FileWriter:
    """Writes chunks to a regular file's descriptor, directly where it can; the caller's fsync
    makes the file durable either way."""

    def __init__(self, fd: int, *, direct: bool = True) -> None:
        self.fd = fd
        self.direct = direct and _set_direct(fd, True)
        self.written = 0
        self._flushed = 0
        self._bounce: memoryview | None = None

    def __call__(self, view: memoryview) -> None:
        # Only whole blocks at aligned offsets can be written directly: the file's last,
        # partial chunk, and everything after a short write, go through the cache.
        if self.direct and len(view) % ALIGN:
            self.direct = _set_direct(self.fd, False)
        if self.direct and self._bounce is not None:
            view = self._bounced(view)
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError as e:
                if not (self.direct and e.errno == errno.EINVAL):
                    raise
                if self._bounce is None:
                    # Memory that is not page-aligned (the bytes of a network stream): most
                    # file systems write it directly only from an aligned copy. Refused
                    # again, the file system will not write this file directly.
                    view = self._bounced(view)
                    continue
                self.direct = _set_direct(self.fd, False)
                continue
            view = view[n:]
            self.written += n
            if view and self.direct:
                self.direct = _set_direct(self.fd, False)
        if not self.direct and self.written - self._flushed >= _WRITEBACK_BYTES:
            _start_writeback(self.fd, self._flushed, self.written - self._flushed)
            self._flushed = self.written

    def _bounced(self, view: memoryview) -> memoryview:
        """`view` copied into an aligned buffer of this writer's."""
        if self._bounce is None or len(self._bounce) < len(view):
            self._bounce = io_buffers(1, len(view))[0]
        self._bounce[: len(view)] = view
        return self._bounce[: len(view)]


def pump(
    read: Callable[[memoryview], memoryview],
    write: Callable[[memoryview], None],
    digest: Callable[[memoryview], None],
    *,
    chunk_bytes: int,
    buffers: int = 4,
    read_error: Callable[[OSError], BaseException] = lambda e: e,
    expected_bytes: int | None = None,
) -> int:
    """Copy until `read` returns nothing; the number of bytes copied.

    `read` is handed a free buffer and returns what it read: in that buffer, or (a stream that
    makes its own bytes, as a network response does) in memory of its own, which then is not
    copied once more. A reader thread reads ahead into free buffers, this thread writes each
    one, a hasher thread runs `digest` on it meanwhile (in order; hashlib releases the GIL on large buffers).
    A buffer is read into again only once it is both written and hashed, so memory is bounded
    by `buffers * chunk_bytes` (rounded up to a huge page: io_buffers). An OSError of `read` is raised here as `read_error(e)`; errors
    of `write` and `digest` are raised as they are.

    A source of `expected_bytes` that fits one chunk (a photo, a short clip) is copied in this
    thread alone, from one buffer of ordinary pages: there is nothing for the threads to overlap,
    and starting them, and faulting in huge pages, would cost more than the copy itself. It is
    still read until `read` returns nothing, should it have grown."""
    if expected_bytes is not None and expected_bytes <= chunk_bytes:
        return _pump_in_turn(read, write, digest, chunk_bytes, read_error)
    free: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
    for buf in io_buffers(buffers, chunk_bytes):
        free.put(buf)
    filled: queue.SimpleQueue[tuple[memoryview, memoryview] | BaseException] = queue.SimpleQueue()

    def read_ahead() -> None:
        while (buf := free.get()) is not None:
            try:
                view = read(buf)
            except BaseException as e:  # noqa: BLE001 - handed to the writing thread, which raises it
                filled.put(e)
                return
            filled.put((buf, view))
            if not view:
                return

    reader = threading.Thread(target=read_ahead, name="copy-read-ahead", daemon=True)
    in_flight: deque[tuple[memoryview, Future[None]]] = deque()
    total = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-hash") as hasher:
        reader.start()
        try:
            while True:
                item = filled.get()
                if isinstance(item, OSError) and (error := read_error(item)) is not item:
                    raise error from item
                if isinstance(item, BaseException):
                    raise item
                buf, view = item
                if not view:
                    break
                in_flight.append((buf, hasher.submit(digest, view)))
                write(view)
                total += len(view)
                # Half the buffers at most wait for the hasher: the reader always has room.
                if len(in_flight) >= max(1, buffers // 2):
                    done, hashed = in_flight.popleft()
                    hashed.result()
                    free.put(done)
            for _, hashed in in_flight:
                hashed.result()
        finally:
            free.put(None)  # the reader stops at its next free buffer (or has stopped)
            reader.join()
    return total


def _pump_in_turn(
    read: Callable[[memoryview], memoryview],
    write: Callable[[memoryview], None],
    digest: Callable[[memoryview], None],
    chunk_bytes: int,
    read_error: Callable[[OSError], BaseException],
) -> int:
    """pump's copy without its threads: read, hash, write, one chunk after the other."""
    # mmap's memory is page-aligned, as direct I/O wants it
    buf = memoryview(mmap.mmap(-1, aligned(chunk_bytes), flags=mmap.MAP_PRIVATE))
    total = 0
    while True:
        try:
            view = read(buf)
        except OSError as e:
            if (error := read_error(e)) is not e:
                raise error from e
            raise
        if not view:
            return total
        digest(view)
        write(view)
        total += len(view)


def _set_direct(fd: int, on: bool) -> bool:
    """Turn direct I/O on or off for an open file; whether it is on afterwards.

    Turning it on fails quietly where the file system does not offer it (or the descriptor is
    not a file); turning it off cannot be refused, and raises should it be."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    if not on:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
    except OSError:
        return False
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return cast(Callable[[int, int, int, int], int], func)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range now (asynchronously): the copy and the disk
    then work at the same time instead of one long fsync at the end. Durability still comes
    from the fsync; this only changes when the work happens."""
    func = _sync_file_range()
    if func is not None:
        func(fd, offset, length, _SYNC_FILE_RANGE_WRITE)
