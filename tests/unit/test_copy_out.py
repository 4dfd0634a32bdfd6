"""The verified copy-out's file work: hashing while copying, and placing without replacing."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from blake3 import blake3

from evidence_agent.errors import StorageError
from evidence_agent.services.copy_out import copy_and_hash, place


def test_place_never_replaces_a_file(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_text("first")
    for n in range(2):
        tmp = tmp_path / f".t{n}.part"
        tmp.write_text(f"copy {n}")
        place(tmp, tmp_path, "a.mp4")
        assert not tmp.exists()
    assert (tmp_path / "a.mp4").read_text() == "first"
    assert (tmp_path / "a-2.mp4").read_text() == "copy 0"
    assert (tmp_path / "a-3.mp4").read_text() == "copy 1"


@pytest.mark.parametrize("size", [1, 4096, 3 * 65536 + 17])
def test_a_local_object_is_copied_and_hashed(tmp_path: Path, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    source = tmp_path / "object"
    source.write_bytes(data)
    target = tmp_path / "copy"
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with source.open("rb") as src:
            digest, copied = copy_and_hash(src, fd, 65536, lambda e: StorageError(str(e)))
    finally:
        os.close(fd)
    assert copied == size and target.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()


def test_a_copy_is_hashed_with_blake3_when_asked(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    fd = os.open(tmp_path / "copy", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        digest, copied = copy_and_hash(
            io.BytesIO(data), fd, 65536, lambda e: StorageError(str(e)), "blake3"
        )
    finally:
        os.close(fd)
    assert (digest, copied) == (blake3(data).hexdigest(), len(data))


def test_a_stream_is_hashed_on_its_way(tmp_path: Path) -> None:
    data = os.urandom(200_000)
    fd = os.open(tmp_path / "copy", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        digest, copied = copy_and_hash(io.BytesIO(data), fd, 65536, lambda e: StorageError(str(e)))
    finally:
        os.close(fd)
    assert (digest, copied) == (hashlib.sha256(data).hexdigest(), len(data))
