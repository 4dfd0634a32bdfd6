"""Benchmark of supervised retrieval: a 1 GiB clip copied out with verification, against plain reads.

One stored object, one store per run (`--store`), alternating rounds (the order of the runs is
reversed every other round, so load that comes and goes hits both sides alike).

--store local (the default): the station's local object store.
  read       `cat OBJECT > /dev/null`: the store's plain read rate;
  hash       SHA-256 of the object alone (in this process), the evidence hash;
  blake3     BLAKE3 of the object alone: the ingest hash a retrieval checks (see
             review/retrieval.py), the bound of a verified read;
  copy_*     `cp OBJECT TARGET` (+ `sync` on disk): a plain copy, to the store's disk and to
             memory (/dev/shm), where the target is not the bottleneck;
  retrieve_* review.retrieval.retrieve(): read, BLAKE3 while copying, verify, fsync, rename,
             custody events and receipt (the service the CLI calls), to the same targets.
  Cold: the object's pages dropped from the page cache (as a clip kept for months is read),
  right after it was read (see make_cold).

--store s3: the station's S3 store, on a SeaweedFS server started on loopback for the run (the
  pinned `weed` of the dev extra) with an Object Lock bucket; the clip is stored through the
  station's store as the upload queue stores it (multipart from 1 GiB), the station's
  credentials come from its environment as in production. Every plain read is one whole object
  read without hashing (botocore's check of a stored checksum is off):
  read_aws              `aws s3 cp s3://BUCKET/KEY FILE` with the CLI's defaults (ranged GETs,
                        10 at a time), FILE in /dev/shm (memory) when there is one; not to
                        stdout, where the CLI (1.46) hangs for good here (aws/aws-cli#1775);
  read_aws_single_get   the same with multipart_threshold above the object's size: one GET;
  read_boto3            boto3 get_object, the body read in 8 MiB chunks and dropped;
  copy_*                the same GET, the body written to a file on disk (+ fsync) and in
                        memory: a plain copy to the retrievals' own targets;
  hash, blake3          SHA-256 and BLAKE3 alone of the same bytes, from memory;
  retrieve_*            review.retrieval.retrieve() through `station.store.open()`, to a
                        directory on disk and to /dev/shm.
  The fastest plain read (by median) is the baseline: a fair, not an easy one. Cold: the pages
  of the server's volume files dropped right after they were read (see make_cold). CPU seconds of this
  process (with its children) and of the server are reported: on a small machine the client,
  the server and the hash share the cores, and they explain the times.

Each round is run cold and warm (pages cached). Medians are compared; the target is that
retrieval (to memory) reaches at least 90 % of the plain read rate, cold. Each round's times
and ratio are given too, and the load average, since other work on the machine skews the
figures. JSON on stdout, progress on stderr; exit status 1 when the target is missed.

`--targets memory` leaves out the copies and retrievals to disk: a shorter run, with the disk
left to the reads. (Before the copy's buffers were on huge pages, a retrieval run right after
1 GiB was freed, as after any copy, read at two thirds of its rate: docs/benchmarks.md.)

    .venv/bin/python bench/bench_retrieve.py [--store local|s3] [--size-mib 1024] [--rounds 3]
        [--dir /var/tmp] [--targets both|memory|disk]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from blake3 import blake3
from s3_server import (
    SERVER,
    SeaweedFS,
    aws_command,
    credentials_env,
    process_cpu,
    start_seaweedfs,
    station_settings,
)

from evidence_agent.adapters.local_store import LocalObjectStore
from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.catalog.models import Clip
from evidence_agent.config import build_settings
from evidence_agent.domain.media import MediaInfo
from evidence_agent.domain.roles import Caller, Identity, Role
from evidence_agent.domain.states import ClipState
from evidence_agent.services.cataloguing import ingest_event
from evidence_agent.services.station import Station, open_station
from review.retrieval import CHUNK_BYTES, RetrievalRequest, retrieve

TARGET_RATIO = 0.90
CACHES = ("cold", "warm")
BUCKET = "evidence"
PLAIN_READ_CHUNK = 8 << 20
PAGE_REPORTING_ORDER = "/sys/module/page_reporting/parameters/page_reporting_order"

Plan = list[tuple[str, Callable[[], None]]]
AWS_TIMEOUT_S = 120.0  # a 1 GiB read takes seconds; a run still going after this has hung


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_facts() -> dict[str, Any]:
    """What every benchmark's JSON says of the machine it ran on."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def file_system(path: Path) -> str:
    try:
        out = subprocess.run(
            ["df", "--output=source,fstype", str(path)], capture_output=True, text=True, check=True
        ).stdout.split("\n")[1]
        return " ".join(out.split())
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


class NoProber:
    def probe(self, path: Path) -> MediaInfo:
        raise AssertionError("the benchmark probes nothing")


def make_object(station: Station, work: Path, size: int, *, keep_source: bool = False) -> Clip:
    """A clip of random bytes, stored in the station's store and catalogued as stored, with the
    ingest event a retrieval checks it against."""
    source = work / "clip.bin"
    sha = hashlib.sha256()
    b3 = blake3()
    block = 8 << 20
    with source.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(block, left))
            sha.update(chunk)
            b3.update(chunk)
            f.write(chunk)
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())
    digest = sha.hexdigest()
    station.store.put(digest, source, size, None)
    if not keep_source:
        source.unlink()
    now = datetime.now(UTC)
    clip = Clip(
        id=str(uuid.uuid4()),
        sha256=digest,
        blake3=b3.hexdigest(),  # as the spool records it at ingest
        size=size,
        media_kind="video",
        source_path="DCIM/100MEDIA/BENCH.MP4",
        source_path_bytes=b"DCIM/100MEDIA/BENCH.MP4",
        recorded_start=now,
        recorded_end=now,
        station_id=station.settings.station_id,
        ingested_at=now,
        stored_at=now,
        state=ClipState.STORED,
        retention_until=now,
    )
    with station.transaction() as session:
        session.add(clip)
        session.flush()
        station.record(session, ingest_event(clip, station.actor, "BENCH", None, None))
    return clip


def drop_cache(path: Path) -> None:
    """Evict one file's pages (only that file: nothing system-wide is touched)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def free_page_reporting() -> int | None:
    """The order of the free memory blocks this guest reports to its host (None: it reports
    none). Above the largest order (10) nothing is reported: `echo 11 >` the file for a run
    whose figures do not depend on the host's page faults (see make_cold)."""
    try:
        return int(Path(PAGE_REPORTING_ORDER).read_text())
    except (OSError, ValueError):
        return None


def make_cold(path: Path) -> None:
    """`path` read, then its pages evicted: cold, from the same memory state every time.

    On a virtual machine that hands freed memory back to its host (virtio-balloon free page
    reporting, as on the machine of docs/benchmarks.md), memory taken again later costs a host
    page fault for every page: a cold `cat` of 1 GiB took 0.6 s right after 1 GiB of the page
    cache was freed and 1.9-2.3 s half a second later, so each run's figure depended on what the
    run before it had freed. Evicted just before the run, the pages a read (or a copy to
    memory) needs are at hand, for every side alike, as on a machine without a balloon."""
    warm(path)
    drop_cache(path)


def warm(path: Path) -> None:
    with path.open("rb") as f:
        while f.read(8 << 20):
            pass


def hash_file(path: Path, size: int, chunk: int, expected: str, algorithm: str = "sha256") -> None:
    digest = blake3() if algorithm == "blake3" else hashlib.sha256()
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)
        for offset in range(0, size, chunk):
            digest.update(view[offset : offset + chunk])
        view.release()
    assert digest.hexdigest() == expected


def to_devnull(
    command: list[str], env: dict[str, str] | None = None, timeout: float | None = None
) -> Callable[[], None]:
    """A run of ``command`` with its stdout thrown away; one still going after ``timeout``
    seconds is killed and fails the benchmark instead of stalling it."""

    def run() -> None:
        with open(os.devnull, "wb") as null:
            subprocess.run(command, stdout=null, check=True, env=env, timeout=timeout)

    return run


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu: float  # user + system seconds of this process and the children it waited for
    server_cpu: float | None  # user + system seconds of the S3 server meanwhile


def measure(
    plan: Plan,
    rounds: int,
    size: int,
    prepare: Callable[[str], None],
    server_pid: int | None = None,
) -> dict[str, dict[str, list[Run]]]:
    """Every run of the plan, cold and warm, `rounds` times; `prepare(cache)` precedes each run."""
    runs: dict[str, dict[str, list[Run]]] = {
        cache: {name: [] for name, _ in plan} for cache in CACHES
    }
    for round_no in range(rounds):
        # Alternate the order: load that comes and goes hits every run alike.
        ordered = plan if round_no % 2 == 0 else plan[::-1]
        for cache in CACHES:
            for name, run in ordered:
                prepare(cache)
                server_before = process_cpu(server_pid) if server_pid else None
                before = os.times()
                start = time.perf_counter()
                run()
                seconds = time.perf_counter() - start
                after = os.times()
                cpu = sum(after[:4]) - sum(before[:4])
                server_cpu = (
                    process_cpu(server_pid) - server_before
                    if server_pid and server_before is not None
                    else None
                )
                runs[cache][name].append(Run(seconds, cpu, server_cpu))
                log(
                    f"round {round_no + 1} {cache:4} {name:20} {seconds:6.3f} s "
                    f"{size / seconds / 1e6:7.0f} MB/s  cpu {cpu:5.2f} s"
                    + (f"  server cpu {server_cpu:5.2f} s" if server_cpu is not None else "")
                    + f"  load {os.getloadavg()[0]:.2f}"
                )
    return runs


def summarise(
    runs: dict[str, list[Run]], size: int, reads: list[str], retrieval: str
) -> dict[str, Any]:
    """Medians, rates and ratios of one cache state; the baseline is the fastest plain read."""
    seconds = {name: [r.seconds for r in rs] for name, rs in runs.items()}
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    rates = {name: size / s / 1e6 for name, s in medians.items()}
    baseline = max(reads, key=lambda name: rates[name])
    per_round = [
        size / seconds[retrieval][i] / max(size / seconds[name][i] for name in reads)
        for i in range(len(seconds[retrieval]))
    ]
    result: dict[str, Any] = {
        "median_seconds": {k: round(v, 4) for k, v in medians.items()},
        "mb_per_s": {k: round(v, 1) for k, v in rates.items()},
        "rounds_seconds": {k: [round(s, 4) for s in v] for k, v in seconds.items()},
        "median_cpu_seconds": {
            k: round(statistics.median(r.cpu for r in rs), 2) for k, rs in runs.items()
        },
        "plain_read_baseline": baseline,
        # the target: retrieval (to a target that is not the bottleneck) vs plain read
        "retrieve_vs_plain_read": round(rates[retrieval] / rates[baseline], 3),
        # each round's retrieval against that round's fastest plain read
        "retrieve_vs_plain_read_per_round": [round(r, 3) for r in per_round],
    }
    server = {k: [r.server_cpu for r in rs if r.server_cpu is not None] for k, rs in runs.items()}
    if all(server.values()):
        result["median_server_cpu_seconds"] = {
            k: round(statistics.median(v), 2) for k, v in server.items()
        }
    for kind in ("disk", "memory"):
        if f"copy_{kind}" in rates:
            # verification's own cost: the same copy to the same target without and with it
            result[f"retrieve_vs_plain_copy_{kind}"] = round(
                rates[f"retrieve_{kind}"] / rates[f"copy_{kind}"], 3
            )
    # the hashes alone: SHA-256 (the evidence hash), BLAKE3 (what a retrieval checks)
    result["sha256_alone_vs_plain_read"] = round(rates["hash"] / rates[baseline], 3)
    result["blake3_alone_vs_plain_read"] = round(rates["blake3"] / rates[baseline], 3)
    return result


def reset(targets: Iterable[Path]) -> None:
    """Every run starts alike: empty targets, nothing left to write back."""
    for where in targets:
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir()
    subprocess.run(["sync"], check=True)


def retrieval_runs(station: Station, clip: Clip, targets: dict[str, Path], chunk: int) -> Plan:
    caller = Caller(Identity("bench", os.getuid()), frozenset({Role.CLERK}), None)

    def retrieval(where: Path) -> Callable[[], None]:
        def run() -> None:
            out = where / uuid.uuid4().hex
            request = RetrievalRequest([clip.id], None, out, "benchmark")
            retrieve(station, caller, request, chunk_bytes=chunk)

        return run

    return [(f"retrieve_{kind}", retrieval(where)) for kind, where in targets.items()]


def bench_local(args: argparse.Namespace, work: Path, size: int) -> dict[str, Any]:
    settings = build_settings({}, {"EVIDENCE_AGENT_DATA_DIR": str(work / "data")})
    station = open_station(settings, actor="user:bench", prober=NoProber())
    try:
        assert isinstance(station.store, LocalObjectStore)
        log(f"making a {args.size_mib} MiB clip in {work}")
        clip = make_object(station, work, size)
        b3 = clip.blake3 or ""
        obj = station.store.path_of(clip.sha256)
        targets = retrieval_targets(args, work)
        disk = targets.get("disk")

        def copy(where: Path) -> Callable[[], None]:
            def run() -> None:
                subprocess.run(["cp", str(obj), str(where / uuid.uuid4().hex)], check=True)
                if where == disk:
                    subprocess.run(["sync"], check=True)

            return run

        plan: Plan = [
            ("read", to_devnull(["cat", str(obj)])),
            ("hash", lambda: hash_file(obj, size, args.chunk_mib << 20, clip.sha256)),
            ("blake3", lambda: hash_file(obj, size, args.chunk_mib << 20, b3, "blake3")),
        ]
        retrievals = retrieval_runs(station, clip, targets, args.chunk_mib << 20)
        for (kind, where), retrieval in zip(targets.items(), retrievals, strict=True):
            plan += [(f"copy_{kind}", copy(where)), retrieval]

        def prepare(cache: str) -> None:
            reset(targets.values())
            (make_cold if cache == "cold" else warm)(obj)

        runs = measure(plan, args.rounds, size, prepare)
    finally:
        station.close()
    best = "retrieve_memory" if "memory" in targets else "retrieve_disk"
    return {
        "store": "local",
        "store_file_system": file_system(work),
        **{cache: summarise(runs[cache], size, ["read"], best) for cache in CACHES},
    }


def bench_s3(args: argparse.Namespace, work: Path, size: int) -> dict[str, Any]:
    log("starting SeaweedFS")
    server = start_seaweedfs(work / "seaweedfs", [BUCKET])
    try:
        return _bench_s3(args, work, size, server)
    finally:
        server.stop()


def _bench_s3(args: argparse.Namespace, work: Path, size: int, server: SeaweedFS) -> dict[str, Any]:
    # The station reads its credentials from the environment, as the agent does in production.
    os.environ.update(credentials_env(server))
    settings = station_settings(server, BUCKET, work / "data")
    station = open_station(settings, actor="user:bench", prober=NoProber())
    try:
        log(f"making a {args.size_mib} MiB clip in {work}, storing it in {server.endpoint}")
        clip = make_object(station, work, size, keep_source=True)
        b3 = clip.blake3 or ""
        source = work / "clip.bin"
        assert isinstance(station.store, S3ObjectStore)
        key = station.store.key_for(clip.sha256)
        # Plain reads hash nothing: botocore would check a single-part object's stored SHA-256.
        client = server.client(read_timeout=120, response_checksum_validation="when_required")
        head = client.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        assert head["ContentLength"] == size
        aws_config = work / "aws-single-get.ini"
        # One GET: the CLI splits downloads into ranged GETs above multipart_threshold.
        aws_config.write_text(f"[default]\ns3 =\n  multipart_threshold = {2 * size + (8 << 20)}\n")
        aws_env = {
            **os.environ,
            **credentials_env(server),
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }
        targets = retrieval_targets(args, work)
        aws_copy = targets.get("memory", work) / "aws-copy"
        aws_cp = aws_command(
            server, "cp", "--only-show-errors", f"s3://{BUCKET}/{key}", str(aws_copy)
        )

        def read_aws(env: dict[str, str]) -> Callable[[], None]:
            run = to_devnull(aws_cp, env, AWS_TIMEOUT_S)

            def read() -> None:
                run()
                assert aws_copy.stat().st_size == size
                aws_copy.unlink()

            return read

        def read_boto3() -> None:
            body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
            got = 0
            while data := body.read(PLAIN_READ_CHUNK):
                got += len(data)
            body.close()
            assert got == size

        def copy_boto3(where: Path) -> Callable[[], None]:
            def run() -> None:
                body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
                with (where / uuid.uuid4().hex).open("wb") as f:
                    while data := body.read(PLAIN_READ_CHUNK):
                        f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                body.close()

            return run

        plan: Plan = [
            ("read_aws", read_aws(aws_env)),
            ("read_aws_single_get", read_aws({**aws_env, "AWS_CONFIG_FILE": str(aws_config)})),
            ("read_boto3", read_boto3),
            ("hash", lambda: hash_file(source, size, args.chunk_mib << 20, clip.sha256)),
            ("blake3", lambda: hash_file(source, size, args.chunk_mib << 20, b3, "blake3")),
            *((f"copy_{kind}", copy_boto3(where)) for kind, where in targets.items()),
            *retrieval_runs(station, clip, targets, args.chunk_mib << 20),
        ]
        volumes = [p for p in (server.data_dir / "data").rglob("*") if p.is_file()]

        def prepare(cache: str) -> None:
            reset(targets.values())
            warm(source)  # `hash` reads the bytes from memory, cold or warm
            for path in volumes:
                (make_cold if cache == "cold" else warm)(path)

        assert server.process is not None
        runs = measure(plan, args.rounds, size, prepare, server.process.pid)
    finally:
        station.close()
    best = "retrieve_memory" if "memory" in targets else "retrieve_disk"
    reads = ["read_aws", "read_aws_single_get", "read_boto3"]
    return {
        "store": "s3",
        "server": SERVER,
        "object": {
            "checksum_type": head.get("ChecksumType"),  # COMPOSITE: stored by multipart upload
            "parts": int(str(head.get("ETag", "")).strip('"').partition("-")[2] or 1),
        },
        "store_file_system": file_system(work),
        **{cache: summarise(runs[cache], size, reads, best) for cache in CACHES},
    }


def retrieval_targets(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """The directories copied and retrieved to: on the work directory's disk, in memory."""
    targets: dict[str, Path] = {}
    if args.targets in ("both", "disk"):
        targets["disk"] = work / "targets"
    shm = Path("/dev/shm")
    if args.targets in ("both", "memory") and shm.is_dir():
        targets["memory"] = Path(tempfile.mkdtemp(prefix=f"{work.name}-", dir=shm))
    if not targets:
        raise SystemExit("no memory target: /dev/shm is missing; run with --targets disk")
    return targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=("local", "s3"), default="local")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-mib", type=int, default=CHUNK_BYTES >> 20)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: $TMPDIR)")
    parser.add_argument(
        "--targets",
        choices=("both", "memory", "disk"),
        default="both",
        help="where copies and retrievals go; memory alone keeps the disk to the reads",
    )
    args = parser.parse_args()
    size = args.size_mib << 20

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-retrieve-", dir=args.dir))
    try:
        bench = bench_s3 if args.store == "s3" else bench_local
        results = bench(args, work, size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for leftover in Path("/dev/shm").glob(f"{work.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    load_after = os.getloadavg()
    passed = results["cold"]["retrieve_vs_plain_read"] >= TARGET_RATIO
    report = {
        "benchmark": "retrieve",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            **machine_facts(),
            "openssl": ssl.OPENSSL_VERSION,
            "store_file_system": results.pop("store_file_system"),
            "free_page_reporting_order": free_page_reporting(),
            # other work on the machine skews every figure; ratios within a round less so
            "load_average_1m": [round(load_before[0], 2), round(load_after[0], 2)],
            "load_average_1_5_15m": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in load_after],
            },
        },
        "size_bytes": size,
        "rounds": args.rounds,
        "chunk_bytes": args.chunk_mib << 20,
        "targets": args.targets,
        "target": f"retrieve >= {TARGET_RATIO:.0%} of the store's plain read rate (cold cache)",
        **results,
        "passed": passed,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
