"""Checksum arithmetic of the S3 store: base64 digests, S3's composite checksum, hashing a read back."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any, Protocol

from evidence_agent.errors import InputError

MiB = 1024 * 1024
READ_CHUNK = 1 * MiB
# x-amz-meta-part-size on a multipart object: lets a read back recompute its composite checksum.
PART_SIZE_METADATA = "part-size"

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_sha256(part_digests: list[bytes]) -> str:
    """S3's COMPOSITE checksum of a multipart object: base64(sha256(d1 || d2 || ...)) + "-N"."""
    return f"{b64(hashlib.sha256(b''.join(part_digests)).digest())}-{len(part_digests)}"


def is_composite(checksum: str | None) -> bool:
    """A checksum of part checksums ("...-N"), not a SHA-256 of the object's bytes."""
    return checksum is not None and "-" in checksum


def digest_of(sha256: str) -> bytes:
    if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
        raise InputError(f"{sha256!r} is not a lowercase hex SHA-256 (64 characters)")
    return bytes.fromhex(sha256)


def same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def checksum_headers(data: bytes, *, flexible: bool) -> dict[str, Any]:
    """What a PUT of `data` carries for the server to check: its SHA-256, or Content-MD5 for a
    store without flexible checksums (older Ceph RGW)."""
    if flexible:
        return {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64(hashlib.sha256(data).digest())}
    return {"ContentMD5": b64(hashlib.md5(data, usedforsecurity=False).digest())}


class _ReadsInto(Protocol):
    def readinto(self, buffer: bytearray) -> int: ...


@dataclass(frozen=True)
class StreamHash:
    """The SHA-256 of a stream read whole, its length, and the SHA-256 of each part of it."""

    sha256: bytes
    size: int
    part_digests: list[bytes]


def hash_stream(body: _ReadsInto, part_size: int = 0) -> StreamHash:
    """Read `body` to its end, hashing it whole and, when `part_size` is set, part by part."""
    whole = hashlib.sha256()
    part = hashlib.sha256()
    part_digests: list[bytes] = []
    in_part = 0
    size = 0
    buffer = bytearray(READ_CHUNK)
    while n := body.readinto(buffer):
        chunk = memoryview(buffer)[:n]
        whole.update(chunk)
        size += n
        while part_size and len(chunk):
            take = min(len(chunk), part_size - in_part)
            part.update(chunk[:take])
            in_part += take
            chunk = chunk[take:]
            if in_part == part_size:
                part_digests.append(part.digest())
                part, in_part = hashlib.sha256(), 0
    if part_size and in_part:
        part_digests.append(part.digest())
    return StreamHash(whole.digest(), size, part_digests)
