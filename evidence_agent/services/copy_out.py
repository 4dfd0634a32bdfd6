"""Verified copy-out: a stored clip read once, hashed while it is written to a target directory,
and checked against its ingest hash before anyone relies on the copy (retrieval, disclosure)."""

from __future__ import annotations

import errno
import hashlib
import hmac
import io
import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from blake3 import blake3
from sqlmodel import col, select

from evidence_agent.catalog.models import Clip, CustodyEntry
from evidence_agent.custody.vocabulary import EventType
from evidence_agent.errors import (
    EvidenceError,
    InputError,
    IntegrityError,
    NotFoundError,
    StorageError,
)
from evidence_agent.io.atomic import fsync_dir, write_atomically
from evidence_agent.io.copying import FileReader, FileWriter, pump
from evidence_agent.io.hashing import check_digest
from evidence_agent.services.station import Station

# Chunks in flight: memory is bounded by _BUFFERS * chunk_bytes. Room to read ahead while the
# target is written and the hash catches up (a device's speed comes and goes, and a network
# stream not read from stalls its sender), but no more. A local object's chunks are read by the
# device straight into these buffers (huge pages: one request a chunk, copying.io_buffers);
# with them, chunks of 512 KiB to 4 MiB copied and hashed a cold GiB here within the host's
# noise of each other, and 1 MiB is a request the disk takes whole for little memory.
_BUFFERS = 4
CHUNK_BYTES = 1 << 20
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.ENOSYS})
_NAMES = {"blake3": "BLAKE3", "sha256": "SHA-256"}
_NAME_REFUSED = frozenset({errno.EINVAL, errno.EILSEQ})  # a character the file system lacks


# (algorithm, hex digest): what a copy is checked by, "blake3" or "sha256" (ingest_hash).
Check = tuple[str, str]


def copy_verified(
    station: Station,
    sha256: str,
    size: int,
    check: Check,
    target: Target,
    chunk_bytes: int,
    what: str,
) -> str:
    """Copy the stored object `sha256` to a temporary file in `target` while hashing it, then
    compare size and hash (constant time) with the recorded ones: `size` and `check` (for a
    clip, its ingest_hash). `what` names it in messages ("clip <id>").

    Returns the temporary file's name in the target, complete, synced, read-only and verified;
    on any failure it is gone. The bytes go through the descriptor the target opened: for a
    caller of the local API, one the caller's own process opened and passed."""
    algorithm, expected = check
    try:
        source = station.store.open(sha256)
    except NotFoundError as e:
        raise IntegrityError(
            f"the stored copy of {what} is missing from {station.store.describe()}"
        ) from e
    try:
        temp, dst = target.create_temp()
        try:
            try:
                digest, copied = copy_and_hash(
                    source, dst, chunk_bytes, lambda e: target_error(e, target.path), algorithm
                )
                os.fsync(dst)
            except OSError as e:
                raise target_error(e, target.path) from e
            finally:
                os.close(dst)
            target.seal(temp)  # a handed-over copy is read-only, like the original
            if copied != size:
                raise IntegrityError(
                    f"the stored copy of {what} has {copied} bytes, the catalog says {size}"
                )
            check_digest(expected, digest, f"stored copy of {what}", _NAMES[algorithm])
        except BaseException:
            target.discard(temp)
            raise
    finally:
        source.close()
    return temp


def identical_in_target(target: Target, name: str, size: int, check: Check) -> Path | None:
    """A file already in `target` that holds exactly the expected bytes, under `name` or a name
    `place` gave instead (`name-2`...): a regular file of `size` bytes whose hash is `check`.
    None when there is none: a different file of that name does not count, and is never
    replaced."""
    algorithm, expected = check
    for candidate in candidates(name):
        exists, fd = target.open_existing(candidate)
        if not exists:
            return None  # place() would take this name: no later one is its
        if fd is None:
            continue
        with os.fdopen(fd, "rb") as f:
            found = os.fstat(f.fileno())
            if not stat.S_ISREG(found.st_mode) or found.st_size != size:
                continue
            hasher = blake3() if algorithm == "blake3" else hashlib.sha256()
            while chunk := f.read(CHUNK_BYTES):
                hasher.update(chunk)
        if _same(hasher.hexdigest(), expected):
            return target.path / candidate
    return None


def ingest_hash(station: Station, clip: Clip) -> tuple[str, str]:
    """The hash a copy of `clip` is checked by, as (algorithm, hex digest), as the clip's ingest
    event in the custody log fixes it: the BLAKE3 where the ingest recorded one, else the SHA-256.

    The catalog row must say the same as the event. The bytes handed over are then those the
    log says were ingested, and the SHA-256 on a receipt is theirs, even though only their
    BLAKE3 was computed: a row edited behind the log's back (as `verify` would report it) hands
    nothing over."""
    with station.reading() as session:
        row = session.exec(
            select(CustodyEntry.seq, CustodyEntry.entry)
            .where(CustodyEntry.station_id == clip.station_id)
            .where(CustodyEntry.subject_id == clip.id)
            .where(CustodyEntry.event_type == EventType.CLIP_INGESTED)
            .order_by(col(CustodyEntry.seq))
        ).first()
    if row is None:
        raise IntegrityError(
            f"clip {clip.id} has no clip.ingested event in the custody log of station "
            f"{clip.station_id}: its catalog row was not made by an ingest",
            remedy="run `evidence-agent verify` and report the finding",
        )
    seq, entry = row
    event = json.loads(entry)
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    logged_sha256, logged_blake3 = event.get("sha256"), data.get("blake3")
    at = f"its ingest event (entry {seq})"
    if not isinstance(logged_sha256, str) or not _same(logged_sha256, clip.sha256):
        raise IntegrityError(
            f"the catalog's SHA-256 of clip {clip.id} is {clip.sha256}, {at} says {logged_sha256}"
        )
    if logged_blake3 is None and clip.blake3 is None:
        return "sha256", clip.sha256  # ingested before BLAKE3 was recorded
    if not isinstance(logged_blake3, str) or not _same(logged_blake3, clip.blake3 or ""):
        raise IntegrityError(
            f"the catalog's BLAKE3 of clip {clip.id} is {clip.blake3}, {at} says {logged_blake3}"
        )
    return "blake3", logged_blake3


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def copy_and_hash(
    source: BinaryIO,
    dst: int,
    chunk_bytes: int,
    write_error: Callable[[OSError], EvidenceError],
    algorithm: str = "sha256",
) -> tuple[str, int]:
    """Copy `source` to the file descriptor `dst`; return the digest (`algorithm`: "sha256" or
    "blake3") and size of what was written.

    A reader thread reads ahead, a second thread hashes while the target is written
    (copying.pump). A local object is read by its descriptor, directly where the file system
    allows it; any other stream (an S3 body) by `read`, its bytes used as they come."""
    try:
        fd = source.fileno()
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        regular = False
    read = FileReader(fd) if regular else _stream_reader(source)
    writer = FileWriter(dst)

    def write(view: memoryview) -> None:
        try:
            writer(view)
        except OSError as e:
            raise write_error(e) from e

    hasher = blake3() if algorithm == "blake3" else hashlib.sha256()

    def digest(view: memoryview) -> None:
        hasher.update(view)

    total = pump(
        read, write, digest, chunk_bytes=chunk_bytes, buffers=_BUFFERS, read_error=_read_error
    )
    return hasher.hexdigest(), total


def _stream_reader(source: BinaryIO) -> Callable[[memoryview], memoryview]:
    """Reads a stream by `read`, not into the pump's buffer: the bytes a network response
    makes are hashed and written as they come, with no copy into the buffer."""

    def read(buf: memoryview) -> memoryview:
        return memoryview(source.read(len(buf)))

    return read


def _read_error(e: OSError) -> StorageError:
    return StorageError(f"cannot read the stored object: {e.strerror or e}")


def target_error(e: OSError, target: Path) -> StorageError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(
            f"the target {target} is full; nothing unverified was left there",
            remedy="free space there or retrieve to another disk",
        )
    return StorageError(f"cannot write to the target {target}: {e.strerror}")


def copy_verified_into(
    station: Station,
    sha256: str,
    size: int,
    check: Check,
    directory: Path,
    chunk_bytes: int,
    what: str,
) -> Path:
    """copy_verified into a directory this process writes itself (a working directory): the
    temporary file's path."""
    return directory / copy_verified(
        station, sha256, size, check, DirectoryTarget(directory), chunk_bytes, what
    )


def write_document(path: Path, data: bytes) -> None:
    """A document handed over beside the copies (a receipt): written atomically and durably,
    read-only. Raises OSError."""
    # Renamed into place, not linked: a FAT stick has no hard links, and the name is unique.
    write_atomically(path, data, mode=0o444)


class Target(Protocol):
    """Where verified copies are handed over: a directory, reached through whoever may write it.

    Locally that is this process (DirectoryTarget); for a caller of the local API it is the
    caller's own process, which opens every file itself and passes the descriptors, so the
    station's account never opens a path a caller chose."""

    @property
    def path(self) -> Path:
        """The directory, as messages, events and receipts name it."""
        ...

    def prepare(self, needed: int, spare: int) -> Path:
        """Made if absent, writable, with room for `needed` bytes and `spare` more."""
        ...

    def open_existing(self, name: str) -> tuple[bool, int | None]:
        """Whether `name` exists, and a descriptor to read it when it is a regular file."""
        ...

    def create_temp(self) -> tuple[str, int]:
        """A new hidden file's name and a descriptor to write it (the caller closes it)."""
        ...

    def seal(self, temp: str) -> None:
        """Make the temporary file read-only."""
        ...

    def discard(self, temp: str) -> None: ...

    def place(self, temp: str, name: str, fallback: str | None) -> Path:
        """Give the temporary file its final name, never replacing a file (`place`)."""
        ...

    def write_document(self, name: str, data: bytes) -> Path:
        """A document beside the copies (a receipt): atomic, durable, read-only."""
        ...


class DirectoryTarget:
    """A target directory this process opens itself."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def prepare(self, needed: int, spare: int) -> Path:
        self.path = prepare_target(self.path, needed, spare=spare)
        return self.path

    def open_existing(self, name: str) -> tuple[bool, int | None]:
        path = self.path / name
        try:
            found = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False, None
        except OSError:
            return True, None
        if not stat.S_ISREG(found.st_mode):
            return True, None
        try:
            return True, os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return True, None

    def create_temp(self) -> tuple[str, int]:
        temp = f".evidence-agent-{uuid.uuid4().hex}.part"
        try:
            fd = os.open(
                self.path / temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
        except OSError as e:
            raise target_error(e, self.path) from e
        return temp, fd

    def seal(self, temp: str) -> None:
        try:
            os.chmod(self.path / temp, 0o444)
        except OSError as e:
            raise target_error(e, self.path) from e

    def discard(self, temp: str) -> None:
        (self.path / temp).unlink(missing_ok=True)

    def place(self, temp: str, name: str, fallback: str | None) -> Path:
        return place(self.path / temp, self.path, name, fallback)

    def write_document(self, name: str, data: bytes) -> Path:
        path = self.path / name
        try:
            write_document(path, data)
        except OSError as e:
            raise target_error(e, self.path) from e
        return path


def prepare_target(target: Path, needed: int, *, spare: int = 0) -> Path:
    """The target directory, made if absent, writable, with room for `needed` bytes of copies
    and `spare` more (a receipt)."""
    try:
        target.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise InputError(f"the target {target} is not a directory") from e
    except OSError as e:
        raise StorageError(
            f"cannot create the target directory {target}: {e.strerror}",
            remedy="choose a directory you can write to with --to",
        ) from e
    if not target.is_dir():
        raise InputError(f"the target {target} is not a directory")
    probe = target / f".evidence-agent-{uuid.uuid4().hex}.probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as e:
        raise StorageError(
            f"the target directory {target} is not writable: {e.strerror}",
            remedy="choose a directory you can write to with --to",
        ) from e
    free = shutil.disk_usage(target).free
    if free < needed + spare:
        raise StorageError(
            f"the target {target} is too full: the retrieval needs {needed} bytes, {free} are free",
            remedy="free space there or retrieve to another disk",
        )
    return target.resolve()


def place(tmp: Path, target: Path, name: str, fallback: str | None = None) -> Path:
    """Give the verified file its final name, never replacing an existing file. Where the
    target's file system refuses the name itself (FAT refuses a backslash), `fallback`."""
    for candidate in candidates(name):
        final = target / candidate
        try:
            os.link(tmp, final)  # fails when the name exists: never an overwrite
        except FileExistsError:
            continue
        except OSError as e:
            if e.errno in _NAME_REFUSED and fallback is not None and fallback != name:
                return place(tmp, target, fallback)
            if e.errno not in _NO_HARD_LINKS:
                raise target_error(e, target) from e
            # File systems without hard links (FAT on a USB stick): check, then rename.
            if final.exists():
                continue
            try:
                os.rename(tmp, final)
            except OSError as e2:
                if e2.errno in _NAME_REFUSED and fallback is not None and fallback != name:
                    return place(tmp, target, fallback)
                raise target_error(e2, target) from e2
            fsync_dir(target)
            return final
        tmp.unlink()
        fsync_dir(target)
        return final
    raise InputError(f"too many files named like {name} in {target}")


def candidates(name: str) -> list[str]:
    stem, suffix = _split(name)
    return [name, *(f"{stem}-{n}{suffix}" for n in range(2, 1000))]


def _split(name: str) -> tuple[str, str]:
    dot = name.rfind(".")
    return (name[:dot], name[dot:]) if dot > 0 else (name, "")
