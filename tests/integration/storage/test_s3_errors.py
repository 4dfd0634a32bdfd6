"""Bad input at the S3 boundary: each failure is one of our errors, with a message naming the fix."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

from evidence_agent.adapters.s3.credentials import S3Credentials
from evidence_agent.adapters.s3.errors import StoreUnavailableError
from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.errors import ConfigError, ExitCode, StorageError
from tests.integration.storage.conftest import TEST_PART_SIZE, StoreFactory, store_settings_for
from tests.services.flaky_proxy import FlakyProxy
from tests.services.ports import free_port
from tests.services.seaweedfs import SeaweedFS

pytestmark = pytest.mark.s3


def spool_file(tmp_path: Path, size: int) -> tuple[Path, str]:
    data = os.urandom(size)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_wrong_secret_key_says_the_credentials_were_rejected(
    make_store: StoreFactory,
    s3_credentials: S3Credentials,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = S3Credentials(s3_credentials.access_key_id, "not-the-secret-0123456789", source="test")
    store = make_store(credentials=wrong)
    source, sha = spool_file(tmp_path, 1000)

    with pytest.raises(StorageError) as failed:
        store.put(sha, source, 1000, None)

    message = str(failed.value)
    assert "rejected the credentials (SignatureDoesNotMatch)" in message
    assert "AWS_ACCESS_KEY_ID" in message  # the remedy says where credentials come from
    assert "not-the-secret" not in message
    assert "not-the-secret" not in caplog.text
    assert s3_credentials.access_key_id not in message  # only a redacted prefix is shown


def test_unknown_access_key_says_the_credentials_were_rejected(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    store = make_store(credentials=S3Credentials("AKNOBODY000000", "whatever", source="test"))
    with pytest.raises(StorageError, match=r"rejected the credentials \(InvalidAccessKeyId\)"):
        store.exists(hashlib.sha256(b"x").hexdigest())


def test_unknown_bucket_is_named_with_how_to_create_it(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    store = make_store(bucket="no-such-bucket-here")
    source, sha = spool_file(tmp_path, 1000)

    with pytest.raises(StorageError) as failed:
        store.put(sha, source, 1000, None)

    assert "bucket 'no-such-bucket-here' does not exist" in str(failed.value)
    assert "--object-lock-enabled-for-bucket" in str(failed.value)


def test_endpoint_down_says_cannot_connect(make_store: StoreFactory, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = make_store(endpoint=endpoint, max_attempts=1)
    source, sha = spool_file(tmp_path, 1000)

    with pytest.raises(StoreUnavailableError) as failed:
        store.put(sha, source, 1000, None)

    assert f"cannot connect to the object store at {endpoint}" in str(failed.value)
    assert "store.endpoint" in str(failed.value)
    assert failed.value.exit_code == ExitCode.ERROR
    assert source.exists()  # nothing is lost from the spool


def test_a_connection_dropped_mid_part_is_retried(
    make_store: StoreFactory, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    with FlakyProxy(seaweedfs.s3_port, drop_after=1024 * 1024) as proxy:
        store = make_store(endpoint=proxy.endpoint, max_attempts=3, max_concurrency=1)
        size = 2 * TEST_PART_SIZE
        source, sha = spool_file(tmp_path, size)
        proxy.drop_next(1)

        stored = store.put(sha, source, size, None)

        assert proxy.dropped == 1
        assert store.verify(sha) == stored


def test_a_server_that_keeps_dropping_the_connection_gives_a_clear_error(
    make_store: StoreFactory, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    with FlakyProxy(seaweedfs.s3_port, drop_after=1024 * 1024) as proxy:
        store = make_store(endpoint=proxy.endpoint, max_attempts=2, max_concurrency=1)
        size = 2 * TEST_PART_SIZE
        source, sha = spool_file(tmp_path, size)
        proxy.drop_next(1000)

        with pytest.raises(StoreUnavailableError) as failed:
            store.put(sha, source, size, None)

        assert "dropped the connection" in str(failed.value)
        assert "resumes where it stopped" in str(failed.value)
        assert source.with_name("clip.mp4.upload.json").exists()  # kept for the resume


def test_a_missing_bucket_setting_is_a_config_error(s3_credentials: S3Credentials) -> None:
    settings = store_settings_for("", "http://127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"store\.bucket"):
        S3ObjectStore(settings, s3_credentials)


def test_a_missing_ca_bundle_is_a_config_error(s3_credentials: S3Credentials) -> None:
    settings = replace(
        store_settings_for("b", "https://127.0.0.1:1"), ca_bundle=Path("/nonexistent/ca.pem")
    )
    with pytest.raises(ConfigError, match="ca_bundle"):
        S3ObjectStore(settings, s3_credentials)


def test_aws_profile_naming_an_unknown_profile_does_not_break_explicit_credentials(
    make_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    assert make_store().exists(hashlib.sha256(b"nothing").hexdigest()) is False
