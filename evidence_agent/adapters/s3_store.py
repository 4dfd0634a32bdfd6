"""Evidence objects in S3-compatible storage: Object Lock COMPLIANCE, server-checked SHA-256, no overwrite."""

from __future__ import annotations

import base64
import configparser
import contextlib
import functools
import hashlib
import hmac
import io
import json
import logging
import math
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, cast

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

from evidence_agent.config import StoreSettings
from evidence_agent.errors import (
    ConfigError,
    EvidenceError,
    InputError,
    IntegrityError,
    NotFoundError,
    StorageError,
)
from evidence_agent.ports import Clock, StoredObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# Below this one PUT carries the ingest SHA-256 and the server keeps the full-object SHA-256:
# no local hashing and the strongest record; an interrupted PUT is sent again whole. Above,
# multipart uploads resume part by part (recorders write files of up to 4 GiB).
DEFAULT_MULTIPART_THRESHOLD = 1024 * MiB
DEFAULT_PART_SIZE = 8 * MiB  # with 8 parts in flight: 64 MiB of buffers per upload
MIN_PART_SIZE = 5 * MiB  # S3's floor for every part but the last (SeaweedFS enforces it too)
MAX_PARTS = 10_000
READ_CHUNK = 1 * MiB
STATE_FORMAT = "evidence-agent.s3-multipart/1"
PART_SIZE_METADATA = "part-size"  # x-amz-meta-part-size: lets verify() recompute the composite

SYSTEMD_KEY_ID = "s3-access-key-id"
SYSTEMD_SECRET = "s3-secret-access-key"  # noqa: S105 - a file name, not a secret
SYSTEMD_TOKEN = "s3-session-token"  # noqa: S105 - a file name, not a secret

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ARTEFACT_KEY = re.compile(r"[A-Za-z0-9!_.*'()/-]+")

_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
    }
)
_DIGEST_CODES = frozenset(
    {
        "BadDigest",
        "InvalidDigest",
        "XAmzContentSHA256Mismatch",
        "XAmzContentChecksumMismatch",
        "InvalidChecksum",
    }
)
_BUSY_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
)
_REFUSAL_CODES = frozenset({"AccessDenied", "InvalidRequest", "ObjectLocked", "MethodNotAllowed"})


class StoreUnavailableError(StorageError):
    """The store could not be reached, or dropped the connection, even after retries.

    Transient by nature: the upload queue keeps the clip in the spool and tries again later;
    an interrupted multipart upload resumes from its state file."""


class ObjectLockedError(StorageError):
    """The store keeps an object under Object Lock (a retention date not yet passed, or a legal
    hold): it was not deleted, and nothing else under its key was either."""


# Object Lock has no "for ever": a clip kept for good (class "permanent") is locked in COMPLIANCE
# mode until this date. Far enough to mean "permanently", near enough for every implementation to
# represent it (some keep times as 64-bit nanoseconds since 1970, which run out in 2262). Like any
# COMPLIANCE date it can never be shortened, not even when the clip later leaves the class.
PERMANENT_RETAIN_UNTIL = datetime(2200, 1, 1, tzinfo=UTC)


# --- credentials -------------------------------------------------------------------------------


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


_CREDENTIAL_SOURCES_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass systemd credentials "
    f"{SYSTEMD_KEY_ID} and {SYSTEMD_SECRET} (LoadCredential=), or use an AWS shared "
    "credentials file (AWS_SHARED_CREDENTIALS_FILE, profile AWS_PROFILE); never the config file"
)


def resolve_credentials(environ: Mapping[str, str] | None = None) -> S3Credentials:
    """Find the S3 key pair: environment, then systemd credentials, then a shared-credentials file.

    Deliberately narrower than boto3's default chain (no instance metadata, no ~/.aws/config
    credential_process): a station's credentials must come from a place its operator chose."""
    env = os.environ if environ is None else environ
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

    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        directory = Path(cred_dir)
        id_path, secret_path = directory / SYSTEMD_KEY_ID, directory / SYSTEMD_SECRET
        if id_path.exists() or secret_path.exists():
            try:
                key_id = id_path.read_text(encoding="utf-8").strip()
                secret = secret_path.read_text(encoding="utf-8").strip()
                token_path = directory / SYSTEMD_TOKEN
                token = (
                    token_path.read_text(encoding="utf-8").strip() if token_path.exists() else None
                )
            except OSError as e:
                raise ConfigError(
                    f"cannot read the systemd credentials in {directory}: {e.strerror}",
                    remedy=f"provide both {SYSTEMD_KEY_ID} and {SYSTEMD_SECRET} with LoadCredential=",
                ) from e
            if key_id and secret:
                return S3Credentials(
                    key_id, secret, token or None, f"systemd credentials {directory}"
                )
            raise ConfigError(
                f"systemd credentials in {directory}: {SYSTEMD_KEY_ID} or {SYSTEMD_SECRET} is empty",
                remedy="put the access key id and the secret key in those two credentials",
            )

    profile = env.get("AWS_PROFILE") or "default"
    explicit_file = env.get("AWS_SHARED_CREDENTIALS_FILE")
    if explicit_file:
        cred_file = Path(explicit_file).expanduser()
    elif env.get("HOME"):
        cred_file = Path(env["HOME"]) / ".aws" / "credentials"
    else:
        cred_file = None
    if cred_file is not None and (explicit_file or cred_file.exists()):
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
        if parser.has_section(profile):
            section = parser[profile]
            key_id = section.get("aws_access_key_id", "").strip()
            secret = section.get("aws_secret_access_key", "").strip()
            if key_id and secret:
                token = section.get("aws_session_token", "").strip() or None
                return S3Credentials(
                    key_id, secret, token, f"credentials file {cred_file} [{profile}]"
                )
            raise ConfigError(
                f"profile [{profile}] in {cred_file} lacks aws_access_key_id or aws_secret_access_key",
                remedy="add both keys to that profile",
            )
        if explicit_file:
            raise ConfigError(
                f"the AWS shared credentials file {cred_file} has no profile [{profile}]",
                remedy="add the profile or set AWS_PROFILE to one it has",
            )
    raise ConfigError("no S3 credentials found", remedy=_CREDENTIAL_SOURCES_HELP)


# --- small pure helpers --------------------------------------------------------------------------


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_sha256(part_digests: list[bytes]) -> str:
    """S3's COMPOSITE checksum of a multipart object: base64(sha256(d1 || d2 || ...)) + "-N"."""
    return f"{_b64(hashlib.sha256(b''.join(part_digests)).digest())}-{len(part_digests)}"


def _digest_of(sha256: str) -> bytes:
    if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
        raise InputError(f"{sha256!r} is not a lowercase hex SHA-256 (64 characters)")
    return bytes.fromhex(sha256)


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


@dataclass(frozen=True)
class PartProgress:
    """One part of a multipart upload is on the server (`reused`: from an earlier, interrupted run)."""

    number: int
    total: int
    size: int
    reused: bool


@dataclass
class _UploadState:
    """What survives a restart: the upload id and the parts the server confirmed with their digests."""

    bucket: str
    key: str
    sha256: str
    size: int
    part_size: int
    upload_id: str
    parts: dict[int, tuple[str, str]]  # number -> (ETag, base64 SHA-256 the server validated)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": STATE_FORMAT,
                "bucket": self.bucket,
                "key": self.key,
                "sha256": self.sha256,
                "size": self.size,
                "part_size": self.part_size,
                "upload_id": self.upload_id,
                "parts": {
                    str(n): {"etag": etag, "checksum_sha256": checksum}
                    for n, (etag, checksum) in sorted(self.parts.items())
                },
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> _UploadState:
        raw = json.loads(text)
        if raw.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown format {raw.get('format')!r}")
        return cls(
            bucket=str(raw["bucket"]),
            key=str(raw["key"]),
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            part_size=int(raw["part_size"]),
            upload_id=str(raw["upload_id"]),
            parts={
                int(n): (str(p["etag"]), str(p["checksum_sha256"])) for n, p in raw["parts"].items()
            },
        )


def _write_atomically(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace `path` atomically; `durable` also fsyncs it (a crash may otherwise leave the old one)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _ServerSaid(Exception):
    """An S3 error code the caller asked to handle itself."""

    def __init__(self, code: str, error: ClientError) -> None:
        super().__init__(code)
        self.code = code
        self.error = error


def _code_of(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", "")) or str(
        e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


class _StreamReader(io.RawIOBase):
    """A raw stream over a botocore StreamingBody that turns its failures into our errors.

    `read` hands over the bytes the body returns as they are: unbuffered, and not copied once
    more (for a GB clip, a copy costs about as much CPU as hashing it)."""

    def __init__(self, body: Any, describe_error: Callable[[Exception], EvidenceError]) -> None:
        self._body = body
        self._describe_error = describe_error

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            data: bytes = self._body.read(None if size is None or size < 0 else size)
        except (BotoCoreError, ClientError) as e:
            raise self._describe_error(e) from e
        return data

    def readall(self) -> bytes:
        return self.read()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(BotoCoreError, OSError):
            self._body.close()
        super().close()


# --- the adapter -------------------------------------------------------------------------------


class S3ObjectStore:
    """The ObjectStore port over boto3, for any S3 store with Object Lock (SeaweedFS, Ceph RGW, AWS).

    Objects live at `<prefix>sha256/<aa>/<bb>/<sha256>`, each written once with COMPLIANCE
    retention and a SHA-256 the server checks against the bytes it receives. Every boto3/botocore
    failure leaves this class as a StorageError (StoreUnavailableError when transient),
    IntegrityError or ConfigError whose message says what to fix."""

    def __init__(
        self,
        settings: StoreSettings,
        credentials: S3Credentials | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 8,
        max_attempts: int = 5,
        resume_attempts: int = 3,
        resume_backoff: float = 1.0,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
    ) -> None:
        """`credentials` defaults to `resolve_credentials(environ)`; the config file never holds any.

        `max_attempts` is botocore's retry budget per request (standard mode, exponential backoff);
        `resume_attempts` is how many times a multipart upload starts over from its state file
        after the store went away mid-upload, waiting `resume_backoff` * 2**n seconds (jittered)."""
        if not settings.bucket:
            raise ConfigError(
                "store.bucket is not set", remedy="name the evidence bucket in [store] bucket"
            )
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"the multipart part size must be at least {MIN_PART_SIZE} bytes")
        if multipart_threshold < 1 or max_concurrency < 1 or max_attempts < 1:
            raise ConfigError("multipart threshold, concurrency and attempts must be positive")
        if settings.ca_bundle is not None and not settings.ca_bundle.is_file():
            raise ConfigError(
                f"store.ca_bundle {settings.ca_bundle} is not a readable file",
                remedy="point it at the PEM file of the CA that signed the store's certificate",
            )
        self.settings = settings
        self.bucket: str = settings.bucket
        prefix = settings.prefix.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.credentials = credentials or resolve_credentials(environ)
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.resume_attempts = resume_attempts
        self.resume_backoff = resume_backoff
        self._clock = clock
        self._endpoint_label = settings.endpoint or f"AWS S3 ({settings.region})"
        self._checked = False
        self._check_lock = threading.Lock()
        # sha256 -> composite checksum of multipart uploads this object completed and checked,
        # until verify() has used it (see verify, step 3).
        self._uploaded_composites: dict[str, str] = {}
        # Ceph RGW before flexible checksums needs "when_required"; then Content-MD5 is what
        # the server checks, and verify() reads objects back (there is no stored SHA-256).
        self._flexible = settings.checksum_mode == "when_supported"
        mode: Literal["when_supported", "when_required"] = (
            "when_supported" if self._flexible else "when_required"
        )
        addressing: Literal["auto", "virtual", "path"] = (
            "virtual"
            if settings.addressing_style == "virtual"
            else "auto"
            if settings.addressing_style == "auto"
            else "path"
        )
        config = Config(
            region_name=settings.region,
            s3={"addressing_style": addressing},
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Room for the parts of two clips at once (the upload queue stores two at a time).
            max_pool_connections=max(10, 2 * max_concurrency + 4),
            request_checksum_calculation=mode,
            response_checksum_validation=mode,
            user_agent_extra="evidence-agent",
        )
        self._client = self._make_client(config)

    def _make_client(self, config: Config) -> S3Client:
        try:
            # Credentials were resolved above; botocore must not go looking for a profile
            # (AWS_PROFILE may name one that only the shared-credentials file has).
            core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
            session = boto3.session.Session(
                botocore_session=core,
                aws_access_key_id=self.credentials.access_key_id,
                aws_secret_access_key=self.credentials.secret_access_key,
                aws_session_token=self.credentials.session_token,
                region_name=self.settings.region,
            )
            client: S3Client = session.client(
                "s3",
                endpoint_url=self.settings.endpoint,
                verify=str(self.settings.ca_bundle) if self.settings.ca_bundle else True,
                config=config,
            )
        except (BotoCoreError, ValueError) as e:
            raise ConfigError(
                f"cannot set up the S3 client for {self._endpoint_label}: {e}",
                remedy="check store.endpoint (e.g. https://s3.example.org:8333) and store.region",
            ) from e
        return client

    # -- naming ------------------------------------------------------------------------------

    def key_for(self, sha256: str) -> str:
        _digest_of(sha256)
        return f"{self.prefix}sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def artefact_key(self, name: str) -> str:
        """The full key of a small artefact (`checkpoints/...`, `canary/...`) under the prefix."""
        if (
            not _ARTEFACT_KEY.fullmatch(name)
            or name.startswith("/")
            or ".." in name.split("/")
            or name.startswith("sha256/")
        ):
            raise InputError(f"{name!r} is not a usable artefact key")
        return self.prefix + name

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self._endpoint_label}"

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{key}" if key else f"bucket '{self.bucket}'"

    def _now(self) -> datetime:
        now = self._clock.now() if self._clock is not None else datetime.now(UTC)
        if now.tzinfo is None:
            raise InputError("the clock returned a naive datetime")
        return now

    def _retain_until(self, retain_until: datetime | None) -> datetime:
        now = self._now()
        if retain_until is None:
            return now + timedelta(days=self.settings.default_retention_days)
        if retain_until.tzinfo is None:
            raise InputError("retain_until must be timezone-aware")
        if retain_until <= now:
            raise InputError(f"retain_until {retain_until.isoformat()} is not in the future")
        return retain_until

    # -- error translation -----------------------------------------------------------------------

    def _error(self, e: Exception, action: str, key: str | None = None) -> EvidenceError:
        """One message per failure, naming what to fix; the caller raises it `from e`."""
        where = self._where(key)
        ep = self._endpoint_label
        if isinstance(e, ClientError):
            code = _code_of(e)
            server_message = str(e.response.get("Error", {}).get("Message", "")).strip()
            if code in _CREDENTIAL_CODES:
                return StorageError(
                    f"cannot {action} {where}: the object store at {ep} rejected the credentials "
                    f"({code}) of access key {self.credentials.redacted_id} from "
                    f"{self.credentials.source}",
                    remedy="give the station the right key pair: " + _CREDENTIAL_SOURCES_HELP,
                )
            if code == "AccessDenied" or code == "403":
                return StorageError(
                    f"cannot {action} {where}: the object store at {ep} denied access to "
                    f"access key {self.credentials.redacted_id} from {self.credentials.source}",
                    remedy="check the key pair, and that its identity may read, write and list "
                    "the bucket and set object retention",
                )
            if code == "NoSuchBucket":
                return StorageError(
                    f"cannot {action}: bucket '{self.bucket}' does not exist at {ep}",
                    remedy="fix store.bucket, or create the bucket with Object Lock enabled "
                    f"(aws s3api create-bucket --bucket {self.bucket} --object-lock-enabled-for-bucket)",
                )
            if code in _DIGEST_CODES:
                return IntegrityError(
                    f"cannot {action} {where}: the object store computed a different checksum "
                    f"for the bytes it received ({code})",
                    remedy="the spool copy is corrupt or changed since it was hashed; do not clear "
                    "the recorder, re-ingest from it",
                )
            if code in ("PermanentRedirect", "IllegalLocationConstraintException"):
                return ConfigError(
                    f"cannot {action} {where}: the bucket is in another region than "
                    f"store.region={self.settings.region!r} ({code})",
                    remedy="set store.region to the bucket's region",
                )
            if code == "InvalidBucketName":
                return ConfigError(
                    f"store.bucket {self.bucket!r} is not a valid bucket name",
                    remedy="use 3-63 lowercase letters, digits, '.' and '-'",
                )
            if code in _BUSY_CODES or code.startswith("5"):
                return StoreUnavailableError(
                    f"cannot {action} {where}: the object store at {ep} is failing ({code}"
                    f"{': ' + server_message if server_message else ''}), even after retries",
                    remedy="check the store's health and logs; clips stay in the spool until it recovers",
                )
            if code == "InvalidRequest":
                return StorageError(
                    f"cannot {action} {where}: the object store refused the request "
                    f"({server_message or code})",
                    remedy="the bucket may lack Object Lock: run `evidence-agent storage check`",
                )
            return StorageError(
                f"cannot {action} {where}: the object store at {ep} answered {code}"
                f"{': ' + server_message if server_message else ''}"
            )
        if isinstance(e, SSLError):
            return ConfigError(
                f"cannot {action} {where}: TLS with {ep} failed ({e})",
                remedy="set store.ca_bundle to the CA that signed the store's certificate, "
                "or fix store.endpoint",
            )
        if isinstance(e, EndpointConnectionError | ConnectTimeoutError):
            return StoreUnavailableError(
                f"cannot {action} {where}: cannot connect to the object store at {ep}",
                remedy="check store.endpoint and that the server is running and reachable; "
                "clips stay in the spool until it is",
            )
        if isinstance(
            e, ConnectionClosedError | ReadTimeoutError | ResponseStreamingError | HTTPClientError
        ):
            return StoreUnavailableError(
                f"cannot {action} {where}: the object store at {ep} dropped the connection or "
                "stopped answering, even after retries",
                remedy="check the network and the store's logs; an interrupted upload resumes "
                "where it stopped",
            )
        if isinstance(e, NoCredentialsError | PartialCredentialsError):
            return ConfigError(
                f"cannot {action} {where}: no usable S3 credentials",
                remedy=_CREDENTIAL_SOURCES_HELP,
            )
        if isinstance(e, FlexibleChecksumError):
            return IntegrityError(
                f"cannot {action} {where}: the bytes received do not match the checksum the "
                f"store reports for them ({e})",
                remedy="read it again; if it repeats the stored object is corrupt",
            )
        return StorageError(f"cannot {action} {where}: {type(e).__name__}: {e}")

    def _call(
        self,
        action: str,
        key: str | None,
        fn: Callable[..., Any],
        *,
        handle: frozenset[str] = frozenset(),
        **kwargs: Any,
    ) -> Any:
        """Call one S3 operation; codes in `handle` come back as _ServerSaid, the rest as our errors."""
        try:
            return fn(**kwargs)
        except ClientError as e:
            code = _code_of(e)
            if code in handle:
                raise _ServerSaid(code, e) from e
            raise self._error(e, action, key) from e
        except BotoCoreError as e:
            raise self._error(e, action, key) from e

    def check_access(self) -> None:
        """Prove once that the bucket exists and the key pair may list it.

        A GET, not HEAD: HEAD answers bare 403/404, and "wrong key" must be told apart from
        "no such bucket" and "no permission"."""
        with self._check_lock:
            if self._checked:
                return
            self._call(
                "list",
                None,
                self._client.list_objects_v2,
                Bucket=self.bucket,
                Prefix=self.prefix,
                MaxKeys=1,
            )
            self._checked = True

    def _head(self, key: str, action: str = "look up") -> dict[str, Any] | None:
        self.check_access()
        try:
            response: dict[str, Any] = self._call(
                action,
                key,
                self._client.head_object,
                handle=frozenset({"404", "NoSuchKey", "NotFound"}),
                Bucket=self.bucket,
                Key=key,
                ChecksumMode="ENABLED",
            )
        except _ServerSaid:
            return None
        return response

    # -- the ObjectStore port ----------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return self._head(self.key_for(sha256)) is not None

    def iter_keys(self) -> Iterator[str]:
        """Every stored object's SHA-256, from a listing of `<prefix>sha256/`."""
        self.check_access()
        listing = self.prefix + "sha256/"
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=listing):
                for item in page.get("Contents", []):
                    name = item["Key"].rsplit("/", 1)[-1]
                    if _SHA256_HEX.fullmatch(name) and item["Key"] == self.key_for(name):
                        yield name
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "list", listing) from e

    def open(self, sha256: str) -> BinaryIO:
        """The stored bytes as a stream, for a caller that hashes every byte it reads (the port
        says so) and compares the ingest hash: botocore does not hash them a second time."""
        key = self.key_for(sha256)
        self.check_access()
        try:
            response = self._call(
                "read",
                key,
                self._unhashed_reads.get_object,
                handle=frozenset({"404", "NoSuchKey"}),
                Bucket=self.bucket,
                Key=key,
            )
        except _ServerSaid as e:
            raise NotFoundError(f"no object stored under {self._where(key)}") from e.error
        stream = _StreamReader(response["Body"], lambda e: self._error(e, "read", key))
        return cast(BinaryIO, stream)  # raw: read(n) returns at most n bytes, b"" at the end

    @functools.cached_property
    def _unhashed_reads(self) -> S3Client:
        """The store's client, but botocore checks no stored checksum of what a GET returns.

        With `when_supported` botocore asks for the checksum of every GET and, for a single-part
        object, hashes the whole body against it: a second SHA-256 of every byte beside the
        reader's own, which compares the ingest hash (a stronger check than the store's record
        of it) and then runs at half its rate on a small station."""
        return self._make_client(
            self._client.meta.config.merge(Config(response_checksum_validation="when_required"))
        )

    def verify(self, sha256: str, *, read_back: bool = False) -> StoredObject:
        """Check that the object stored under `sha256` is a full-object SHA-256 match.

        1. HEAD with ChecksumMode=ENABLED: the object must exist.
        2. A single-part object carries the full-object SHA-256 the server computed over the bytes
           it received (and refused the write on mismatch): compare it with `sha256`.
        3. A multipart object carries only a COMPOSITE checksum (a hash of part hashes), and an
           object written in `when_required` mode none at all: neither is a SHA-256 of the object.
           When this adapter has just uploaded it, put() hashed the spool file whole (equal to
           `sha256`) from the very bytes it sent, the server checked each part's SHA-256, and its
           composite equalled the one computed from those parts: a composite equal to that one
           is then the same proof for the object that a full-object SHA-256 is for a single-part
           one, and nothing is read back. Otherwise the object is read back and hashed whole (the
           composite is recomputed on the way and compared too). `read_back=True` forces a read
           back in every case: an audit of the bytes rather than of the server's record of them.
        Raises IntegrityError on any mismatch or when the object is missing."""
        expected = _digest_of(sha256)
        key = self.key_for(sha256)
        head = self._head(key, "verify")
        if head is None:
            raise IntegrityError(
                f"no object is stored under {self._where(key)}",
                remedy="upload the clip again from the spool; if the spool copy is gone, the "
                "object was lost or hidden by a delete marker: check the bucket's versions",
            )
        size = int(head["ContentLength"])
        stored = StoredObject(key=key, size=size, sha256=sha256)
        server_checksum: str | None = head.get("ChecksumSHA256")
        if server_checksum and "-" not in server_checksum and not read_back:
            if not _same(server_checksum, _b64(expected)):
                raise IntegrityError(
                    f"the object stored under {self._where(key)} has SHA-256 "
                    f"{base64.b64decode(server_checksum).hex()} per the store, not {sha256}",
                    remedy="the stored object is not the clip; keep the spool copy and report it",
                )
            return stored
        uploaded = self._uploaded_composites.pop(sha256, None)
        if (
            not read_back
            and server_checksum
            and "-" in server_checksum
            and _same(uploaded, server_checksum)
        ):
            return stored
        self._read_back_and_check(key, head, expected, server_checksum)
        return stored

    def _read_back_and_check(
        self, key: str, head: Mapping[str, Any], expected: bytes, server_checksum: str | None
    ) -> None:
        part_size = 0
        with contextlib.suppress(ValueError, TypeError):
            part_size = int(head.get("Metadata", {}).get(PART_SIZE_METADATA, "0"))
        composite_parts = server_checksum is not None and "-" in server_checksum and part_size > 0
        extra: dict[str, Any] = {}
        if head.get("VersionId"):
            extra["VersionId"] = head["VersionId"]
        response = self._call(
            "read back", key, self._client.get_object, Bucket=self.bucket, Key=key, **extra
        )
        whole = hashlib.sha256()
        part = hashlib.sha256()
        part_digests: list[bytes] = []
        in_part = 0
        size = 0
        with _StreamReader(response["Body"], lambda e: self._error(e, "read back", key)) as body:
            buffer = bytearray(READ_CHUNK)
            while n := body.readinto(buffer):
                chunk = memoryview(buffer)[:n]
                whole.update(chunk)
                size += n
                while composite_parts and len(chunk):
                    take = min(len(chunk), part_size - in_part)
                    part.update(chunk[:take])
                    in_part += take
                    chunk = chunk[take:]
                    if in_part == part_size:
                        part_digests.append(part.digest())
                        part, in_part = hashlib.sha256(), 0
        if composite_parts and in_part:
            part_digests.append(part.digest())
        if size != int(head["ContentLength"]):
            raise StoreUnavailableError(
                f"reading back {self._where(key)} ended after {size} of "
                f"{head['ContentLength']} bytes",
                remedy="verify again once the store is reachable",
            )
        if not hmac.compare_digest(whole.digest(), expected):
            raise IntegrityError(
                f"the object stored under {self._where(key)} read back with SHA-256 "
                f"{whole.hexdigest()}, not {expected.hex()}",
                remedy="the stored object is corrupt or not the clip; keep the spool copy and report it",
            )
        if composite_parts and server_checksum is not None:
            recomputed = composite_sha256(part_digests)
            if not _same(server_checksum, recomputed):
                raise IntegrityError(
                    f"the composite checksum the store reports for {self._where(key)} "
                    f"({server_checksum}) does not match its bytes ({recomputed})",
                    remedy="the store's record of the object is inconsistent; report it",
                )

    def put(
        self,
        sha256: str,
        source: Path,
        size: int,
        retain_until: datetime | None,
        *,
        state_path: Path | None = None,
        on_part: Callable[[PartProgress], None] | None = None,
    ) -> StoredObject:
        """Store the spool file under its SHA-256 with COMPLIANCE retention, never overwriting.

        Below `multipart_threshold` one PUT carries the SHA-256 (base64) that the server checks
        against the bytes. Above, each part carries its own SHA-256, the state file (default
        `<source>.upload.json`) records the upload id and confirmed parts so a later call resumes,
        the whole file is hashed on the way and must equal `sha256`, and the server's composite
        checksum must equal the one computed here. An object already stored under the key is
        success when it verifies and IntegrityError when it does not; its retention is extended
        to `retain_until` when shorter.

        `on_part` is called from this thread after each part is on the server and in the state
        file; an exception from it stops the upload (parts in flight are recorded first)."""
        digest = _digest_of(sha256)
        key = self.key_for(sha256)
        until = self._retain_until(retain_until)
        try:
            actual = source.stat().st_size
        except OSError as e:
            raise StorageError(
                f"cannot read spool file {source}: {e.strerror}",
                remedy="check the spool directory and its permissions",
            ) from e
        if actual != size:
            raise IntegrityError(
                f"spool file {source} has {actual} bytes, {size} were recorded at ingest",
                remedy="the spool copy changed; do not clear the recorder, re-ingest from it",
            )
        state_file = state_path or source.with_name(source.name + ".upload.json")
        existing = self._head(key, "look up")
        if existing is not None:
            stored = self._already_stored(sha256, key, existing, until)
            self._forget_state(state_file, abort=True)
            return stored
        if size >= self.multipart_threshold:
            return self._put_multipart(
                sha256, digest, key, source, size, until, state_file, on_part
            )
        return self._put_single(sha256, digest, key, source, size, until)

    def _lock_args(self, until: datetime) -> dict[str, Any]:
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}

    def _put_single(
        self, sha256: str, digest: bytes, key: str, source: Path, size: int, until: datetime
    ) -> StoredObject:
        try:
            with source.open("rb") as f:
                if self._flexible:
                    checksum: dict[str, Any] = {
                        "ChecksumAlgorithm": "SHA256",
                        "ChecksumSHA256": _b64(digest),
                    }
                else:
                    checksum = {"ContentMD5": _b64(self._md5_checking_sha256(f, digest, source))}
                    f.seek(0)
                try:
                    response = self._call(
                        "upload",
                        key,
                        self._client.put_object,
                        handle=frozenset({"PreconditionFailed", *_DIGEST_CODES}),
                        Bucket=self.bucket,
                        Key=key,
                        Body=f,
                        ContentLength=size,
                        ContentType="application/octet-stream",
                        IfNoneMatch="*",
                        **self._lock_args(until),
                        **checksum,
                    )
                except _ServerSaid as e:
                    if e.code == "PreconditionFailed":
                        return self._stored_by_someone_else(sha256, key, until)
                    raise IntegrityError(
                        f"the object store refused spool file {source}: its bytes do not hash to "
                        f"the SHA-256 recorded at ingest, {sha256} ({e.code})",
                        remedy="the spool copy is corrupt or changed; do not clear the recorder, "
                        "re-ingest from it",
                    ) from e.error
        except OSError as e:
            raise StorageError(
                f"cannot read spool file {source}: {e.strerror}",
                remedy="check the spool directory and its permissions",
            ) from e
        reported: str | None = response.get("ChecksumSHA256")
        if reported is not None and not _same(reported, _b64(digest)):
            raise IntegrityError(
                f"the object store reports SHA-256 {reported} for {self._where(key)}, "
                f"not the {_b64(digest)} it was sent",
                remedy="the store did not keep what it accepted; report it",
            )
        log.info("stored %s (%d bytes) in %s", sha256, size, self.describe())
        return StoredObject(key=key, size=size, sha256=sha256)

    def _md5_checking_sha256(self, f: BinaryIO, digest: bytes, source: Path) -> bytes:
        """For stores without flexible checksums: Content-MD5 is what they check; the SHA-256 is
        checked here so a changed spool file is never sent."""
        md5 = hashlib.md5(usedforsecurity=False)
        sha = hashlib.sha256()
        while chunk := f.read(READ_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
        if not hmac.compare_digest(sha.digest(), digest):
            raise IntegrityError(
                f"spool file {source} hashes to {sha.hexdigest()}, not the SHA-256 recorded "
                f"at ingest ({digest.hex()})",
                remedy="the spool copy is corrupt or changed; do not clear the recorder, re-ingest from it",
            )
        return md5.digest()

    def _stored_by_someone_else(self, sha256: str, key: str, until: datetime) -> StoredObject:
        """A conditional write lost to an existing object: equal content is success."""
        head = self._head(key, "look up")
        if head is None:
            raise StorageError(
                f"the object store refused to write {self._where(key)} because it exists, "
                "but it cannot be found",
                remedy="a delete marker may hide it: check the bucket's versions",
            )
        return self._already_stored(sha256, key, head, until)

    def _already_stored(
        self, sha256: str, key: str, head: Mapping[str, Any], until: datetime
    ) -> StoredObject:
        checksum: str | None = head.get("ChecksumSHA256")
        if checksum and "-" not in checksum:
            if not _same(checksum, _b64(bytes.fromhex(sha256))):
                raise IntegrityError(
                    f"an object with different content is already stored under "
                    f"{self._where(key)} (SHA-256 {base64.b64decode(checksum).hex()}); "
                    "it was not overwritten",
                    remedy="the stored object is not the clip; keep the spool copy and report it",
                )
        else:
            self._read_back_and_check(key, head, bytes.fromhex(sha256), checksum)
        self._extend_retention(key, head, until)
        return StoredObject(key=key, size=int(head["ContentLength"]), sha256=sha256)

    def _extend_retention(self, key: str, head: Mapping[str, Any], until: datetime) -> None:
        current = head.get("ObjectLockRetainUntilDate")
        mode = head.get("ObjectLockMode")
        if mode == "COMPLIANCE" and isinstance(current, datetime) and current >= until:
            return
        extra: dict[str, Any] = {}
        if head.get("VersionId"):
            extra["VersionId"] = head["VersionId"]
        self._call(
            "extend the retention of",
            key,
            self._client.put_object_retention,
            Bucket=self.bucket,
            Key=key,
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
            **extra,
        )

    # -- multipart ---------------------------------------------------------------------------------

    def _part_size_for(self, size: int) -> int:
        return max(self.part_size, math.ceil(size / MAX_PARTS))

    def _load_state(
        self, state_file: Path, key: str, sha256: str, size: int, part_size: int
    ) -> _UploadState | None:
        try:
            state = _UploadState.from_json(state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("ignoring unreadable upload state %s: %s", state_file, e)
            return None
        if (state.bucket, state.key, state.sha256, state.size, state.part_size) != (
            self.bucket,
            key,
            sha256,
            size,
            part_size,
        ):
            log.warning("upload state %s is for another upload; starting over", state_file)
            self._abort_quietly(state.key, state.upload_id, state.bucket)
            return None
        return state

    def _save_state(self, state_file: Path, state: _UploadState, *, durable: bool = True) -> None:
        try:
            _write_atomically(state_file, state.to_json(), durable=durable)
        except OSError as e:
            raise StorageError(
                f"cannot write upload state {state_file}: {e.strerror}",
                remedy="check free space and permissions in the spool directory",
            ) from e

    def _forget_state(self, state_file: Path, *, abort: bool) -> None:
        if abort and state_file.exists():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                old = _UploadState.from_json(state_file.read_text(encoding="utf-8"))
                self._abort_quietly(old.key, old.upload_id, old.bucket)
        with contextlib.suppress(FileNotFoundError):
            state_file.unlink()

    def _abort_quietly(self, key: str, upload_id: str, bucket: str | None = None) -> None:
        """Best effort: an upload left behind only costs space until the bucket's lifecycle ends it."""
        try:
            self._client.abort_multipart_upload(
                Bucket=bucket or self.bucket, Key=key, UploadId=upload_id
            )
        except (ClientError, BotoCoreError) as e:
            log.debug("could not abort multipart upload %s of %s: %s", upload_id, key, e)

    def _put_multipart(
        self,
        sha256: str,
        digest: bytes,
        key: str,
        source: Path,
        size: int,
        until: datetime,
        state_file: Path,
        on_part: Callable[[PartProgress], None] | None,
    ) -> StoredObject:
        attempt = 0
        while True:
            try:
                return self._multipart_attempt(
                    sha256, digest, key, source, size, until, state_file, on_part
                )
            except StoreUnavailableError:
                attempt += 1
                if attempt > self.resume_attempts:
                    raise
                delay = self.resume_backoff * 2 ** (attempt - 1) * (0.5 + random.random())  # noqa: S311
                log.warning(
                    "upload of %s interrupted; resuming from %s in %.1fs (attempt %d of %d)",
                    sha256,
                    state_file,
                    delay,
                    attempt,
                    self.resume_attempts,
                )
                time.sleep(delay)

    def _server_parts(
        self, key: str, upload_id: str
    ) -> dict[int, tuple[str, int, str | None]] | None:
        """Parts the server holds for the upload (None when the upload is gone)."""
        parts: dict[int, tuple[str, int, str | None]] = {}
        marker = 0
        while True:
            try:
                page = self._call(
                    "list the uploaded parts of",
                    key,
                    self._client.list_parts,
                    handle=frozenset({"NoSuchUpload", "404"}),
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumberMarker=marker,
                )
            except _ServerSaid:
                return None
            for p in page.get("Parts", []):
                # SeaweedFS lists no per-part checksum; AWS does. Either way the state file has
                # the one the server confirmed when the part went up.
                parts[int(p["PartNumber"])] = (
                    str(p["ETag"]),
                    int(p["Size"]),
                    p.get("ChecksumSHA256"),
                )
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    def _multipart_attempt(
        self,
        sha256: str,
        digest: bytes,
        key: str,
        source: Path,
        size: int,
        until: datetime,
        state_file: Path,
        on_part: Callable[[PartProgress], None] | None,
    ) -> StoredObject:
        part_size = self._part_size_for(size)
        total = math.ceil(size / part_size)
        state = self._load_state(state_file, key, sha256, size, part_size)
        server_parts: dict[int, tuple[str, int, str | None]] = {}
        if state is not None:
            listed = self._server_parts(key, state.upload_id)
            if listed is None:
                log.info("multipart upload %s of %s is gone; starting over", state.upload_id, key)
                self._forget_state(state_file, abort=False)
                state = None
            else:
                server_parts = listed
        if state is None:
            create_args: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"} if self._flexible else {}
            response = self._call(
                "start uploading",
                key,
                self._client.create_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                ContentType="application/octet-stream",
                Metadata={PART_SIZE_METADATA: str(part_size)},
                **self._lock_args(until),
                **create_args,
            )
            state = _UploadState(
                self.bucket, key, sha256, size, part_size, str(response["UploadId"]), {}
            )
            self._save_state(state_file, state)
        else:
            log.info(
                "resuming upload of %s: %d of %d parts already on the server",
                sha256,
                len(server_parts),
                total,
            )

        whole = hashlib.sha256()
        pending: set[Future[tuple[int, str, str]]] = set()
        sizes: dict[int, int] = {}
        live = state  # record() runs on this thread only: no lock needed

        def record(done: set[Future[tuple[int, str, str]]], *, notify: bool = True) -> None:
            # Results of finished parts go to the state file first, then to the caller's callback.
            failures: list[BaseException] = []
            finished: list[int] = []
            for fut in done:
                if fut.cancelled():
                    continue
                error = fut.exception()
                if error is not None:
                    failures.append(error)
                    continue
                number, etag, checksum = fut.result()
                live.parts[number] = (etag, checksum)
                finished.append(number)
            if finished:
                # Not fsynced: after a crash an older state only means parts are sent again;
                # the upload id itself was made durable when the upload started.
                self._save_state(state_file, live, durable=False)
            if notify and on_part is not None:
                for number in sorted(finished):
                    on_part(PartProgress(number, total, sizes[number], reused=False))
            if failures and notify:
                raise failures[0]

        try:
            with (
                source.open("rb") as f,
                ThreadPoolExecutor(
                    max_workers=self.max_concurrency, thread_name_prefix="s3-part"
                ) as pool,
            ):
                try:
                    for number in range(1, total + 1):
                        data = f.read(part_size)
                        if len(data) != min(part_size, size - (number - 1) * part_size):
                            raise IntegrityError(
                                f"spool file {source} is shorter than the {size} bytes recorded at ingest",
                                remedy="the spool copy changed; do not clear the recorder, re-ingest from it",
                            )
                        whole.update(data)
                        sizes[number] = len(data)
                        # A part's own SHA-256 is computed here only to decide on reusing it;
                        # otherwise its upload thread computes it, beside this thread's hash of
                        # the whole file (hashlib releases the GIL): each byte is hashed twice,
                        # in parallel, and read once.
                        part_digest: bytes | None = None
                        recorded, on_server = state.parts.get(number), server_parts.get(number)
                        if recorded is not None and on_server is not None:
                            part_digest = hashlib.sha256(data).digest()
                            if self._reusable(recorded, on_server, part_digest, len(data)):
                                if on_part is not None:
                                    on_part(PartProgress(number, total, len(data), reused=True))
                                continue
                        while len(pending) >= self.max_concurrency:
                            done, pending = wait(pending, return_when=FIRST_COMPLETED)
                            record(done)
                        pending.add(
                            pool.submit(
                                self._upload_part, key, state.upload_id, number, data, part_digest
                            )
                        )
                    if f.read(1):
                        raise IntegrityError(
                            f"spool file {source} is longer than the {size} bytes recorded at ingest",
                            remedy="the spool copy changed; do not clear the recorder, re-ingest from it",
                        )
                    finished, pending = wait(pending).done, set()
                    record(finished)
                except BaseException:
                    # Parts already in flight finish; keep them in the state file for the resume.
                    for fut in pending:
                        fut.cancel()
                    with contextlib.suppress(EvidenceError):
                        record(wait(pending).done, notify=False)
                    raise
        except OSError as e:
            raise StorageError(
                f"cannot read spool file {source}: {e.strerror}",
                remedy="check the spool directory and its permissions",
            ) from e

        if not hmac.compare_digest(whole.digest(), digest):
            self._abort_quietly(key, state.upload_id)
            self._forget_state(state_file, abort=False)
            raise IntegrityError(
                f"spool file {source} hashes to {whole.hexdigest()}, not the SHA-256 recorded "
                f"at ingest ({sha256}); the upload was abandoned",
                remedy="the spool copy is corrupt or changed; do not clear the recorder, re-ingest from it",
            )
        # Every part's SHA-256 is of the local bytes: computed by its upload thread, or checked
        # against the state file before a part from an earlier run was reused.
        part_digests = [base64.b64decode(state.parts[n][1]) for n in range(1, total + 1)]
        local_composite = composite_sha256(part_digests)
        parts_list: list[dict[str, Any]] = []
        for number in range(1, total + 1):
            etag, checksum = state.parts[number]
            entry: dict[str, Any] = {"PartNumber": number, "ETag": etag}
            if self._flexible:
                entry["ChecksumSHA256"] = checksum
            parts_list.append(entry)
        try:
            response = self._call(
                "complete the upload of",
                key,
                self._client.complete_multipart_upload,
                handle=frozenset(
                    {"PreconditionFailed", "NoSuchUpload", "InvalidPart", "InvalidPartOrder"}
                ),
                Bucket=self.bucket,
                Key=key,
                UploadId=state.upload_id,
                MultipartUpload={"Parts": parts_list},
                IfNoneMatch="*",
            )
        except _ServerSaid as e:
            if e.code == "PreconditionFailed":
                self._forget_state(state_file, abort=True)
                return self._stored_by_someone_else(sha256, key, until)
            if e.code == "NoSuchUpload" and self._head(key) is not None:
                # A retried complete whose first attempt succeeded before the connection dropped.
                self._forget_state(state_file, abort=False)
                return self._stored_by_someone_else(sha256, key, until)
            # The server does not recognise the parts recorded: start over from scratch.
            self._forget_state(state_file, abort=True)
            raise StoreUnavailableError(
                f"the object store lost track of the multipart upload of {self._where(key)} ({e.code})",
                remedy="the upload starts over on the next attempt",
            ) from e.error
        self._forget_state(state_file, abort=False)
        if self._flexible:
            reported: str | None = response.get("ChecksumSHA256")
            if reported is None:
                head = self._head(key, "verify")
                reported = head.get("ChecksumSHA256") if head else None
            if reported is None:
                # No composite to compare: fall back to the honest, slow check.
                self.verify(sha256, read_back=True)
            elif not _same(reported, local_composite):
                raise IntegrityError(
                    f"the object store reports composite checksum {reported} for "
                    f"{self._where(key)}, but the parts sent make {local_composite}",
                    remedy="the stored object does not match the spool file; keep the spool copy and report it",
                )
            else:
                self._uploaded_composites[sha256] = reported
        log.info("stored %s (%d bytes, %d parts) in %s", sha256, size, total, self.describe())
        return StoredObject(key=key, size=size, sha256=sha256)

    @staticmethod
    def _reusable(
        recorded: tuple[str, str] | None,
        on_server: tuple[str, int, str | None] | None,
        part_digest: bytes,
        part_len: int,
    ) -> bool:
        """A part from an earlier run counts only if the server still has it as recorded and its
        recorded SHA-256 is that of the same bytes in the spool file now."""
        if recorded is None or on_server is None:
            return False
        etag, checksum = recorded
        server_etag, server_size, server_checksum = on_server
        return (
            server_etag == etag
            and server_size == part_len
            and _same(checksum, _b64(part_digest))
            and (server_checksum is None or _same(server_checksum, checksum))
        )

    def _upload_part(
        self, key: str, upload_id: str, number: int, data: bytes, part_digest: bytes | None
    ) -> tuple[int, str, str]:
        if part_digest is None:
            part_digest = hashlib.sha256(data).digest()
        if self._flexible:
            checksum: dict[str, Any] = {
                "ChecksumAlgorithm": "SHA256",
                "ChecksumSHA256": _b64(part_digest),
            }
        else:
            checksum = {"ContentMD5": _b64(hashlib.md5(data, usedforsecurity=False).digest())}
        try:
            response = self._call(
                f"upload part {number} of",
                key,
                self._client.upload_part,
                handle=frozenset(_DIGEST_CODES),
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=data,
                ContentLength=len(data),
                **checksum,
            )
        except _ServerSaid as e:
            raise IntegrityError(
                f"the object store received part {number} of {self._where(key)} with a different "
                f"checksum than it was sent with ({e.code})",
                remedy="the bytes were damaged in transit; the upload resumes with this part on "
                "the next attempt",
            ) from e.error
        reported: str | None = response.get("ChecksumSHA256")
        if self._flexible and reported is not None and not _same(reported, _b64(part_digest)):
            raise IntegrityError(
                f"the object store reports SHA-256 {reported} for part {number} of "
                f"{self._where(key)}, not the {_b64(part_digest)} it was sent",
                remedy="the store did not keep what it accepted; report it",
            )
        return number, str(response["ETag"]), _b64(part_digest)

    # -- small artefacts (custody checkpoints, canaries) ---------------------------------------

    def put_bytes(self, key: str, data: bytes, retain_until: datetime | None) -> StoredObject:
        """Store a small artefact under `<prefix><key>` with COMPLIANCE retention, never overwriting.

        The same bytes already there are success; different bytes are IntegrityError."""
        full_key = self.artefact_key(key)
        until = self._retain_until(retain_until)
        digest = hashlib.sha256(data).digest()
        self.check_access()
        if self._flexible:
            checksum: dict[str, Any] = {
                "ChecksumAlgorithm": "SHA256",
                "ChecksumSHA256": _b64(digest),
            }
        else:
            checksum = {"ContentMD5": _b64(hashlib.md5(data, usedforsecurity=False).digest())}
        try:
            self._call(
                "publish",
                full_key,
                self._client.put_object,
                handle=frozenset({"PreconditionFailed"}),
                Bucket=self.bucket,
                Key=full_key,
                Body=data,
                ContentLength=len(data),
                IfNoneMatch="*",
                **self._lock_args(until),
                **checksum,
            )
        except _ServerSaid:
            head = self._head(full_key, "look up")
            if head is None:
                raise StorageError(
                    f"the object store refused to write {self._where(full_key)} because it "
                    "exists, but it cannot be found",
                    remedy="a delete marker may hide it: check the bucket's versions",
                ) from None
            stored_checksum: str | None = head.get("ChecksumSHA256")
            if stored_checksum and "-" not in stored_checksum:
                same = _same(stored_checksum, _b64(digest))
            else:
                same = hmac.compare_digest(hashlib.sha256(self.get_bytes(key)).digest(), digest)
            if not same:
                raise IntegrityError(
                    f"different content is already stored under {self._where(full_key)}; "
                    "it was not overwritten",
                    remedy="two writers produced different artefacts under one name; report it",
                ) from None
        return StoredObject(key=full_key, size=len(data), sha256=digest.hex())

    def get_bytes(self, key: str) -> bytes:
        """A small artefact's bytes (NotFoundError when absent)."""
        full_key = self.artefact_key(key)
        self.check_access()
        try:
            response = self._call(
                "read",
                full_key,
                self._client.get_object,
                handle=frozenset({"404", "NoSuchKey"}),
                Bucket=self.bucket,
                Key=full_key,
                ChecksumMode="ENABLED",
            )
        except _ServerSaid as e:
            raise NotFoundError(f"no artefact stored under {self._where(full_key)}") from e.error
        with _StreamReader(response["Body"], lambda e: self._error(e, "read", full_key)) as body:
            return body.read()

    # -- evidence-mode probes (used by storage_check) --------------------------------------------

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock enabled (it cannot be turned on later for AWS)."""
        self.check_access()
        try:
            response = self._call(
                "read the Object Lock configuration of",
                None,
                self._client.get_object_lock_configuration,
                handle=frozenset({"ObjectLockConfigurationNotFoundError", "404", "NotImplemented"}),
                Bucket=self.bucket,
            )
        except _ServerSaid:
            return False
        config = response.get("ObjectLockConfiguration", {})
        return bool(config.get("ObjectLockEnabled") == "Enabled")

    def retention_of(self, key: str) -> tuple[str | None, datetime | None]:
        """(mode, retain-until) of the current version of an artefact."""
        full_key = self.artefact_key(key)
        try:
            response = self._call(
                "read the retention of",
                full_key,
                self._client.get_object_retention,
                handle=frozenset({"NoSuchObjectLockConfiguration", "404", "NoSuchKey"}),
                Bucket=self.bucket,
                Key=full_key,
            )
        except _ServerSaid:
            return None, None
        retention = response.get("Retention", {})
        return retention.get("Mode"), retention.get("RetainUntilDate")

    def probe_delete(self, key: str) -> bool:
        """Try to delete the current version of an artefact, bypassing governance retention.

        True when the store deleted it (no WORM), False when it refused."""
        full_key = self.artefact_key(key)
        head = self._head(full_key, "look up")
        if head is None:
            raise StorageError(f"canary {self._where(full_key)} vanished before the delete probe")
        args: dict[str, Any] = {}
        if head.get("VersionId"):
            args["VersionId"] = head["VersionId"]
        try:
            self._call(
                "delete",
                full_key,
                self._client.delete_object,
                handle=_REFUSAL_CODES | {"403", "400", "405"},
                Bucket=self.bucket,
                Key=full_key,
                BypassGovernanceRetention=True,
                **args,
            )
        except _ServerSaid:
            return False
        return True

    def _probe_checksum(self, data: bytes) -> dict[str, Any]:
        """The checksum header a canary PUT claims for `data` (SHA-256, or MD5 in when_required)."""
        if self._flexible:
            return {
                "ChecksumAlgorithm": "SHA256",
                "ChecksumSHA256": _b64(hashlib.sha256(data).digest()),
            }
        return {"ContentMD5": _b64(hashlib.md5(data, usedforsecurity=False).digest())}

    def probe_wrong_checksum(self, key: str, retain_until: datetime | None) -> bool:
        """PUT bytes with the checksum of other bytes. True when the store accepted them."""
        full_key = self.artefact_key(key)
        until = self._retain_until(retain_until)
        body = b"evidence-agent canary: this body does not match its checksum header\n"
        wrong = b"something else entirely\n"
        checksum = self._probe_checksum(wrong)
        try:
            self._call(
                "probe checksums with",
                full_key,
                self._client.put_object,
                handle=_DIGEST_CODES | {"InvalidRequest", "400"},
                Bucket=self.bucket,
                Key=full_key,
                Body=body,
                IfNoneMatch="*",
                **self._lock_args(until),
                **checksum,
            )
        except _ServerSaid:
            return False
        return True

    def probe_overwrite(self, key: str, retain_until: datetime | None) -> bool:
        """PUT other bytes with If-None-Match: * over an existing artefact. True when accepted."""
        full_key = self.artefact_key(key)
        until = self._retain_until(retain_until)
        body = b"evidence-agent canary: an overwrite that must be refused\n"
        checksum = self._probe_checksum(body)
        try:
            self._call(
                "probe conditional writes with",
                full_key,
                self._client.put_object,
                handle=frozenset({"PreconditionFailed", "412"}),
                Bucket=self.bucket,
                Key=full_key,
                Body=body,
                IfNoneMatch="*",
                **self._lock_args(until),
                **checksum,
            )
        except _ServerSaid:
            return False
        return True

    # -- retention kept in step with the catalog, and deletion (review/store_retention.py) -------

    def _versions(self, key: str, action: str) -> tuple[list[str], list[str]]:
        """The version ids of the object versions, and of the delete markers, under exactly `key`.

        Every version counts, not only the current one: a delete marker hides a version's bytes
        without removing them."""
        self.check_access()
        versions: list[str] = []
        markers: list[str] = []
        paginator = self._client.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                versions += [
                    str(v["VersionId"]) for v in page.get("Versions", []) if v.get("Key") == key
                ]
                markers += [
                    str(m["VersionId"])
                    for m in page.get("DeleteMarkers", [])
                    if m.get("Key") == key
                ]
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, action, key) from e
        return versions, markers

    def _retention_of_version(self, key: str, version: str) -> tuple[str | None, datetime | None]:
        """(mode, retain-until in UTC) of one version; (None, None) when it has no retention."""
        try:
            response = self._call(
                "read the retention of",
                key,
                self._client.get_object_retention,
                handle=frozenset(
                    {"NoSuchObjectLockConfiguration", "NoSuchKey", "NoSuchVersion", "404"}
                ),
                Bucket=self.bucket,
                Key=key,
                VersionId=version,
            )
        except _ServerSaid:
            return None, None
        retention = response.get("Retention", {})
        until = retention.get("RetainUntilDate")
        mode = retention.get("Mode")
        return (
            str(mode) if mode else None,
            until.astimezone(UTC) if isinstance(until, datetime) else None,
        )

    def _legal_hold_of_version(self, key: str, version: str) -> bool:
        try:
            response = self._call(
                "read the legal hold of",
                key,
                self._client.get_object_legal_hold,
                # A version that never had a legal hold answers NoSuchObjectLegalHold (SeaweedFS).
                handle=frozenset(
                    {
                        "NoSuchObjectLegalHold",
                        "NoSuchObjectLockConfiguration",
                        "NoSuchKey",
                        "NoSuchVersion",
                        "404",
                    }
                ),
                Bucket=self.bucket,
                Key=key,
                VersionId=version,
            )
        except _ServerSaid:
            return False
        return bool(response.get("LegalHold", {}).get("Status") == "ON")

    def _lock_target(self, until: datetime | None) -> datetime | None:
        """The COMPLIANCE date for a retention ending at `until` (None: kept for good), rounded up
        to the whole second S3 keeps; None when `until` has passed (there is nothing to lock)."""
        if until is None:
            return PERMANENT_RETAIN_UNTIL
        if until.tzinfo is None:
            raise InputError("a retention date must be timezone-aware")
        if until <= self._now():
            return None
        whole = until.astimezone(UTC).replace(microsecond=0)
        return whole if whole == until else whole + timedelta(seconds=1)

    def _no_object(self, key: str, action: str) -> NotFoundError:
        return NotFoundError(
            f"cannot {action} {self._where(key)}: no version of it is stored",
            remedy="run `evidence-agent verify`: a stored clip's object must be in the bucket",
        )

    def extend_retention(self, sha256: str, until: datetime | None) -> None:
        """Make the stored clip's COMPLIANCE lock last at least until `until`; never shorten it.

        `until` None (kept for good) locks it until PERMANENT_RETAIN_UNTIL; a time already past
        needs no lock and changes nothing. Every version under the clip's key is extended
        (normally there is one); a version already locked as long is left alone, so the call may
        be repeated. The store's record of each new lock is read back and must match."""
        key = self.key_for(sha256)
        action = "extend the retention of"
        target = self._lock_target(until)
        if target is None:
            return
        versions, _ = self._versions(key, action)
        if not versions:
            raise self._no_object(key, action)
        for version in versions:
            mode, current = self._retention_of_version(key, version)
            if mode == "COMPLIANCE" and current is not None and current >= target:
                continue  # already as long: COMPLIANCE retention is never shortened
            # A longer GOVERNANCE date becomes COMPLIANCE at that date: strengthened, not cut.
            wanted = max(target, current) if current is not None else target
            try:
                self._call(
                    action,
                    key,
                    self._client.put_object_retention,
                    handle=frozenset({"AccessDenied", "403"}),
                    Bucket=self.bucket,
                    Key=key,
                    VersionId=version,
                    Retention={"Mode": "COMPLIANCE", "RetainUntilDate": wanted},
                )
            except _ServerSaid as e:
                # Someone may have extended it further meanwhile (a shorter date is refused).
                mode, current = self._retention_of_version(key, version)
                if not (mode == "COMPLIANCE" and current is not None and current >= target):
                    raise self._error(e.error, action, key) from e.error
                continue
            mode, current = self._retention_of_version(key, version)
            if mode != "COMPLIANCE" or current is None or current < target:
                raise StorageError(
                    f"the object store accepted COMPLIANCE retention until {_iso(wanted)} for "
                    f"{self._where(key)} (version {version}) but reports "
                    + (f"{mode} retention until {_iso(current)}" if current else "no retention"),
                    remedy="the store does not keep Object Lock as asked: run "
                    "`evidence-agent storage check` and report it",
                )
        log.info("retention of %s extended to %s in %s", sha256, _iso(target), self.describe())

    def set_legal_hold(self, sha256: str, on: bool) -> None:
        """Put the stored clip under an S3 legal hold (`on`) or lift it, on every version.

        A legal hold has no date; while it is on no version can be deleted, whatever its
        retention. Unlike COMPLIANCE retention it can be lifted, by any identity allowed to set
        it. The store's record of the hold is read back and must match."""
        key = self.key_for(sha256)
        action = "set the legal hold of" if on else "release the legal hold of"
        status = "ON" if on else "OFF"
        versions, _ = self._versions(key, action)
        if not versions:
            raise self._no_object(key, action)
        for version in versions:
            if self._legal_hold_of_version(key, version) == on:
                continue
            self._call(
                action,
                key,
                self._client.put_object_legal_hold,
                Bucket=self.bucket,
                Key=key,
                VersionId=version,
                LegalHold={"Status": status},
            )
            if self._legal_hold_of_version(key, version) != on:
                raise StorageError(
                    f"the object store accepted legal hold {status} for {self._where(key)} "
                    f"(version {version}) but does not report it",
                    remedy="the store does not keep Object Lock as asked: run "
                    "`evidence-agent storage check` and report it",
                )
        log.info("legal hold %s for %s in %s", status, sha256, self.describe())

    def _locks_of(self, key: str, version: str) -> tuple[datetime | None, str | None, bool]:
        """(retain-until, mode, legal hold) of one version."""
        mode, until = self._retention_of_version(key, version)
        return until, mode, self._legal_hold_of_version(key, version)

    @staticmethod
    def _lock_words(until: datetime | None, mode: str | None, hold: bool, now: datetime) -> str:
        """What keeps a version from deletion at `now`, in words ("" when nothing does)."""
        parts = []
        if until is not None and until > now:
            parts.append(f"{mode or 'COMPLIANCE'} retention until {_iso(until)}")
        if hold:
            parts.append("a legal hold")
        return " and ".join(parts)

    @staticmethod
    def _unlock_remedy(words: str) -> str:
        steps = []
        if "retention until" in words:
            steps.append(
                "a COMPLIANCE retention date cannot be brought forward: delete it after that date"
            )
        if "legal hold" in words:
            steps.append(
                "lift the legal hold first (`evidence-agent retention hold CLIP --release` lifts "
                "the agent's own)"
            )
        return "; ".join(steps)

    def delete_object(self, sha256: str) -> None:
        """Remove the clip's object for good once no lock holds it: every version under its key,
        each by its VersionId (a delete without one only puts a delete marker over the bytes),
        then the delete markers (best effort: they hold no bytes).

        1. Every version's retention and legal hold are read first. While any is locked by this
           station's clock (a retention date ahead, or a legal hold) ObjectLockedError names the
           date or the hold, and nothing is deleted.
        2. Each version is deleted. A refusal by the store (its own clock decides) is
           ObjectLockedError naming the lock the store reports, or a StorageError when it
           reports none.
        3. The versions are listed again: any left is a StorageError.
        Nothing under the key is success: a repeated call (after a crash) changes nothing."""
        key = self.key_for(sha256)
        where = self._where(key)
        versions, markers = self._versions(key, "delete")
        now = self._now()
        locked = []
        for version in versions:
            words = self._lock_words(*self._locks_of(key, version), now)
            if words:
                locked.append(f"version {version}: {words}" if len(versions) > 1 else words)
        if locked:
            text = "; ".join(locked)
            raise ObjectLockedError(
                f"cannot delete {where}: the object store keeps it under {text}; "
                "nothing was deleted",
                remedy=self._unlock_remedy(text),
            )
        for version in versions:
            self._delete_version(key, version, now)
        for marker in markers:
            self._delete_marker(key, marker)
        left, _ = self._versions(key, "check the deletion of")
        if left:
            raise StorageError(
                f"the object store still holds {len(left)} version(s) of {where} after "
                "deleting them",
                remedy="check the bucket's versions of that key",
            )
        log.info(
            "deleted %s from %s (%d version(s), %d delete marker(s))",
            sha256,
            self.describe(),
            len(versions),
            len(markers),
        )

    def _delete_marker(self, key: str, marker: str) -> None:
        """A delete marker holds no bytes: one left behind is untidy, not evidence kept."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key, VersionId=marker)
        except (ClientError, BotoCoreError) as e:
            log.warning("could not remove delete marker %s of %s: %s", marker, key, e)

    def _delete_version(self, key: str, version: str, now: datetime) -> None:
        try:
            self._call(
                "delete",
                key,
                self._client.delete_object,
                handle=_REFUSAL_CODES | {"403", "400", "405"},
                Bucket=self.bucket,
                Key=key,
                VersionId=version,
            )
        except _ServerSaid as e:
            where = f"{self._where(key)} (version {version})"
            until, mode, hold = self._locks_of(key, version)
            words = self._lock_words(until, mode, hold, now)
            if words:
                raise ObjectLockedError(
                    f"the object store refused to delete {where} ({e.code}): it keeps it under "
                    f"{words}",
                    remedy=self._unlock_remedy(words),
                ) from e.error
            ended = f" (its retention ended {_iso(until)})" if until is not None else ""
            raise StorageError(
                f"the object store refused to delete {where} ({e.code}), although no lock holds "
                f"it by this station's clock{ended}",
                remedy="check that the store's clock is right, and that access key "
                f"{self.credentials.redacted_id} may delete object versions (SeaweedFS: Write "
                "on the bucket; AWS: s3:DeleteObjectVersion)",
            ) from e.error


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
