"""Clearing decisions and the erase guard: pure rules with plain values, and unlink on a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evidence_agent.errors import InputError, StorageError
from evidence_agent.io.volume_reader import VolumeFile
from evidence_agent.services.clearing import (
    SourceFacts,
    build_writable_mount_command,
    decide_erase,
    erase_file,
    writable_mount_options,
)

SHA = "a" * 64
OTHER = "b" * 64
FILE = VolumeFile(b"DCIM/100MEDIA/A.MP4", 1000, 123)
SOURCE = SourceFacts(1000, 123)


def decide(**overrides: object) -> tuple[bool, str, bool]:
    args: dict[str, object] = {
        "clip_state": "stored",
        "ingest_sha256": SHA,
        "verified_sha256": SHA,
    }
    file = overrides.pop("file", FILE)
    source = overrides.pop("source", SOURCE)
    args.update(overrides)
    d = decide_erase(file, source, **args)  # type: ignore[arg-type]
    return d.erase, d.reason, d.integrity_failure


def test_erase_only_when_stored_and_verified_against_the_ingest_hash() -> None:
    assert decide()[0] is True


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"source": None}, "not ingested"),
        ({"ingest_sha256": None}, "not ingested"),
        ({"file": VolumeFile(FILE.rel, 1001, 123)}, "changed on the recorder"),
        ({"file": VolumeFile(FILE.rel, 1000, 124)}, "changed on the recorder"),
        ({"clip_state": "spooled"}, "clip is spooled, not stored"),
        ({"clip_state": None}, "clip is missing"),
        ({"verified_sha256": None}, "not verified"),
    ],
)
def test_anything_less_keeps_the_file(overrides: dict[str, object], reason: str) -> None:
    erase, why, integrity = decide(**overrides)
    assert not erase and reason in why and not integrity


def test_a_stored_copy_with_another_hash_is_an_integrity_failure_and_kept() -> None:
    erase, why, integrity = decide(verified_sha256=OTHER)
    assert not erase and integrity and OTHER in why


def test_writable_mount_is_rw_hardened_and_owned_by_the_agent() -> None:
    opts = writable_mount_options("vfat", 990, 991)
    assert opts[:4] == ("rw", "nosuid", "nodev", "noexec")
    assert "uid=990" in opts and "gid=991" in opts and "dmask=0077" in opts
    assert "noload" not in writable_mount_options("ext4", 0, 0)
    assert build_writable_mount_command("/dev/sdb1", Path("/run/m/x"), "exfat", 1, 2) == [
        "mount",
        "-t",
        "exfat",
        "-o",
        "rw,nosuid,nodev,noexec,uid=1,gid=2,fmask=0377,dmask=0077",
        "/dev/sdb1",
        "/run/m/x",
    ]
    with pytest.raises(InputError):
        build_writable_mount_command("/dev/../etc/passwd", Path("/x"), None, 0, 0)
    with pytest.raises(InputError):
        writable_mount_options("iso9660", 0, 0)


def test_erase_file_unlinks_only_the_unchanged_regular_file(tmp_path: Path) -> None:
    media = tmp_path / "DCIM"
    media.mkdir()
    target = media / "A.MP4"
    target.write_bytes(b"x" * 10)
    st = target.stat()
    facts = SourceFacts(st.st_size, st.st_mtime_ns)
    with pytest.raises(InputError, match="changed"):
        erase_file(tmp_path, b"DCIM/A.MP4", SourceFacts(11, st.st_mtime_ns))
    assert target.exists()
    erase_file(tmp_path, b"DCIM/A.MP4", facts)
    assert not target.exists()


def test_erase_file_never_follows_a_symlinked_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "A.MP4"
    victim.write_bytes(b"keep me")
    volume = tmp_path / "volume"
    volume.mkdir()
    os.symlink(outside, volume / "DCIM")
    st = victim.stat()
    with pytest.raises(StorageError, match="Not a directory"):
        erase_file(volume, b"DCIM/A.MP4", SourceFacts(st.st_size, st.st_mtime_ns))
    assert victim.exists()
