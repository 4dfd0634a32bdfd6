"""The station's S3 key pair: from the environment, systemd credentials or a shared-credentials file."""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from evidence_agent.errors import ConfigError

SYSTEMD_KEY_ID = "s3-access-key-id"
SYSTEMD_SECRET = "s3-secret-access-key"  # noqa: S105 - a file name, not a secret
SYSTEMD_TOKEN = "s3-session-token"  # noqa: S105 - a file name, not a secret

CREDENTIAL_SOURCES_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass systemd credentials "
    f"{SYSTEMD_KEY_ID} and {SYSTEMD_SECRET} (LoadCredential=), or use an AWS shared "
    "credentials file (AWS_SHARED_CREDENTIALS_FILE, profile AWS_PROFILE); never the config file"
)


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair and where it came from; `repr` never shows the secret."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    source: str = "given by the caller"

    @property
    def redacted_id(self) -> str:
        """Enough of the key id to tell keys apart in a message, not enough to matter."""
        return self.access_key_id[:4] + "…" if len(self.access_key_id) > 4 else "…"


def resolve_credentials(environ: Mapping[str, str] | None = None) -> S3Credentials:
    """Find the S3 key pair: environment, then systemd credentials, then a shared-credentials file.

    Deliberately narrower than boto3's default chain (no instance metadata, no ~/.aws/config
    credential_process): a station's credentials must come from a place its operator chose."""
    env = os.environ if environ is None else environ
    found = _from_environment(env) or _from_systemd(env) or _from_shared_file(env)
    if found is None:
        raise ConfigError("no S3 credentials found", remedy=CREDENTIAL_SOURCES_HELP)
    return found


def _from_environment(env: Mapping[str, str]) -> S3Credentials | None:
    key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key_id and secret:
        return S3Credentials(
            key_id, secret, env.get("AWS_SESSION_TOKEN") or None, "environment (AWS_ACCESS_KEY_ID)"
        )
    if key_id or secret:
        raise ConfigError(
            "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set",
            remedy="set both, or neither and use another credential source",
        )
    return None


def _from_systemd(env: Mapping[str, str]) -> S3Credentials | None:
    """The credentials systemd passes with LoadCredential= (in $CREDENTIALS_DIRECTORY)."""
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if not cred_dir:
        return None
    directory = Path(cred_dir)
    id_path, secret_path = directory / SYSTEMD_KEY_ID, directory / SYSTEMD_SECRET
    if not (id_path.exists() or secret_path.exists()):
        return None
    try:
        key_id = id_path.read_text(encoding="utf-8").strip()
        secret = secret_path.read_text(encoding="utf-8").strip()
        token_path = directory / SYSTEMD_TOKEN
        token = token_path.read_text(encoding="utf-8").strip() if token_path.exists() else None
    except OSError as e:
        raise ConfigError(
            f"cannot read the systemd credentials in {directory}: {e.strerror}",
            remedy=f"provide both {SYSTEMD_KEY_ID} and {SYSTEMD_SECRET} with LoadCredential=",
        ) from e
    if key_id and secret:
        return S3Credentials(key_id, secret, token or None, f"systemd credentials {directory}")
    raise ConfigError(
        f"systemd credentials in {directory}: {SYSTEMD_KEY_ID} or {SYSTEMD_SECRET} is empty",
        remedy="put the access key id and the secret key in those two credentials",
    )


def _from_shared_file(env: Mapping[str, str]) -> S3Credentials | None:
    """A profile of the AWS shared-credentials file: one named by the environment must exist."""
    profile = env.get("AWS_PROFILE") or "default"
    explicit_file = env.get("AWS_SHARED_CREDENTIALS_FILE")
    if explicit_file:
        cred_file = Path(explicit_file).expanduser()
    elif env.get("HOME"):
        cred_file = Path(env["HOME"]) / ".aws" / "credentials"
    else:
        return None
    if not (explicit_file or cred_file.exists()):
        return None
    parser = _read_shared_file(cred_file)
    if parser.has_section(profile):
        section = parser[profile]
        key_id = section.get("aws_access_key_id", "").strip()
        secret = section.get("aws_secret_access_key", "").strip()
        if key_id and secret:
            token = section.get("aws_session_token", "").strip() or None
            return S3Credentials(key_id, secret, token, f"credentials file {cred_file} [{profile}]")
        raise ConfigError(
            f"profile [{profile}] in {cred_file} lacks aws_access_key_id or aws_secret_access_key",
            remedy="add both keys to that profile",
        )
    if explicit_file:
        raise ConfigError(
            f"the AWS shared credentials file {cred_file} has no profile [{profile}]",
            remedy="add the profile or set AWS_PROFILE to one it has",
        )
    return None


def _read_shared_file(cred_file: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with cred_file.open(encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise ConfigError(
            f"cannot read the AWS shared credentials file {cred_file}: {e.strerror}",
            remedy="fix AWS_SHARED_CREDENTIALS_FILE or the file's permissions",
        ) from e
    except configparser.Error as e:
        raise ConfigError(
            f"the AWS shared credentials file {cred_file} is not valid INI ({type(e).__name__})",
            remedy="write it as [profile] with aws_access_key_id and aws_secret_access_key",
        ) from e
    return parser
