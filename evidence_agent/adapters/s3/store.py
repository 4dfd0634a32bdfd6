"""Evidence objects in S3-compatible storage: Object Lock COMPLIANCE, server-checked SHA-256, no overwrite."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

from botocore.exceptions import BotoCoreError, ClientError

from evidence_agent.adapters.s3 import upload
from evidence_agent.adapters.s3.checksums import SHA256_HEX, MiB, digest_of
from evidence_agent.adapters.s3.client import BucketClient, ServerSaid
from evidence_agent.adapters.s3.credentials import S3Credentials
from evidence_agent.adapters.s3.locks import PERMANENT_RETAIN_UNTIL, ObjectLocks
from evidence_agent.adapters.s3.multipart import (
    DEFAULT_PART_SIZE,
    MIN_PART_SIZE,
    MultipartUploader,
    PartProgress,
)
from evidence_agent.adapters.s3.probes import EvidenceProbes
from evidence_agent.adapters.s3.verify import verify_object
from evidence_agent.config import StoreSettings
from evidence_agent.errors import ConfigError, InputError, NotFoundError
from evidence_agent.ports import Clock, StoredObject

log = logging.getLogger(__name__)

# Below this one PUT carries the ingest SHA-256 and the server keeps the full-object SHA-256:
# no local hashing and the strongest record; an interrupted PUT is sent again whole. Above,
# multipart uploads resume part by part (recorders write files of up to 4 GiB).
DEFAULT_MULTIPART_THRESHOLD = 1024 * MiB


class S3ObjectStore:
    """The ObjectStore port over boto3, for any S3 store with Object Lock (SeaweedFS, Ceph RGW, AWS).

    Objects live at `<prefix>sha256/<aa>/<bb>/<sha256>`, each written once with COMPLIANCE
    retention and a SHA-256 the server checks against the bytes it receives. Every boto3/botocore
    failure leaves this class as a StorageError (StoreUnavailableError when transient),
    IntegrityError or ConfigError whose message says what to fix.

    The work is done by its parts: `s3` (client.py: the bucket, naming, error translation),
    multipart.py, upload.py and verify.py, `ObjectLocks` (locks.py) and `EvidenceProbes`
    (probes.py). What this class decides itself is the retention a new object is written with
    (`_retain_until`) and whether a clip goes up in one PUT or in parts."""

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
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"the multipart part size must be at least {MIN_PART_SIZE} bytes")
        if multipart_threshold < 1 or max_concurrency < 1 or max_attempts < 1:
            raise ConfigError("multipart threshold, concurrency and attempts must be positive")
        self.s3 = BucketClient(
            settings,
            credentials,
            environ=environ,
            max_attempts=max_attempts,
            max_concurrency=max_concurrency,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self.settings = settings
        self.credentials = self.s3.credentials
        self.bucket = self.s3.bucket
        self.prefix = self.s3.prefix
        self.multipart_threshold = multipart_threshold
        self._clock = clock
        self._multipart = MultipartUploader(
            self.s3,
            part_size=part_size,
            max_concurrency=max_concurrency,
            resume_attempts=resume_attempts,
            resume_backoff=resume_backoff,
        )
        self._locks = ObjectLocks(self.s3, self._now)
        self._probes = EvidenceProbes(self.s3)

    # -- naming and time -----------------------------------------------------------------------

    def key_for(self, sha256: str) -> str:
        return self.s3.key_for(sha256)

    def artefact_key(self, name: str) -> str:
        """The full key of a small artefact (`checkpoints/...`, `canary/...`) under the prefix."""
        return self.s3.artefact_key(name)

    def describe(self) -> str:
        return self.s3.describe()

    def _now(self) -> datetime:
        now = self._clock.now() if self._clock is not None else datetime.now(UTC)
        if now.tzinfo is None:
            raise InputError("the clock returned a naive datetime")
        return now

    def _retain_until(self, retain_until: datetime | None) -> datetime:
        """The COMPLIANCE date a new object (clip or artefact) is written with: the caller's (the
        catalog's, for a clip), or PERMANENT_RETAIN_UNTIL when None (kept for good). The store
        never picks a period of its own: retention is the station's policy."""
        now = self._now()
        if retain_until is None:
            return PERMANENT_RETAIN_UNTIL
        if retain_until.tzinfo is None:
            raise InputError("retain_until must be timezone-aware")
        if retain_until <= now:
            raise InputError(f"retain_until {retain_until.isoformat()} is not in the future")
        return retain_until

    # -- the ObjectStore port ----------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return self.s3.head(self.key_for(sha256)) is not None

    def iter_keys(self) -> Iterator[str]:
        """Every stored object's SHA-256, from a listing of `<prefix>sha256/`."""
        self.s3.check_access()
        listing = self.prefix + "sha256/"
        paginator = self.s3.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=listing):
                for item in page.get("Contents", []):
                    name = item["Key"].rsplit("/", 1)[-1]
                    if SHA256_HEX.fullmatch(name) and item["Key"] == self.key_for(name):
                        yield name
        except (ClientError, BotoCoreError) as e:
            raise self.s3.error(e, "list", listing) from e

    def open(self, sha256: str) -> BinaryIO:
        """The stored bytes as a stream, for a caller that hashes every byte it reads (the port
        says so) and compares the ingest hash: botocore does not hash them a second time."""
        key = self.key_for(sha256)
        self.s3.check_access()
        try:
            response = self.s3.call(
                "read",
                key,
                self.s3.unhashed_reads.get_object,
                handle=frozenset({"404", "NoSuchKey"}),
                Bucket=self.bucket,
                Key=key,
            )
        except ServerSaid as e:
            raise NotFoundError(f"no object stored under {self.s3.where(key)}") from e.error
        return cast(BinaryIO, self.s3.reader(response["Body"], "read", key))

    def verify(self, sha256: str, *, read_back: bool = False) -> StoredObject:
        """Check that the object stored under `sha256` is a full-object SHA-256 match (the
        steps are in verify.py); IntegrityError on any mismatch or when it is missing."""
        return verify_object(
            self.s3, sha256, read_back=read_back, uploaded_composites=self._multipart.composites
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
        source_checked: bool = False,
    ) -> StoredObject:
        """Store the spool file under its SHA-256 with COMPLIANCE retention, never overwriting.

        Below `multipart_threshold` one PUT carries the SHA-256 (base64) that the server checks
        against the bytes. Above, each part carries its own SHA-256, the state file (default
        `<source>.upload.json`) records the upload id and confirmed parts so a later call resumes,
        the whole file is hashed on the way and must equal `sha256`, and the server's composite
        checksum must equal the one computed here. An object already stored under the key is
        success when it verifies and IntegrityError when it does not; its retention is extended
        to `retain_until` when shorter. The server checks every byte, so `source_checked`
        (ports.ObjectStore.put) saves nothing here.

        `on_part` is called from this thread after each part is on the server and in the state
        file; an exception from it stops the upload (parts in flight are recorded first)."""
        digest = digest_of(sha256)
        key = self.key_for(sha256)
        until = self._retain_until(retain_until)
        upload.check_spool_size(source, size)
        state_file = state_path or source.with_name(source.name + ".upload.json")
        existing = self.s3.head(key, "look up")
        if existing is not None:
            stored = upload.check_existing(self.s3, sha256, key, existing, until)
            self._multipart.forget(state_file, abort=True)
            return stored
        if size >= self.multipart_threshold:
            return self._multipart.put(
                sha256, digest, key, source, size, until, state_file, on_part
            )
        return upload.put_single(self.s3, sha256, digest, key, source, size, until)

    # -- small artefacts (custody checkpoints, canaries) ---------------------------------------

    def put_bytes(self, key: str, data: bytes, retain_until: datetime | None) -> StoredObject:
        """Store a small artefact under `<prefix><key>` with COMPLIANCE retention, never overwriting.

        The same bytes already there are success; different bytes are IntegrityError."""
        full_key = self.artefact_key(key)
        return upload.put_bytes(self.s3, full_key, data, self._retain_until(retain_until))

    def get_bytes(self, key: str) -> bytes:
        """A small artefact's bytes (NotFoundError when absent)."""
        return upload.get_bytes(self.s3, self.artefact_key(key))

    # -- evidence-mode probes (services/storage_check.py) ----------------------------------------

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock enabled (it cannot be turned on later for AWS)."""
        return self._probes.object_lock_enabled()

    def retention_of(self, key: str) -> tuple[str | None, datetime | None]:
        """(mode, retain-until) of the current version of an artefact."""
        return self._probes.retention_of(self.artefact_key(key))

    def probe_delete(self, key: str) -> bool:
        """Try to delete the current version of an artefact, bypassing governance retention.

        True when the store deleted it (no WORM), False when it refused."""
        return self._probes.delete(self.artefact_key(key))

    def probe_wrong_checksum(self, key: str, retain_until: datetime | None) -> bool:
        """PUT bytes with the checksum of other bytes. True when the store accepted them."""
        full_key = self.artefact_key(key)
        return self._probes.wrong_checksum(full_key, self._retain_until(retain_until))

    def probe_overwrite(self, key: str, retain_until: datetime | None) -> bool:
        """PUT other bytes with If-None-Match: * over an existing artefact. True when accepted."""
        full_key = self.artefact_key(key)
        return self._probes.overwrite(full_key, self._retain_until(retain_until))

    # -- retention kept in step with the catalog, and deletion (review/retention.py) -------------

    def extend_retention(self, sha256: str, until: datetime | None) -> None:
        """Make the stored clip's COMPLIANCE lock last at least until `until` (None: kept for
        good); never shorten it. See ObjectLocks.extend_retention."""
        self._locks.extend_retention(sha256, until)

    def set_legal_hold(self, sha256: str, on: bool) -> None:
        """Put the stored clip under an S3 legal hold (`on`) or lift it, on every version."""
        self._locks.set_legal_hold(sha256, on)

    def delete_object(self, sha256: str) -> None:
        """Remove the clip's object for good once no lock holds it; ObjectLockedError while one
        does. See ObjectLocks.delete_object."""
        self._locks.delete_object(sha256)
