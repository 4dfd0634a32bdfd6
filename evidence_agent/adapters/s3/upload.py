"""Writing to the evidence bucket: a clip in one PUT, small artefacts, and an object found already there."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from evidence_agent.adapters.s3.checksums import (
    READ_CHUNK,
    b64,
    checksum_headers,
    is_composite,
    same,
)
from evidence_agent.adapters.s3.client import (
    DIGEST_CODES,
    BucketClient,
    ServerSaid,
    compliance_lock,
)
from evidence_agent.adapters.s3.locks import extend_current_retention
from evidence_agent.adapters.s3.verify import read_back_and_check
from evidence_agent.errors import IntegrityError, NotFoundError, StorageError
from evidence_agent.ports import StoredObject

log = logging.getLogger(__name__)


def unreadable_spool(source: Path, e: OSError) -> StorageError:
    return StorageError(
        f"cannot read spool file {source}: {e.strerror}",
        remedy="check the spool directory and its permissions",
    )


def check_spool_size(source: Path, size: int) -> None:
    """The spool file must still have the size recorded at ingest."""
    try:
        actual = source.stat().st_size
    except OSError as e:
        raise unreadable_spool(source, e) from e
    if actual != size:
        raise IntegrityError(
            f"spool file {source} has {actual} bytes, {size} were recorded at ingest",
            remedy="the spool copy changed; do not clear the recorder, re-ingest from it",
        )


def put_single(
    s3: BucketClient,
    sha256: str,
    digest: bytes,
    key: str,
    source: Path,
    size: int,
    until: datetime,
) -> StoredObject:
    """One PUT carrying the SHA-256 the server checks, written only if nothing is under `key`."""
    try:
        with source.open("rb") as f:
            if s3.flexible:
                checksum: dict[str, Any] = {
                    "ChecksumAlgorithm": "SHA256",
                    "ChecksumSHA256": b64(digest),
                }
            else:
                checksum = {"ContentMD5": b64(_md5_checking_sha256(f, digest, source))}
                f.seek(0)
            try:
                response = s3.call(
                    "upload",
                    key,
                    s3.client.put_object,
                    handle=frozenset({"PreconditionFailed", *DIGEST_CODES}),
                    Bucket=s3.bucket,
                    Key=key,
                    Body=f,
                    ContentLength=size,
                    ContentType="application/octet-stream",
                    IfNoneMatch="*",
                    **compliance_lock(until),
                    **checksum,
                )
            except ServerSaid as e:
                if e.code == "PreconditionFailed":
                    return stored_by_someone_else(s3, sha256, key, until)
                raise IntegrityError(
                    f"the object store refused spool file {source}: its bytes do not hash to "
                    f"the SHA-256 recorded at ingest, {sha256} ({e.code})",
                    remedy="the spool copy is corrupt or changed; do not clear the recorder, "
                    "re-ingest from it",
                ) from e.error
    except OSError as e:
        raise unreadable_spool(source, e) from e
    reported: str | None = response.get("ChecksumSHA256")
    if reported is not None and not same(reported, b64(digest)):
        raise IntegrityError(
            f"the object store reports SHA-256 {reported} for {s3.where(key)}, "
            f"not the {b64(digest)} it was sent",
            remedy="the store did not keep what it accepted; report it",
        )
    log.info("stored %s (%d bytes) in %s", sha256, size, s3.describe())
    return StoredObject(key=key, size=size, sha256=sha256)


def _md5_checking_sha256(f: BinaryIO, digest: bytes, source: Path) -> bytes:
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


def _hidden(s3: BucketClient, key: str) -> StorageError:
    return StorageError(
        f"the object store refused to write {s3.where(key)} because it exists, "
        "but it cannot be found",
        remedy="a delete marker may hide it: check the bucket's versions",
    )


def stored_by_someone_else(
    s3: BucketClient, sha256: str, key: str, until: datetime
) -> StoredObject:
    """A conditional write lost to an existing object: equal content is success."""
    head = s3.head(key, "look up")
    if head is None:
        raise _hidden(s3, key)
    return check_existing(s3, sha256, key, head, until)


def check_existing(
    s3: BucketClient, sha256: str, key: str, head: Mapping[str, Any], until: datetime
) -> StoredObject:
    """An object already under the clip's key: success when it is the clip (its lock then
    extended to `until` when shorter), IntegrityError when it is not; never overwritten."""
    checksum: str | None = head.get("ChecksumSHA256")
    if checksum and not is_composite(checksum):
        if not same(checksum, b64(bytes.fromhex(sha256))):
            raise IntegrityError(
                f"an object with different content is already stored under "
                f"{s3.where(key)} (SHA-256 {base64.b64decode(checksum).hex()}); "
                "it was not overwritten",
                remedy="the stored object is not the clip; keep the spool copy and report it",
            )
    else:
        read_back_and_check(s3, key, head, bytes.fromhex(sha256), checksum)
    extend_current_retention(s3, key, head, until)
    return StoredObject(key=key, size=int(head["ContentLength"]), sha256=sha256)


# -- small artefacts (custody checkpoints, canaries) -------------------------------------------


def put_bytes(s3: BucketClient, full_key: str, data: bytes, until: datetime) -> StoredObject:
    """Store a small artefact under `full_key` with COMPLIANCE retention, never overwriting.

    The same bytes already there are success; different bytes are IntegrityError."""
    digest = hashlib.sha256(data).digest()
    s3.check_access()
    try:
        s3.call(
            "publish",
            full_key,
            s3.client.put_object,
            handle=frozenset({"PreconditionFailed"}),
            Bucket=s3.bucket,
            Key=full_key,
            Body=data,
            ContentLength=len(data),
            IfNoneMatch="*",
            **compliance_lock(until),
            **checksum_headers(data, flexible=s3.flexible),
        )
    except ServerSaid:
        if not _same_artefact(s3, full_key, digest):
            raise IntegrityError(
                f"different content is already stored under {s3.where(full_key)}; "
                "it was not overwritten",
                remedy="two writers produced different artefacts under one name; report it",
            ) from None
    return StoredObject(key=full_key, size=len(data), sha256=digest.hex())


def _same_artefact(s3: BucketClient, full_key: str, digest: bytes) -> bool:
    """Whether the artefact already under `full_key` has the SHA-256 `digest`."""
    head = s3.head(full_key, "look up")
    if head is None:
        raise _hidden(s3, full_key) from None
    stored_checksum: str | None = head.get("ChecksumSHA256")
    if stored_checksum and not is_composite(stored_checksum):
        return same(stored_checksum, b64(digest))
    return hmac.compare_digest(hashlib.sha256(get_bytes(s3, full_key)).digest(), digest)


def get_bytes(s3: BucketClient, full_key: str) -> bytes:
    """A small artefact's bytes (NotFoundError when absent)."""
    s3.check_access()
    try:
        response = s3.call(
            "read",
            full_key,
            s3.client.get_object,
            handle=frozenset({"404", "NoSuchKey"}),
            Bucket=s3.bucket,
            Key=full_key,
            ChecksumMode="ENABLED",
        )
    except ServerSaid as e:
        raise NotFoundError(f"no artefact stored under {s3.where(full_key)}") from e.error
    with s3.reader(response["Body"], "read", full_key) as body:
        return body.read()
