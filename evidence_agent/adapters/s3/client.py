"""The boto3 client of one evidence bucket: object names, calls, and botocore's failures in our words."""

from __future__ import annotations

import contextlib
import functools
import io
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

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

from evidence_agent.adapters.s3.checksums import digest_of
from evidence_agent.adapters.s3.credentials import (
    CREDENTIAL_SOURCES_HELP,
    S3Credentials,
    resolve_credentials,
)
from evidence_agent.adapters.s3.errors import StoreUnavailableError
from evidence_agent.config import StoreSettings
from evidence_agent.errors import (
    ConfigError,
    EvidenceError,
    InputError,
    IntegrityError,
    StorageError,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_ARTEFACT_KEY = re.compile(r"[A-Za-z0-9!_.*'()/-]+")

CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
    }
)
DIGEST_CODES = frozenset(
    {
        "BadDigest",
        "InvalidDigest",
        "XAmzContentSHA256Mismatch",
        "XAmzContentChecksumMismatch",
        "InvalidChecksum",
    }
)
BUSY_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}
)
REFUSAL_CODES = frozenset({"AccessDenied", "InvalidRequest", "ObjectLocked", "MethodNotAllowed"})


class ServerSaid(Exception):
    """An S3 error code the caller asked to handle itself."""

    def __init__(self, code: str, error: ClientError) -> None:
        super().__init__(code)
        self.code = code
        self.error = error


def code_of(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", "")) or str(
        e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


def compliance_lock(until: datetime) -> dict[str, Any]:
    """The arguments that write an object under COMPLIANCE retention until `until`."""
    return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}


def version_of(head: Any) -> dict[str, Any]:
    """The arguments that address the very version a HEAD (or listing) answered for."""
    return {"VersionId": head["VersionId"]} if head.get("VersionId") else {}


class StreamReader(io.RawIOBase):
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


def _client_config(
    settings: StoreSettings,
    *,
    max_attempts: int,
    max_concurrency: int,
    connect_timeout: float,
    read_timeout: float,
) -> Config:
    # Ceph RGW before flexible checksums needs "when_required"; then Content-MD5 is what
    # the server checks, and verify reads objects back (there is no stored SHA-256).
    mode: Literal["when_supported", "when_required"] = (
        "when_supported" if settings.checksum_mode == "when_supported" else "when_required"
    )
    addressing: Literal["auto", "virtual", "path"] = (
        "virtual"
        if settings.addressing_style == "virtual"
        else "auto"
        if settings.addressing_style == "auto"
        else "path"
    )
    return Config(
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


class BucketClient:
    """One evidence bucket (and key prefix) through boto3, for the parts of the S3 store.

    Names objects, makes each call, and turns every boto3/botocore failure into a StorageError
    (StoreUnavailableError when transient), IntegrityError or ConfigError whose message says
    what to fix."""

    def __init__(
        self,
        settings: StoreSettings,
        credentials: S3Credentials | None,
        *,
        environ: Mapping[str, str] | None,
        max_attempts: int,
        max_concurrency: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        """`credentials` defaults to `resolve_credentials(environ)`; the config file never holds any."""
        if not settings.bucket:
            raise ConfigError(
                "store.bucket is not set", remedy="name the evidence bucket in [store] bucket"
            )
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
        self.endpoint_label = settings.endpoint or f"AWS S3 ({settings.region})"
        self.flexible = settings.checksum_mode == "when_supported"
        self._checked = False
        self._check_lock = threading.Lock()
        self.client = self._make_client(
            _client_config(
                settings,
                max_attempts=max_attempts,
                max_concurrency=max_concurrency,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            )
        )

    def _make_client(self, config: Config) -> S3Client:
        try:
            # Credentials were resolved already; botocore must not go looking for a profile
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
                f"cannot set up the S3 client for {self.endpoint_label}: {e}",
                remedy="check store.endpoint (e.g. https://s3.example.org:8333) and store.region",
            ) from e
        return client

    @functools.cached_property
    def unhashed_reads(self) -> S3Client:
        """The bucket's client, but botocore checks no stored checksum of what a GET returns.

        With `when_supported` botocore asks for the checksum of every GET and, for a single-part
        object, hashes the whole body against it: a second SHA-256 of every byte beside the
        reader's own, which compares the ingest hash (a stronger check than the store's record
        of it) and then runs at half its rate on a small station."""
        return self._make_client(
            self.client.meta.config.merge(Config(response_checksum_validation="when_required"))
        )

    # -- naming ------------------------------------------------------------------------------

    def key_for(self, sha256: str) -> str:
        digest_of(sha256)
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
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint_label}"

    def where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{key}" if key else f"bucket '{self.bucket}'"

    # -- calls ---------------------------------------------------------------------------------

    def call(
        self,
        action: str,
        key: str | None,
        fn: Callable[..., Any],
        *,
        handle: frozenset[str] = frozenset(),
        **kwargs: Any,
    ) -> Any:
        """Call one S3 operation; codes in `handle` come back as ServerSaid, the rest as our errors."""
        try:
            return fn(**kwargs)
        except ClientError as e:
            code = code_of(e)
            if code in handle:
                raise ServerSaid(code, e) from e
            raise self.error(e, action, key) from e
        except BotoCoreError as e:
            raise self.error(e, action, key) from e

    def check_access(self) -> None:
        """Prove once that the bucket exists and the key pair may list it.

        A GET, not HEAD: HEAD answers bare 403/404, and "wrong key" must be told apart from
        "no such bucket" and "no permission"."""
        with self._check_lock:
            if self._checked:
                return
            self.call(
                "list",
                None,
                self.client.list_objects_v2,
                Bucket=self.bucket,
                Prefix=self.prefix,
                MaxKeys=1,
            )
            self._checked = True

    def head(self, key: str, action: str = "look up") -> dict[str, Any] | None:
        """The object's HEAD, with its stored checksum; None when there is no object."""
        self.check_access()
        try:
            response: dict[str, Any] = self.call(
                action,
                key,
                self.client.head_object,
                handle=frozenset({"404", "NoSuchKey", "NotFound"}),
                Bucket=self.bucket,
                Key=key,
                ChecksumMode="ENABLED",
            )
        except ServerSaid:
            return None
        return response

    def reader(self, body: Any, action: str, key: str) -> StreamReader:
        """A response body as a raw stream (read(n) returns at most n bytes, b"" at the end)."""
        return StreamReader(body, lambda e: self.error(e, action, key))

    # -- errors --------------------------------------------------------------------------------

    def error(self, e: Exception, action: str, key: str | None = None) -> EvidenceError:
        """One message per failure, naming what to fix; the caller raises it `from e`."""
        where = self.where(key)
        ep = self.endpoint_label
        if isinstance(e, ClientError):
            return self._server_error(e, action, where)
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
                remedy=CREDENTIAL_SOURCES_HELP,
            )
        if isinstance(e, FlexibleChecksumError):
            return IntegrityError(
                f"cannot {action} {where}: the bytes received do not match the checksum the "
                f"store reports for them ({e})",
                remedy="read it again; if it repeats the stored object is corrupt",
            )
        return StorageError(f"cannot {action} {where}: {type(e).__name__}: {e}")

    def _server_error(self, e: ClientError, action: str, where: str) -> EvidenceError:
        """What an S3 error code the server answered means, and what to do about it."""
        code = code_of(e)
        server_message = str(e.response.get("Error", {}).get("Message", "")).strip()
        said = f": {server_message}" if server_message else ""
        ep = self.endpoint_label
        whose = f"access key {self.credentials.redacted_id} from {self.credentials.source}"
        if code in CREDENTIAL_CODES:
            return StorageError(
                f"cannot {action} {where}: the object store at {ep} rejected the credentials "
                f"({code}) of {whose}",
                remedy="give the station the right key pair: " + CREDENTIAL_SOURCES_HELP,
            )
        if code == "AccessDenied" or code == "403":
            return StorageError(
                f"cannot {action} {where}: the object store at {ep} denied access to {whose}",
                remedy="check the key pair, and that its identity may read, write and list "
                "the bucket and set object retention",
            )
        if code == "NoSuchBucket":
            return StorageError(
                f"cannot {action}: bucket '{self.bucket}' does not exist at {ep}",
                remedy="fix store.bucket, or create the bucket with Object Lock enabled "
                f"(aws s3api create-bucket --bucket {self.bucket} --object-lock-enabled-for-bucket)",
            )
        if code in DIGEST_CODES:
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
        if code in BUSY_CODES or code.startswith("5"):
            return StoreUnavailableError(
                f"cannot {action} {where}: the object store at {ep} is failing ({code}{said}), "
                "even after retries",
                remedy="check the store's health and logs; clips stay in the spool until it recovers",
            )
        if code == "InvalidRequest":
            return StorageError(
                f"cannot {action} {where}: the object store refused the request "
                f"({server_message or code})",
                remedy="the bucket may lack Object Lock: run `evidence-agent storage check`",
            )
        return StorageError(
            f"cannot {action} {where}: the object store at {ep} answered {code}{said}"
        )
