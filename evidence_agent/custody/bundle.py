"""Audit bundles: the directory format holding all an outside verifier needs, and its strict reader.

Layout (version 1)::

    manifest.json                          format, version, who made it and when, station ids
    SHA256SUMS                             every other file's SHA-256, as `sha256sum -c` reads it
    stations/<id>/entries.jsonl            the log's entries: the exact RFC 8785 bytes, one a line
    stations/<id>/checkpoints/<size>       each signed checkpoint note, named by its tree size
    stations/<id>/station.vkey             the note verifier key (C2SP signed-note)
    stations/<id>/station.pub.pem          the same Ed25519 public key as PEM, for OpenSSL
    stations/<id>/catalog/<table>.jsonl    the catalog rows the log is cross-checked against

Line N (counting from 0) of entries.jsonl is leaf N of the tree: its leaf hash is SHA-256 of
0x00 followed by the line without its newline. Canonical JSON never holds a raw newline, so the
framing is exact. The manifest and SHA256SUMS are not signed: they catch missing, changed and
extra files, while the signed checkpoints are what an attacker cannot forge.

Problems with the content of files (a missing or changed file, a broken line) are returned as
``FileProblem`` values for the auditor's report; only a directory that cannot be read as a
bundle at all raises ``InputError``. Bundles are written by services/bundle_writer.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from hmac import compare_digest
from pathlib import Path
from typing import Any

from evidence_agent.custody.events import format_time
from evidence_agent.errors import InputError

FORMAT = "evidence-agent/audit-bundle"
VERSION = 1
MANIFEST_FILE = "manifest.json"
SUMS_FILE = "SHA256SUMS"
ENTRIES_FILE = "entries.jsonl"
CHECKPOINTS_DIR = "checkpoints"
VERIFIER_KEY_FILE = "station.vkey"
PUBLIC_PEM_FILE = "station.pub.pem"
CATALOG_DIR = "catalog"
# Catalog tables a bundle may carry; a reader ignores none and refuses any other name.
CATALOG_TABLES = ("clips", "case_clips", "cases")

MAX_SMALL_FILE = 1 << 20  # manifest, keys, notes: anything larger is not ours
READ_CHUNK = 16 << 20

STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # as config.py accepts station.id
_SIZE_NAME = re.compile(r"0|[1-9][0-9]{0,19}")
_SUM_LINE = re.compile(r"([0-9a-f]{64})  ([A-Za-z0-9._/-]{1,400})")
_ROW_DECODER = json.JSONDecoder()
_MANIFEST_KEYS = frozenset({"format", "version", "created_at", "created_by", "stations"})


def station_dir(station_id: str) -> str:
    return f"stations/{station_id}"


def entries_path(station_id: str) -> str:
    return f"{station_dir(station_id)}/{ENTRIES_FILE}"


def checkpoints_path(station_id: str) -> str:
    return f"{station_dir(station_id)}/{CHECKPOINTS_DIR}"


def checkpoint_path(station_id: str, size: int) -> str:
    return f"{checkpoints_path(station_id)}/{size}"


def verifier_key_path(station_id: str) -> str:
    return f"{station_dir(station_id)}/{VERIFIER_KEY_FILE}"


def public_pem_path(station_id: str) -> str:
    return f"{station_dir(station_id)}/{PUBLIC_PEM_FILE}"


def catalog_path(station_id: str, table: str) -> str:
    return f"{station_dir(station_id)}/{CATALOG_DIR}/{table}.jsonl"


# ---------------------------------------------------------------- writing (services/bundle_writer.py)


def check_station_ids(ids: Sequence[str]) -> None:
    """Refuse station ids that cannot name a bundle directory, or a station given twice."""
    for sid in ids:
        if not STATION_ID.fullmatch(sid):
            raise InputError(f"station id {sid!r} cannot name a bundle directory")
    if len(set(ids)) != len(ids):
        raise InputError("a station appears twice in the bundle")


def manifest_line(station_ids: Sequence[str], created_at: datetime, created_by: str) -> bytes:
    """The manifest file's bytes."""
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": format_time(created_at),
        "created_by": created_by,
        "stations": list(station_ids),
    }
    return json_line(manifest)


def sums_text(digests: Mapping[str, str]) -> bytes:
    """SHA256SUMS for files by relative path: one `<sha256>  <path>` line each, sorted."""
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(digests.items())).encode(
        "ascii"
    )


def json_line(value: Any) -> bytes:
    # Deterministic, one line, UTF-8; these files are checked by SHA256SUMS, not signed.
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8") + b"\n"


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class FileProblem:
    """Something wrong with a bundle file: missing, changed, unlisted, or broken inside."""

    path: str
    message: str


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file as found: the size its name gives, and its text (None if unreadable)."""

    path: str
    size: int
    text: str | None


class EntryLines:
    """The lines of an entries file, read in large blocks; iterate once.

    Yields lists of entries (each without its newline). While reading it checks the file against
    SHA256SUMS and records framing problems: a last line without a newline (a cut file) and
    empty lines. The entries themselves are yielded as found, so the tree covers exactly them.
    """

    def __init__(self, bundle: Bundle, rel: str) -> None:
        self._bundle = bundle
        self.rel = rel
        self.count = 0

    def __iter__(self) -> Iterator[list[bytes]]:
        bundle = self._bundle
        path = bundle.root / self.rel
        sha = hashlib.sha256()
        if not bundle.mark_read(self.rel):
            return
        try:
            f = path.open("rb")
        except OSError as e:
            bundle.problem(self.rel, f"cannot be read: {e.strerror}")
            return
        carry = b""
        empty: list[int] = []
        with f:
            while block := f.read(READ_CHUNK):
                sha.update(block)
                lines = block.split(b"\n")
                if carry:
                    lines[0] = carry + lines[0]
                carry = lines.pop()
                if b"" in lines:
                    empty.extend(self.count + i for i, line in enumerate(lines) if not line)
                self.count += len(lines)
                yield lines
        if carry:
            bundle.problem(
                self.rel,
                f"the last entry (line {self.count}) has no newline: the file was cut short "
                "or appended to by hand",
            )
            self.count += 1
            yield [carry]
        for line in empty[:20]:
            bundle.problem(self.rel, f"entry {line} is an empty line")
        if len(empty) > 20:
            bundle.problem(self.rel, f"{len(empty) - 20} more empty lines")
        bundle.check_digest(self.rel, sha.hexdigest())


@dataclass(frozen=True)
class Manifest:
    version: int
    created_at: str
    created_by: str
    stations: tuple[str, ...]


class Bundle:
    """A bundle directory opened for verification.

    Every file is read through this object, which checks its SHA-256 against SHA256SUMS the one
    time it is read; ``finish`` then names the listed files nobody read that are missing or
    changed, and the files on disk that SHA256SUMS does not list.
    """

    def __init__(self, root: Path, manifest: Manifest, sums: dict[str, str] | None) -> None:
        self.root = root
        self.manifest = manifest
        self.sums = sums
        self.problems: list[FileProblem] = []
        self._read: set[str] = set()
        self._missing_reported: set[str] = set()

    @property
    def station_ids(self) -> tuple[str, ...]:
        return self.manifest.stations

    def problem(self, rel: str, message: str) -> None:
        self.problems.append(FileProblem(rel, message))

    def mark_read(self, rel: str) -> bool:
        """Note that ``rel`` is being read; report and return False unless it is a regular file."""
        self._read.add(rel)
        path = self.root / rel
        if path.is_symlink() or (path.exists() and not path.is_file()):
            self.problem(rel, "is not a regular file")
            return False
        if not path.exists():
            self._report_missing(rel)
            return False
        return True

    def _report_missing(self, rel: str) -> None:
        if rel in self._missing_reported:
            return
        self._missing_reported.add(rel)
        if self.sums is not None and rel in self.sums:
            self.problem(rel, "is listed in SHA256SUMS but missing from the bundle")
        else:
            self.problem(rel, "is missing from the bundle")

    def check_digest(self, rel: str, actual: str) -> None:
        if self.sums is None:
            return
        expected = self.sums.get(rel)
        if expected is None:
            self.problem(rel, "is not listed in SHA256SUMS: a file was added to the bundle")
        elif not compare_digest(expected.encode(), actual.encode()):
            self.problem(rel, f"SHA-256 is {actual}, SHA256SUMS says {expected}: the file changed")

    def read_bytes(self, rel: str, *, limit: int = MAX_SMALL_FILE) -> bytes | None:
        """The file's bytes, hash-checked; None (with a problem recorded) if missing or unusable."""
        if not self.mark_read(rel):
            return None
        path = self.root / rel
        try:
            with path.open("rb") as f:
                if os.fstat(f.fileno()).st_size > limit:
                    self.problem(
                        rel, f"is larger than {limit} bytes: not a file this format writes"
                    )
                    return None
                data = f.read()
        except OSError as e:
            self.problem(rel, f"cannot be read: {e.strerror}")
            return None
        self.check_digest(rel, hashlib.sha256(data).hexdigest())
        return data

    def read_text(self, rel: str) -> str | None:
        data = self.read_bytes(rel)
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.problem(rel, "is not UTF-8 text")
            return None

    def entries(self, station_id: str) -> EntryLines:
        return EntryLines(self, entries_path(station_id))

    def checkpoints(self, station_id: str) -> list[CheckpointFile]:
        """Every checkpoint file of a station, smallest tree size first."""
        rel_dir = checkpoints_path(station_id)
        names: set[str] = set()
        base = self.root / rel_dir
        if base.is_dir():
            names.update(p.name for p in base.iterdir())
        if self.sums is not None:
            prefix = rel_dir + "/"
            names.update(p[len(prefix) :] for p in self.sums if p.startswith(prefix))
        found = []
        for name in names:
            if not _SIZE_NAME.fullmatch(name):
                continue  # finish() reports it as a file outside the format
            rel = f"{rel_dir}/{name}"
            found.append(CheckpointFile(rel, int(name), self.read_text(rel)))
        found.sort(key=lambda c: c.size)
        return found

    def catalog_rows(self, station_id: str, table: str) -> list[dict[str, Any]] | None:
        """Rows of a catalog table, or None when the bundle does not carry that table."""
        rel = catalog_path(station_id, table)
        listed = self.sums is not None and rel in self.sums
        if not listed and not (self.root / rel).exists():
            self._read.add(rel)
            return None
        data = self.read_bytes(rel, limit=1 << 40)
        if data is None:
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"malformed bundle: {rel} is not UTF-8") from e
        lines = text.split("\n")[:-1]
        try:
            # One array for the C decoder instead of a call per row: a third faster.
            parsed = _ROW_DECODER.decode("[" + ",".join(lines) + "]") if lines else []
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or len(parsed) != len(lines):
            parsed = []  # find the line at fault
            for number, line in enumerate(lines, start=1):
                try:
                    parsed.append(_ROW_DECODER.decode(line))
                except ValueError as e:
                    raise InputError(f"malformed bundle: {rel} line {number} is not JSON") from e
        rows: list[dict[str, Any]] = []
        for number, row in enumerate(parsed, start=1):
            if not isinstance(row, dict):
                raise InputError(f"malformed bundle: {rel} line {number} is not a JSON object")
            rows.append(row)
        if data and not data.endswith(b"\n"):
            self.problem(rel, "the last line has no newline: the file was cut short")
        return rows

    def finish(self) -> list[FileProblem]:
        """Check the files nobody read and look for extra ones; return every problem found."""
        if self.sums is not None:
            for rel in sorted(set(self.sums) - self._read):
                if not _in_layout(rel, self.station_ids):
                    self.problem(
                        rel, "is listed in SHA256SUMS but is not part of the bundle format"
                    )
                if self.mark_read(rel):
                    try:
                        with (self.root / rel).open("rb") as f:
                            digest = hashlib.file_digest(f, "sha256").hexdigest()
                        self.check_digest(rel, digest)
                    except OSError as e:
                        self.problem(rel, f"cannot be read: {e.strerror}")
        for rel in _walk(self.root):
            if rel in (SUMS_FILE, MANIFEST_FILE):
                continue
            if self.sums is not None:
                if rel not in self.sums:
                    self.problem(rel, "is not listed in SHA256SUMS: a file was added to the bundle")
            elif not _in_layout(rel, self.station_ids):
                self.problem(rel, "is not part of the bundle format")
        return self.problems


def open_bundle(root: Path) -> Bundle:
    """Open a bundle directory: parse its manifest and SHA256SUMS strictly.

    Raises InputError when the directory is not a bundle at all (no readable manifest of this
    format) or its manifest or SHA256SUMS is malformed. A missing SHA256SUMS is a problem of the
    bundle's content (recorded, not raised): the rest can still be verified.
    """
    if not root.is_dir():
        raise InputError(f"{root} is not a directory", remedy="give the bundle's directory")
    manifest_path = root / MANIFEST_FILE
    try:
        raw = manifest_path.read_bytes()
    except FileNotFoundError as e:
        raise InputError(
            f"{root} is not an audit bundle: it has no {MANIFEST_FILE}",
            remedy="give the directory made by `evidence-agent audit export`",
        ) from e
    except OSError as e:
        raise InputError(f"cannot read {manifest_path}: {e.strerror}") from e
    manifest = _parse_manifest(raw)
    bundle = Bundle(root, manifest, None)
    try:
        sums_raw = (root / SUMS_FILE).read_bytes()
    except FileNotFoundError:
        bundle.problem(SUMS_FILE, "is missing: no file of the bundle can be checked against it")
    except OSError as e:
        raise InputError(f"cannot read {root / SUMS_FILE}: {e.strerror}") from e
    else:
        bundle.sums = _parse_sums(sums_raw)
    bundle.check_digest(MANIFEST_FILE, hashlib.sha256(raw).hexdigest())
    bundle._read.add(MANIFEST_FILE)
    return bundle


def _parse_manifest(raw: bytes) -> Manifest:
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise InputError(f"malformed bundle: {MANIFEST_FILE} is not JSON ({e})") from e
    if not isinstance(doc, dict):
        raise InputError(f"malformed bundle: {MANIFEST_FILE} is not a JSON object")
    if doc.get("format") != FORMAT:
        raise InputError(
            f"malformed bundle: {MANIFEST_FILE} format is {doc.get('format')!r}, not {FORMAT!r}"
        )
    if doc.get("version") != VERSION:
        raise InputError(
            f"bundle version {doc.get('version')!r} is not supported (this verifier reads {VERSION})",
            remedy="use the evidence-agent release that made the bundle, or a newer one",
        )
    if set(doc) != _MANIFEST_KEYS:
        extra = sorted(set(doc) ^ _MANIFEST_KEYS)
        raise InputError(f"malformed bundle: {MANIFEST_FILE} keys differ from the format: {extra}")
    stations = doc["stations"]
    if (
        not isinstance(stations, list)
        or not stations
        or not all(isinstance(s, str) and STATION_ID.fullmatch(s) for s in stations)
        or len(set(stations)) != len(stations)
    ):
        raise InputError(
            f"malformed bundle: {MANIFEST_FILE} stations must be a non-empty list of station ids"
        )
    if not isinstance(doc["created_at"], str) or not isinstance(doc["created_by"], str):
        raise InputError(f"malformed bundle: {MANIFEST_FILE} created_at and created_by are text")
    return Manifest(VERSION, doc["created_at"], doc["created_by"], tuple(stations))


def _parse_sums(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise InputError(f"malformed bundle: {SUMS_FILE} is not ASCII") from e
    if text and not text.endswith("\n"):
        raise InputError(f"malformed bundle: {SUMS_FILE} does not end with a newline")
    sums: dict[str, str] = {}
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        m = _SUM_LINE.fullmatch(line)
        if m is None:
            raise InputError(
                f"malformed bundle: {SUMS_FILE} line {number} is not '<sha256>  <path>'"
            )
        digest, rel = m.groups()
        parts = rel.split("/")
        if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InputError(f"malformed bundle: {SUMS_FILE} line {number} has an unsafe path")
        if rel in sums or rel in (SUMS_FILE,):
            raise InputError(f"malformed bundle: {SUMS_FILE} lists {rel} twice or lists itself")
        sums[rel] = digest
    return sums


def _in_layout(rel: str, stations: Sequence[str]) -> bool:
    if rel in (MANIFEST_FILE, SUMS_FILE):
        return True
    parts = rel.split("/")
    if len(parts) < 3 or parts[0] != "stations" or parts[1] not in stations:
        return False
    tail = parts[2:]
    if tail in ([ENTRIES_FILE], [VERIFIER_KEY_FILE], [PUBLIC_PEM_FILE]):
        return True
    if len(tail) == 2 and tail[0] == CHECKPOINTS_DIR:
        return bool(_SIZE_NAME.fullmatch(tail[1]))
    if len(tail) == 2 and tail[0] == CATALOG_DIR:
        return tail[1] in {f"{t}.jsonl" for t in CATALOG_TABLES}
    return False


def _walk(root: Path) -> Iterator[str]:
    """Every non-directory below root, as a relative path; symbolic links are not followed."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        names = list(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(names):
            yield name if rel_dir == "." else f"{rel_dir}/{name}"
