"""Tests of the audit bundle format: writing it all or nothing, and reading it strictly."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evidence_agent.custody import bundle as fmt
from evidence_agent.custody.bundle import open_bundle
from evidence_agent.errors import InputError, IntegrityError
from evidence_agent.services.bundle_writer import StationExport, write_bundle
from tests.support import service_missing

NOW = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
ENTRIES = [b'{"seq":0,"x":"\xe5\xbc\xa0"}', b'{"seq":1}', b'{"seq":2}']
NOTES = [(1, "log\n1\nAAAA\n\n\u2014 log sig\n"), (3, "log\n3\nBBBB\n\n\u2014 log sig\n")]
CLIPS: list[dict[str, object]] = [{"id": "c1", "officer": "100231"}, {"id": "c2", "officer": None}]


def export(station_id: str = "st-1", entries: list[bytes] | None = None) -> StationExport:
    return StationExport(
        station_id=station_id,
        verifier_key="evidence-agent/st-1+01234567+AQ==",
        public_key_pem="-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n",
        entries=iter(ENTRIES if entries is None else entries),
        checkpoints=iter(NOTES),
        catalog={"clips": CLIPS, "case_clips": []},
    )


@pytest.fixture(autouse=True)
def no_fsync(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Durability is not under test here, and fsync costs tens of ms on a busy disk."""
    if "durable" not in request.node.name:
        monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    dest = tmp_path / "bundle"
    write_bundle(dest, [export()], created_at=NOW, created_by="user:auditor")
    return dest


def read_all(dest: Path) -> fmt.Bundle:
    b = open_bundle(dest)
    b.read_text(fmt.verifier_key_path("st-1"))
    b.read_bytes(fmt.public_pem_path("st-1"))
    list(b.entries("st-1"))
    b.checkpoints("st-1")
    b.catalog_rows("st-1", "clips")
    b.catalog_rows("st-1", "case_clips")
    return b


def test_round_trip_keeps_every_byte_durable(bundle_dir: Path) -> None:
    b = open_bundle(bundle_dir)
    assert b.station_ids == ("st-1",)
    assert b.manifest.created_at == "2026-05-01T08:30:00.000000Z"
    assert b.manifest.created_by == "user:auditor"
    lines = [line for chunk in b.entries("st-1") for line in chunk]
    assert lines == ENTRIES
    assert (bundle_dir / "stations/st-1/entries.jsonl").read_bytes() == b"\n".join(ENTRIES) + b"\n"
    cps = b.checkpoints("st-1")
    assert [(c.size, c.text) for c in cps] == [(s, n) for s, n in NOTES]
    assert b.catalog_rows("st-1", "clips") == CLIPS
    assert b.catalog_rows("st-1", "case_clips") == []
    assert b.read_text(fmt.verifier_key_path("st-1")) == "evidence-agent/st-1+01234567+AQ==\n"
    assert b.finish() == []


def test_sha256sums_is_what_coreutils_checks(bundle_dir: Path) -> None:
    if shutil.which("sha256sum") is None:
        service_missing("sha256sum (coreutils) is not installed")
    proc = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"],
        cwd=bundle_dir,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = {
        line.split("  ", 1)[1] for line in (bundle_dir / "SHA256SUMS").read_text().splitlines()
    }
    on_disk = {str(p.relative_to(bundle_dir)) for p in bundle_dir.rglob("*") if p.is_file()} - {
        "SHA256SUMS"
    }
    assert listed == on_disk


def test_large_entry_file_is_read_in_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fmt, "READ_CHUNK", 7)  # lines straddle every block boundary
    entries = [b'{"seq":%d,"pad":"%s"}' % (i, b"x" * (i % 13)) for i in range(200)]
    dest = tmp_path / "b"
    write_bundle(dest, [export(entries=entries)], created_at=NOW, created_by="t")
    b = open_bundle(dest)
    assert [line for chunk in b.entries("st-1") for line in chunk] == entries
    assert b.problems == []


def test_existing_directory_is_never_written_over(tmp_path: Path) -> None:
    dest = tmp_path / "b"
    dest.mkdir()
    (dest / "keep").write_text("x")
    with pytest.raises(InputError, match="not an empty directory"):
        write_bundle(dest, [export()], created_at=NOW, created_by="t")
    assert (dest / "keep").read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    write_bundle(empty, [export()], created_at=NOW, created_by="t")
    assert (empty / fmt.MANIFEST_FILE).exists()


def test_a_failed_export_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "b"
    with pytest.raises(IntegrityError, match=r"entry 1 .* newline"):
        write_bundle(dest, [export(entries=[b"{}", b'{"a":\n1}'])], created_at=NOW, created_by="t")
    assert list(tmp_path.iterdir()) == []


def test_bad_station_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        write_bundle(tmp_path / "b", [export("../x")], created_at=NOW, created_by="t")
    with pytest.raises(InputError, match="twice"):
        write_bundle(tmp_path / "b", [export(), export()], created_at=NOW, created_by="t")


# ---------------------------------------------------------------- problems in the content


def messages(b: fmt.Bundle) -> list[str]:
    return [f"{p.path}: {p.message}" for p in b.finish()]


def test_missing_changed_and_added_files_are_named(bundle_dir: Path) -> None:
    (bundle_dir / "stations/st-1/checkpoints/1").unlink()
    (bundle_dir / "stations/st-1/station.vkey").write_text("evidence-agent/st-1+00000000+AQ==\n")
    (bundle_dir / "stations/st-1/checkpoints/7").write_text("forged\n")
    (bundle_dir / "stations/st-1/notes.txt").write_text("?")
    found = messages(read_all(bundle_dir))
    assert any("checkpoints/1: is listed in SHA256SUMS but missing" in m for m in found)
    assert any("station.vkey: SHA-256 is" in m and "the file changed" in m for m in found)
    assert any("checkpoints/7: is not listed in SHA256SUMS" in m for m in found)
    assert any("notes.txt: is not listed in SHA256SUMS" in m for m in found)


def test_missing_sums_file_is_a_problem_not_an_error(bundle_dir: Path) -> None:
    (bundle_dir / "SHA256SUMS").unlink()
    found = messages(read_all(bundle_dir))
    assert found == ["SHA256SUMS: is missing: no file of the bundle can be checked against it"]


def test_missing_entries_file_is_named(bundle_dir: Path) -> None:
    (bundle_dir / "stations/st-1/entries.jsonl").unlink()
    b = open_bundle(bundle_dir)
    assert list(b.entries("st-1")) == []
    assert any("entries.jsonl: is listed in SHA256SUMS but missing" in m for m in messages(b))


def test_cut_and_blank_lines_in_entries_are_named(bundle_dir: Path) -> None:
    path = bundle_dir / "stations/st-1/entries.jsonl"
    path.write_bytes(b'{"seq":0}\n\n{"seq":2}')
    b = open_bundle(bundle_dir)
    lines = [line for chunk in b.entries("st-1") for line in chunk]
    assert lines == [b'{"seq":0}', b"", b'{"seq":2}']
    found = messages(b)
    assert any("last entry (line 2) has no newline" in m for m in found)
    assert any("entry 1 is an empty line" in m for m in found)
    assert any("the file changed" in m for m in found)


def test_symbolic_links_are_not_followed(bundle_dir: Path, tmp_path: Path) -> None:
    vkey = bundle_dir / "stations/st-1/station.vkey"
    outside = tmp_path / "outside.vkey"
    outside.write_bytes(vkey.read_bytes())
    vkey.unlink()
    vkey.symlink_to(outside)
    b = open_bundle(bundle_dir)
    assert b.read_text(fmt.verifier_key_path("st-1")) is None
    assert any("station.vkey: is not a regular file" in m for m in messages(b))


def test_unexpected_checkpoint_names_are_outside_the_format(bundle_dir: Path) -> None:
    (bundle_dir / "stations/st-1/checkpoints/007").write_text("x")
    b = open_bundle(bundle_dir)
    assert [c.size for c in b.checkpoints("st-1")] == [1, 3]
    assert any("checkpoints/007: is not listed" in m for m in messages(b))


# ---------------------------------------------------------------- malformed bundles


def rewrite_manifest(dest: Path, **changes: object) -> None:
    path = dest / "manifest.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "format is 'something-else'"),
        ({"version": 2}, "version 2 is not supported"),
        ({"extra": 1}, "keys differ"),
        ({"stations": []}, "stations must be"),
        ({"stations": ["../etc"]}, "stations must be"),
        ({"stations": ["a", "a"]}, "stations must be"),
        ({"created_at": 5}, "created_at and created_by"),
    ],
)
def test_malformed_manifest_is_an_input_error(
    bundle_dir: Path, change: dict[str, object], message: str
) -> None:
    rewrite_manifest(bundle_dir, **change)
    with pytest.raises(InputError, match=message):
        open_bundle(bundle_dir)


@pytest.mark.parametrize("manifest", [b"", b"{", b"[]", b"\xff\xfe"])
def test_unparseable_manifest_is_an_input_error(bundle_dir: Path, manifest: bytes) -> None:
    (bundle_dir / "manifest.json").write_bytes(manifest)
    with pytest.raises(InputError, match="malformed bundle"):
        open_bundle(bundle_dir)


def test_a_directory_without_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not an audit bundle"):
        open_bundle(tmp_path)
    with pytest.raises(InputError, match="not a directory"):
        open_bundle(tmp_path / "nope")


@pytest.mark.parametrize(
    "line",
    [
        "abc  manifest.json",
        "%s manifest.json" % ("0" * 64),
        "%s  ../escape" % ("0" * 64),
        "%s  /abs" % ("0" * 64),
        "%s  a//b" % ("0" * 64),
        "%s  SHA256SUMS" % ("0" * 64),
    ],
)
def test_malformed_sums_lines_are_input_errors(bundle_dir: Path, line: str) -> None:
    path = bundle_dir / "SHA256SUMS"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(InputError, match="SHA256SUMS"):
        open_bundle(bundle_dir)


def test_duplicate_sums_line_is_an_input_error(bundle_dir: Path) -> None:
    path = bundle_dir / "SHA256SUMS"
    first = path.read_text().splitlines()[0]
    path.write_text(path.read_text() + first + "\n")
    with pytest.raises(InputError, match="twice"):
        open_bundle(bundle_dir)


def test_malformed_catalog_row_is_an_input_error(bundle_dir: Path) -> None:
    rel = "stations/st-1/catalog/clips.jsonl"
    (bundle_dir / rel).write_bytes(b'{"id":"c1"}\n[1]\n')
    with pytest.raises(InputError, match="line 2 is not a JSON object"):
        open_bundle(bundle_dir).catalog_rows("st-1", "clips")
    (bundle_dir / rel).write_bytes(b"{nope\n")
    with pytest.raises(InputError, match="line 1 is not JSON"):
        open_bundle(bundle_dir).catalog_rows("st-1", "clips")


def test_absent_catalog_table_is_none(tmp_path: Path) -> None:
    dest = tmp_path / "b"
    station = StationExport("st-1", "k", "p", iter(ENTRIES), iter(NOTES))
    write_bundle(dest, [station], created_at=NOW, created_by="t")
    b = open_bundle(dest)
    assert b.catalog_rows("st-1", "clips") is None
    assert hashlib.sha256(b"").hexdigest() not in (dest / "SHA256SUMS").read_text()
