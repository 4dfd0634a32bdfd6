"""Local directory object store: content-addressed, written once, read-only files."""

from __future__ import annotations

import contextlib
import errno
import hmac
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from evidence_agent.errors import IntegrityError, NotFoundError, StorageError
from evidence_agent.io.atomic import fsync_dir
from evidence_agent.io.hashing import check_digest, hash_file
from evidence_agent.ports import StoredObject

log = logging.getLogger(__name__)

# Objects found under an address they do not hash to, kept for examination (never served).
DAMAGED_DIR = "damaged"


class LocalObjectStore:
    """Objects at <root>/sha256/<aa>/<bb>/<sha256>, mode 0444, never overwritten.

    This is the embedded default for one station. It protects against mistakes, not against
    root on the same machine: real write-once storage is the S3 backend with Object Lock."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return f"local store {self.root}"

    def path_of(self, sha256: str) -> Path:
        """Where the object is (or would be) kept."""
        return self.root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def put(
        self,
        sha256: str,
        source: Path,
        size: int,
        retain_until: datetime | None,
        *,
        source_checked: bool = False,
    ) -> StoredObject:
        """Give `source` the address `sha256` once its bytes are known to hash to it.

        An object already under the address is taken only when it hashes to it; one that does
        not is set aside under `damaged/` (never returned, never deleted) and the source stored
        in its place. The source's bytes are hashed here unless `source_checked` (the spool hashed
        this very file as it wrote it): a source that does not hash to `sha256` raises
        IntegrityError and leaves nothing under the address. A failed write (a full disk) leaves
        no partial file."""
        final = self.path_of(sha256)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            existing = self._checked_existing(final, sha256, source, size, source_checked)
            if existing is not None:
                return existing
            self._link_checked(final, sha256, source, source_checked)
            fsync_dir(final.parent)
        except OSError as e:
            raise StorageError(
                f"cannot write object {sha256} to {self.root}: {e.strerror}",
                remedy="check store.local_dir is writable and has space; the spool keeps the copy",
            ) from e
        return StoredObject(
            key=self._key(final),
            size=size,
            sha256=sha256,
            linked_to_source=_same_file(final, source),
        )

    def _checked_existing(
        self, final: Path, sha256: str, source: Path, size: int, source_checked: bool
    ) -> StoredObject | None:
        """The object already under the address when it holds the right bytes; None when there
        is none, or when it did not and was set aside."""
        try:
            found = final.stat()
        except FileNotFoundError:
            return None
        linked = _same_file(final, source)
        # The very file the spool hashed as it wrote it needs no second read; anything else does.
        good = (linked and source_checked) or (
            found.st_size == size and hmac.compare_digest(hash_file(final), sha256)
        )
        if good:
            return StoredObject(
                key=self._key(final), size=found.st_size, sha256=sha256, linked_to_source=linked
            )
        aside = self._set_aside(final)
        log.error(
            "INTEGRITY: the stored object %s did not hash to its address; set aside as %s, "
            "and the clip's copy is stored in its place",
            final,
            aside,
        )
        return None

    def _set_aside(self, path: Path) -> Path:
        damaged = self.root / DAMAGED_DIR
        damaged.mkdir(exist_ok=True)
        aside = damaged / f"{path.name}.{uuid.uuid4().hex}"
        os.rename(path, aside)
        fsync_dir(path.parent)
        return aside

    def _link_checked(self, final: Path, sha256: str, source: Path, source_checked: bool) -> None:
        """Write (or hard-link) the source to a temporary name, check it, then link it to
        `final`: the address only ever names checked bytes. The temporary name goes either way."""
        tmp = final.parent / f".{uuid.uuid4().hex}.tmp"
        try:
            try:
                # Same file system: a hard link stores the spool copy without writing it again.
                os.link(source, tmp)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                with source.open("rb") as src, tmp.open("xb") as dst:
                    shutil.copyfileobj(src, dst, 4 << 20)
                    dst.flush()
                    os.fsync(dst.fileno())
                source_checked = False  # these are bytes written now, not the file hashed
            if not source_checked:
                check_digest(sha256, hash_file(tmp), f"the file to store, {source}")
            os.chmod(tmp, 0o400)  # read-only, and the station account's alone
            with contextlib.suppress(FileExistsError):
                # Fails if the name exists (another writer, with checked bytes): never an overwrite.
                os.link(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def _key(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def verify(self, sha256: str) -> StoredObject:
        path = self.path_of(sha256)
        try:
            size = path.stat().st_size
            actual = hash_file(path)
        except FileNotFoundError as e:
            raise IntegrityError(f"stored object {sha256} is missing from {self.root}") from e
        except OSError as e:
            raise StorageError(f"cannot read stored object {sha256}: {e.strerror}") from e
        check_digest(sha256, actual, f"stored object {path}")
        return StoredObject(key=self._key(path), size=size, sha256=actual)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.path_of(sha256).open("rb")
        except FileNotFoundError as e:
            raise NotFoundError(f"stored object {sha256} is not in {self.root}") from e

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).exists()

    def delete_object(self, sha256: str) -> None:
        """Remove the object for good (ports.ObjectDeleting); an absent one is fine. The local
        store has no lock: the catalog's retention decides, and the file goes when asked."""
        path = self.path_of(sha256)
        try:
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
        except FileNotFoundError:
            pass  # the object's directory is gone too
        except OSError as e:
            raise StorageError(
                f"cannot remove the stored object {path}: {e.strerror}",
                remedy="fix the store's permissions and run the same `retention delete` again",
            ) from e

    def iter_keys(self) -> Iterator[str]:
        base = self.root / "sha256"
        if not base.exists():
            return
        for path in sorted(base.glob("*/*/*")):
            if len(path.name) == 64 and not path.name.startswith("."):
                yield path.name


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
