"""Benchmark of the copy's direct reads: buffers on huge pages against ordinary pages.

A cold 1 GiB file read with O_DIRECT in 1 MiB chunks through four buffers, as a retrieval reads
a stored object, once into buffers of copying.io_buffers (one private mapping on huge pages)
and once into four separate shared anonymous mappings (what the copy used before), with the
requests the device received counted from /sys/block/DEV/stat. Each run is preceded by the
same state of memory: the file read into the page cache and evicted (as bench_retrieve.py's
make_cold), then (unless --no-fragment) a 1 GiB file written to /dev/shm and deleted,
as every retrieval to memory leaves it. `cat FILE > /dev/null` is timed alike for reference.

    .venv/bin/python bench/bench_direct_read.py [--size-mib 1024] [--rounds 5] [--dir /var/tmp]
        [--no-fragment]

JSON on stdout (medians, each round, requests per run, the machine), progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_retrieve import file_system, free_page_reporting, log, machine_facts, make_cold

from evidence_agent.io.copying import io_buffers

CHUNK = 1 << 20
BUFFERS = 4


def block_device(path: Path) -> Path | None:
    """/sys/block/DEV of the disk holding `path` (a partition's parent disk), if any."""
    dev = os.stat(path).st_dev
    link = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not link.exists():
        return None
    real = link.resolve()
    return real if (real / "queue").exists() else real.parent


def reads_completed(device: Path | None) -> int:
    return int((device / "stat").read_text().split()[0]) if device else 0


def read_direct(path: Path, buffers: list[memoryview] | list[mmap.mmap]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        i = 0
        while os.readv(fd, [buffers[i % len(buffers)]]):
            i += 1
    finally:
        os.close(fd)


def fragment(size: int) -> None:
    """A `size` file written to /dev/shm and deleted: memory as a retrieval to memory leaves it."""
    with tempfile.NamedTemporaryFile(dir="/dev/shm") as f:
        block = os.urandom(8 << 20)
        for _ in range(size // len(block)):
            f.write(block)
        f.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: $TMPDIR)")
    parser.add_argument("--no-fragment", dest="fragment", action="store_false")
    args = parser.parse_args()
    size = args.size_mib << 20

    work = Path(tempfile.mkdtemp(prefix="bench-direct-read-", dir=args.dir))
    try:
        path = work / "object.bin"
        with path.open("wb") as f:
            for _ in range(size // (8 << 20)):
                f.write(os.urandom(8 << 20))
            f.flush()
            os.fsync(f.fileno())
        device = block_device(path)

        def cat() -> None:
            with open(os.devnull, "wb") as null:
                subprocess.run(["cat", str(path)], stdout=null, check=True)

        plan: list[tuple[str, Callable[[], None]]] = [
            ("cat", cat),
            ("direct_huge_pages", lambda: read_direct(path, io_buffers(BUFFERS, CHUNK))),
            (
                "direct_plain_pages",
                lambda: read_direct(path, [mmap.mmap(-1, CHUNK) for _ in range(BUFFERS)]),
            ),
        ]
        seconds: dict[str, list[float]] = {name: [] for name, _ in plan}
        requests: dict[str, list[int]] = {name: [] for name, _ in plan}
        for round_no in range(args.rounds):
            for name, run in plan if round_no % 2 == 0 else plan[::-1]:
                make_cold(path)
                if args.fragment:
                    fragment(size)
                before = reads_completed(device)
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
                requests[name].append(reads_completed(device) - before)
                log(
                    f"round {round_no + 1} {name:20} {seconds[name][-1]:6.3f} s "
                    f"{requests[name][-1]:6d} requests"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    medians = {name: statistics.median(times) for name, times in seconds.items()}
    report: dict[str, Any] = {
        "benchmark": "direct_read",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            **machine_facts(),
            "file_system": file_system(Path(args.dir or tempfile.gettempdir())),
            "block_device": device.name if device else None,
            "max_segments": _queue(device, "max_segments"),
            "max_sectors_kb": _queue(device, "max_sectors_kb"),
            "free_page_reporting_order": free_page_reporting(),
            "transparent_hugepage": _thp(),
        },
        "size_bytes": size,
        "chunk_bytes": CHUNK,
        "buffers": BUFFERS,
        "fragmented_before_each_run": args.fragment,
        "median_seconds": {k: round(v, 4) for k, v in medians.items()},
        "mb_per_s": {k: round(size / v / 1e6, 1) for k, v in medians.items()},
        "rounds_seconds": {k: [round(s, 4) for s in v] for k, v in seconds.items()},
        "requests": requests,
        "huge_vs_plain_pages": round(
            medians["direct_plain_pages"] / medians["direct_huge_pages"], 3
        ),
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _queue(device: Path | None, name: str) -> int | None:
    try:
        return int((device / "queue" / name).read_text()) if device else None
    except (OSError, ValueError):
        return None


def _thp() -> str | None:
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
