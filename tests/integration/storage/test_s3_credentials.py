"""Where the S3 key pair may come from: environment, systemd credentials, a shared-credentials file."""

from __future__ import annotations

from pathlib import Path

import pytest

from evidence_agent.adapters.s3.credentials import resolve_credentials
from evidence_agent.errors import ConfigError


def test_environment_comes_first(tmp_path: Path) -> None:
    (tmp_path / "s3-access-key-id").write_text("SYSTEMDKEY\n")
    (tmp_path / "s3-secret-access-key").write_text("systemd-secret\n")
    found = resolve_credentials(
        {
            "AWS_ACCESS_KEY_ID": "ENVKEY",
            "AWS_SECRET_ACCESS_KEY": "env-secret",
            "CREDENTIALS_DIRECTORY": str(tmp_path),
        }
    )
    assert (found.access_key_id, found.secret_access_key) == ("ENVKEY", "env-secret")
    assert "environment" in found.source
    assert "env-secret" not in repr(found)


def test_half_an_environment_pair_is_refused() -> None:
    with pytest.raises(ConfigError, match="only one of AWS_ACCESS_KEY_ID"):
        resolve_credentials({"AWS_ACCESS_KEY_ID": "ENVKEY"})


def test_systemd_credentials(tmp_path: Path) -> None:
    (tmp_path / "s3-access-key-id").write_text("SYSTEMDKEY\n")
    (tmp_path / "s3-secret-access-key").write_text("systemd-secret\n")
    found = resolve_credentials({"CREDENTIALS_DIRECTORY": str(tmp_path), "HOME": str(tmp_path)})
    assert (found.access_key_id, found.secret_access_key) == ("SYSTEMDKEY", "systemd-secret")
    assert found.session_token is None
    assert str(tmp_path) in found.source


def test_systemd_credentials_with_one_missing(tmp_path: Path) -> None:
    (tmp_path / "s3-access-key-id").write_text("SYSTEMDKEY\n")
    with pytest.raises(ConfigError, match="systemd credentials"):
        resolve_credentials({"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_shared_credentials_file_and_profile(tmp_path: Path) -> None:
    file = tmp_path / "credentials"
    file.write_text(
        "[default]\naws_access_key_id = DEFAULTKEY\naws_secret_access_key = d-secret\n"
        "[station]\naws_access_key_id = STATIONKEY\naws_secret_access_key = s-secret\n"
    )
    found = resolve_credentials(
        {"AWS_SHARED_CREDENTIALS_FILE": str(file), "AWS_PROFILE": "station"}
    )
    assert (found.access_key_id, found.secret_access_key) == ("STATIONKEY", "s-secret")
    assert "[station]" in found.source
    default = resolve_credentials({"AWS_SHARED_CREDENTIALS_FILE": str(file)})
    assert default.access_key_id == "DEFAULTKEY"


def test_home_credentials_file_is_found(tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = HOMEKEY\naws_secret_access_key = h-secret\n"
    )
    assert resolve_credentials({"HOME": str(tmp_path)}).access_key_id == "HOMEKEY"


def test_a_profile_that_is_not_there(tmp_path: Path) -> None:
    file = tmp_path / "credentials"
    file.write_text("[default]\naws_access_key_id = K\naws_secret_access_key = s\n")
    with pytest.raises(ConfigError, match=r"no profile \[other\]"):
        resolve_credentials({"AWS_SHARED_CREDENTIALS_FILE": str(file), "AWS_PROFILE": "other"})


def test_nothing_anywhere_names_every_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as failed:
        resolve_credentials({"HOME": str(tmp_path)})
    message = str(failed.value)
    for source in ("AWS_ACCESS_KEY_ID", "s3-access-key-id", "AWS_SHARED_CREDENTIALS_FILE"):
        assert source in message
    assert "never the config file" in message
