"""Streaming file hashes, and the one way digests are compared."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from evidence_agent.errors import IntegrityError


def hash_file(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a local file, read in chunks: memory stays small whatever its size."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def check_digest(expected: str, actual: str, what: str, algorithm: str = "SHA-256") -> None:
    """Constant-time comparison; a mismatch is an integrity failure, never a warning."""
    if not hmac.compare_digest(expected.encode(), actual.encode()):
        raise IntegrityError(f"{what}: {algorithm} is {actual}, expected {expected}")
