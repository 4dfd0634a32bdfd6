"""Checking a stored object against its SHA-256: the server's own checksum, or the bytes read back."""

from __future__ import annotations

import base64
import contextlib
import hmac
from collections.abc import Mapping, MutableMapping
from typing import Any

from evidence_agent.adapters.s3.checksums import (
    PART_SIZE_METADATA,
    b64,
    composite_sha256,
    digest_of,
    hash_stream,
    is_composite,
    same,
)
from evidence_agent.adapters.s3.client import BucketClient, version_of
from evidence_agent.adapters.s3.errors import StoreUnavailableError
from evidence_agent.errors import IntegrityError
from evidence_agent.ports import StoredObject


def verify_object(
    s3: BucketClient,
    sha256: str,
    *,
    read_back: bool,
    uploaded_composites: MutableMapping[str, str],
) -> StoredObject:
    """Check that the object stored under `sha256` is a full-object SHA-256 match.

    1. HEAD with ChecksumMode=ENABLED: the object must exist.
    2. A single-part object carries the full-object SHA-256 the server computed over the bytes
       it received (and refused the write on mismatch): compare it with `sha256`.
    3. A multipart object carries only a COMPOSITE checksum (a hash of part hashes), and an
       object written in `when_required` mode none at all: neither is a SHA-256 of the object.
       When this store has just uploaded it (its composite is in `uploaded_composites`, taken
       out here: it is used once), the upload hashed the spool file whole (equal to `sha256`)
       from the very bytes it sent, the server checked each part's SHA-256, and its composite
       equalled the one computed from those parts: a composite equal to that one is then the
       same proof for the object that a full-object SHA-256 is for a single-part one, and
       nothing is read back. Otherwise the object is read back and hashed whole (the composite
       is recomputed on the way and compared too). `read_back=True` forces a read back in every
       case: an audit of the bytes rather than of the server's record of them.
    Raises IntegrityError on any mismatch or when the object is missing."""
    expected = digest_of(sha256)
    key = s3.key_for(sha256)
    head = s3.head(key, "verify")
    if head is None:
        raise IntegrityError(
            f"no object is stored under {s3.where(key)}",
            remedy="upload the clip again from the spool; if the spool copy is gone, the "
            "object was lost or hidden by a delete marker: check the bucket's versions",
        )
    stored = StoredObject(key=key, size=int(head["ContentLength"]), sha256=sha256)
    server_checksum: str | None = head.get("ChecksumSHA256")
    if server_checksum and not is_composite(server_checksum) and not read_back:
        if not same(server_checksum, b64(expected)):
            raise IntegrityError(
                f"the object stored under {s3.where(key)} has SHA-256 "
                f"{base64.b64decode(server_checksum).hex()} per the store, not {sha256}",
                remedy="the stored object is not the clip; keep the spool copy and report it",
            )
        return stored
    uploaded = uploaded_composites.pop(sha256, None)
    if not read_back and is_composite(server_checksum) and same(uploaded, server_checksum or ""):
        return stored
    read_back_and_check(s3, key, head, expected, server_checksum)
    return stored


def read_back_and_check(
    s3: BucketClient,
    key: str,
    head: Mapping[str, Any],
    expected: bytes,
    server_checksum: str | None,
) -> None:
    """Read the version `head` describes back whole: its SHA-256 must be `expected`, and a
    composite checksum must be that of its parts (their size is in the object's metadata)."""
    part_size = 0
    with contextlib.suppress(ValueError, TypeError):
        part_size = int(head.get("Metadata", {}).get(PART_SIZE_METADATA, "0"))
    composite_parts = is_composite(server_checksum) and part_size > 0
    response = s3.call(
        "read back", key, s3.client.get_object, Bucket=s3.bucket, Key=key, **version_of(head)
    )
    with s3.reader(response["Body"], "read back", key) as body:
        read = hash_stream(body, part_size if composite_parts else 0)
    if read.size != int(head["ContentLength"]):
        raise StoreUnavailableError(
            f"reading back {s3.where(key)} ended after {read.size} of "
            f"{head['ContentLength']} bytes",
            remedy="verify again once the store is reachable",
        )
    if not hmac.compare_digest(read.sha256, expected):
        raise IntegrityError(
            f"the object stored under {s3.where(key)} read back with SHA-256 "
            f"{read.sha256.hex()}, not {expected.hex()}",
            remedy="the stored object is corrupt or not the clip; keep the spool copy and report it",
        )
    if composite_parts and server_checksum is not None:
        recomputed = composite_sha256(read.part_digests)
        if not same(server_checksum, recomputed):
            raise IntegrityError(
                f"the composite checksum the store reports for {s3.where(key)} "
                f"({server_checksum}) does not match its bytes ({recomputed})",
                remedy="the store's record of the object is inconsistent; report it",
            )
