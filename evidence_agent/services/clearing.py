"""Clearing a recorder after ingest: a file is erased only once its stored copy is read back and matches the ingest hash.

Off by default (dock.clear_recorder). The decision is a pure function; erasing needs a read-write
mount of the recorder, which only this module asks for (`WritableMounter`), after the read-only
mount used for ingest is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlmodel import select

from evidence_agent.adapters.mounter import (
    FILESYSTEMS,
    DirectoryMounter,
    SystemMounter,
    check_devnode,
    classify_mount_failure,
    mount_point_name,
)
from evidence_agent.catalog.models import Clip, ClipSource, Recorder
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.domain.states import ClipState
from evidence_agent.errors import EvidenceError, InputError, IntegrityError, StorageError
from evidence_agent.io.volume_reader import VolumeFile, display_path, list_volume
from evidence_agent.services.station import Station

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# -- pure: may this file be erased? ------------------------------------------------------------


@dataclass(frozen=True)
class SourceFacts:
    """What was recorded about the file when it was read (its ClipSource row)."""

    size: int
    mtime_ns: int


@dataclass(frozen=True)
class EraseDecision:
    erase: bool
    reason: str
    integrity_failure: bool = False


def decide_erase(
    file: VolumeFile,
    source: SourceFacts | None,
    *,
    clip_state: str | None,
    ingest_sha256: str | None,
    verified_sha256: str | None,
) -> EraseDecision:
    """Erase only a file that (1) was read from this recorder, (2) has not changed since, (3) whose
    clip is stored, and (4) whose stored copy was just read back with the ingest hash.

    `verified_sha256` is what the store's read-back gave (None when it was not verified)."""
    # 1. The file must be one this recorder's dock read: same path, size and mtime.
    if source is None or ingest_sha256 is None:
        return EraseDecision(False, "not ingested from this recorder")
    # 2. A file rewritten since it was read holds content nobody has a copy of.
    if (file.size, file.mtime_ns) != (source.size, source.mtime_ns):
        return EraseDecision(False, "changed on the recorder since it was read")
    # 3. Catalogued but still in the spool (or deleted by retention): not safe to erase.
    if clip_state != ClipState.STORED:
        return EraseDecision(False, f"clip is {clip_state or 'missing'}, not stored")
    # 4. The stored copy was read back just now and hashes to the ingest hash.
    if verified_sha256 is None:
        return EraseDecision(False, "stored copy not verified")
    if not hmac.compare_digest(verified_sha256.encode(), ingest_sha256.encode()):
        return EraseDecision(
            False,
            f"stored copy hashes to {verified_sha256}, ingest hash {ingest_sha256}",
            integrity_failure=True,
        )
    return EraseDecision(True, "stored copy verified: its hash equals the ingest hash")


# -- the writable mount ------------------------------------------------------------------------


@runtime_checkable
class WritableMounter(Protocol):
    """A mounter that can also mount a recorder read-write, for clearing only."""

    def mount_writable(self, devnode: str, device_id: str, *, fs_type: str | None = None) -> Path:
        """Mount read-write (still nosuid,nodev,noexec) and return the directory."""
        ...

    def unmount(self, path: Path) -> None: ...


def writable_mount_options(fs_type: str | None, uid: int, gid: int) -> tuple[str, ...]:
    """Options of the clearing mount: read-write, files owned by the agent so it may unlink them.

    FAT-family volumes get the agent's uid/gid and owner-only directory write bits; ext volumes
    keep their on-disk owners (the agent must own the files, see docs/docking.md)."""
    base = ("rw", "nosuid", "nodev", "noexec")
    if fs_type is None:
        return base
    found = FILESYSTEMS.get(fs_type.lower())
    if found is None:
        raise InputError(f"the volume's filesystem {fs_type!r} is not one the agent mounts")
    kernel_type, extra = found
    if kernel_type in ("vfat", "exfat", "ntfs3"):
        return (*base, f"uid={uid}", f"gid={gid}", "fmask=0377", "dmask=0077")
    return base + tuple(o for o in extra if o != "noload")  # a rw mount replays the journal


def build_writable_mount_command(
    devnode: str, target: Path, fs_type: str | None, uid: int, gid: int
) -> list[str]:
    check_devnode(devnode)
    command = ["mount"]
    if fs_type is not None:
        found = FILESYSTEMS.get(fs_type.lower())
        if found is None:
            raise InputError(f"the volume's filesystem {fs_type!r} is not one the agent mounts")
        command += ["-t", found[0]]
    options = writable_mount_options(fs_type, uid, gid)
    return [*command, "-o", ",".join(options), devnode, str(target)]


class ClearingSystemMounter(SystemMounter):
    """SystemMounter plus the read-write mount used only to clear verified files."""

    def mount_writable(self, devnode: str, device_id: str, *, fs_type: str | None = None) -> Path:
        target = self.mount_root / (mount_point_name(device_id) + "-clear")
        command = build_writable_mount_command(devnode, target, fs_type, os.geteuid(), os.getegid())
        self._prepare_root()
        try:
            target.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise StorageError(f"cannot create mount point {target}: {e}") from e
        result = self._run(command)
        if result.returncode != 0:
            with contextlib.suppress(OSError):
                target.rmdir()
            raise classify_mount_failure(devnode, result)
        log.info("mounted %s read-write at %s to clear verified files", devnode, target)
        return target


class DirectoryWritableMounter(DirectoryMounter):
    """Test double: the writable "mount" is the same directory as the read-only one."""

    def mount_writable(self, devnode: str, device_id: str, *, fs_type: str | None = None) -> Path:
        return self.mount(devnode, device_id, fs_type=fs_type)


# -- erasing -----------------------------------------------------------------------------------


@dataclass
class ClearReport:
    erased: list[str] = field(default_factory=list)  # display paths
    kept: dict[str, str] = field(default_factory=dict)  # display path -> reason
    integrity_failures: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "erased": self.erased,
            "kept": self.kept,
            "integrity_failures": self.integrity_failures,
        }


def erase_file(root: Path, rel: bytes, source: SourceFacts) -> None:
    """Unlink one file of the volume without following any link, only if it is still as read."""
    parts = rel.split(b"/")
    try:
        dir_fd = os.open(root, _DIR_FLAGS)
    except OSError as e:
        raise StorageError(f"cannot open the recorder volume {root}: {e.strerror}") from e
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        name = parts[-1]
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (
            source.size,
            source.mtime_ns,
        ):
            raise InputError(f"{display_path(rel)} changed on the recorder; not erased")
        os.unlink(name, dir_fd=dir_fd)
        os.fsync(dir_fd)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise StorageError(
                f"cannot erase {display_path(rel)} from the recorder: {e.strerror}",
                remedy="clearing needs a read-write mount and write access to the device "
                "(docs/docking.md, 'Clearing recorders')",
            ) from e
        raise StorageError(f"cannot erase {display_path(rel)}: {e.strerror}") from e
    finally:
        os.close(dir_fd)


def clear_recorder(
    station: Station, volume: Path, recorder_serial: str, *, dock_session_id: str | None = None
) -> ClearReport:
    """Erase every file of the volume whose clip is stored and verified again now.

    Each erase is a custody event, recorded right after the unlink succeeded. An integrity
    failure of a stored copy stops nothing else but keeps that file and is reported."""
    report = ClearReport()
    listing = list_volume(volume)
    with station.reading() as session:
        recorder = session.exec(select(Recorder).where(Recorder.serial == recorder_serial)).first()
        if recorder is None:
            return report
        candidates: list[tuple[VolumeFile, ClipSource | None, Clip | None]] = []
        for file in listing.files:
            source = session.exec(
                select(ClipSource)
                .where(ClipSource.recorder_id == recorder.id)
                .where(ClipSource.source_path_bytes == file.rel)
                .where(ClipSource.size == file.size)
                .where(ClipSource.mtime_ns == file.mtime_ns)
            ).first()
            clip = session.get(Clip, source.clip_id) if source is not None else None
            candidates.append((file, source, clip))
    for file, source, clip in candidates:
        if source is None or clip is None:
            continue  # never read from this recorder (the identity file, logs): not ours to erase
        verified = None
        if clip.state == ClipState.STORED:
            try:
                verified = station.store.verify(clip.sha256).sha256
            except IntegrityError as e:
                report.integrity_failures[file.display] = e.message
                log.error("not erasing %s: %s", file.display, e.message)
                continue
            except EvidenceError as e:
                report.kept[file.display] = f"store not reachable: {e.message}"
                continue
        facts = SourceFacts(source.size, source.mtime_ns)
        decision = decide_erase(
            file,
            facts,
            clip_state=clip.state,
            ingest_sha256=clip.sha256,
            verified_sha256=verified,
        )
        if not decision.erase:
            if decision.integrity_failure:
                report.integrity_failures[file.display] = decision.reason
            else:
                report.kept[file.display] = decision.reason
            continue
        try:
            erase_file(volume, file.rel, facts)
        except InputError as e:
            report.kept[file.display] = e.message
            continue
        with station.transaction() as session:
            station.record(
                session,
                EventType.CLIP_ERASED_FROM_RECORDER.event(
                    clip.id,
                    actor=station.actor,
                    reason="dock.clear_recorder: the stored copy was read back and its hash "
                    "equals the ingest hash; the original was erased from the recorder",
                    sha256=clip.sha256,
                    data=_erase_data(recorder_serial, file, dock_session_id, station),
                ),
            )
        report.erased.append(file.display)
    return report


def _erase_data(
    recorder_serial: str, file: VolumeFile, dock_session_id: str | None, station: Station
) -> dict[str, Any]:
    return {
        "recorder": recorder_serial,
        "source_path": file.display,
        "source_path_hex": file.rel.hex(),
        "size": file.size,
        "dock_session": dock_session_id,
        "store": station.store.describe(),
    }
