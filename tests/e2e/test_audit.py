"""The auditor's commands as a user runs them, on a really ingested demo recorder.

Every kind of tampering the custody log must reveal is done here the way an attacker would:
editing the SQLite catalog with sqlite3, flipping a byte of a stored file, or editing the
files of an exported bundle (and recomputing SHA256SUMS, which is not signed). Each must end
in exit code 3 with the item named; malformed input ends in exit code 2; never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.signed_note import Ed25519Signer
from tests.support import service_missing

STATION = "st-e2e"
ORIGIN = f"evidence-agent/{STATION}"
_SCRIPT = Path(sys.executable).with_name("evidence-agent")
# The console script, as users run it; `python -m evidence_agent` where it is not installed.
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "evidence_agent"]
INTEGRITY, ERROR = 3, 2


def agent(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(data),
        "EVIDENCE_AGENT__STATION__ID": STATION,
    }
    env.pop("EVIDENCE_AGENT_CONFIG", None)
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def logged(data: Path, event_type: str) -> list[dict[str, Any]]:
    rows = sql(data, "SELECT entry FROM custody_entries WHERE event_type = ?", params=(event_type,))
    return [json.loads(entry) for (entry,) in rows]


def grant_auditor(data: Path) -> None:
    """The calling account is the station's auditor: export and prove are role-checked."""
    me = pwd.getpwuid(os.getuid()).pw_name
    (data / "roles.toml").write_text(f'[roles.users]\n"{me}" = ["auditor"]\n', encoding="utf-8")


def verify(data: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = agent(data, "verify", "--json", *args)
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    assert report["exit_code"] == proc.returncode
    return proc.returncode, report


def named(report: dict[str, Any], item: str, text: str = "", step: int | None = None) -> bool:
    return any(
        item in f["item"] and text in f["message"] and (step is None or f["step"] == step)
        for f in report["findings"]
    )


def failures(report: dict[str, Any]) -> str:
    return "\n".join(f"{f['step']} {f['item']}: {f['message']}" for f in report["findings"])


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def sql(data: Path, *statements: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(data / "catalog.sqlite3", isolation_level=None)) as conn:
        rows: list[tuple[Any, ...]] = []
        for statement in statements:
            rows = conn.execute(statement, params if "?" in statement else ()).fetchall()
        return rows


def clips(data: Path) -> list[tuple[str, str]]:
    return [
        (r[0], r[1]) for r in sql(data, "select id, sha256 from clips order by ingested_at, id")
    ]


def object_path(data: Path, sha: str) -> Path:
    return data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A station that ingested the demo recorder and signed every event: made once."""
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    root = tmp_path_factory.mktemp("audit")
    data = root / "data"
    made = agent(data, "demo-recorder", str(root / "vol"))
    assert made.returncode == 0, made.stderr
    ingested = agent(data, "ingest", str(root / "vol"))
    assert ingested.returncode in (0, 1), ingested.stderr  # 1: the demo's corrupt clip is flagged
    signed = agent(data, "custody", "checkpoint")
    assert signed.returncode == 0, signed.stderr
    grant_auditor(data)
    return data


@pytest.fixture(scope="module")
def exported(template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A later state of the same station (one audit.exported event more) and its bundle."""
    root = tmp_path_factory.mktemp("exported")
    data = copy(template, root / "data")
    proc = agent(data, "audit", "export", str(root / "bundle"))
    assert proc.returncode == 0, proc.stderr
    return data, root / "bundle"


@pytest.fixture
def station(template: Path, tmp_path: Path) -> Path:
    return copy(template, tmp_path / "data")


@pytest.fixture
def bundle(exported: tuple[Path, Path], tmp_path: Path) -> Path:
    return copy(exported[1], tmp_path / "bundle")


def station_dir(bundle: Path) -> Path:
    return bundle / "stations" / STATION


def latest_checkpoint(bundle: Path) -> Path:
    return max((station_dir(bundle) / "checkpoints").iterdir(), key=lambda p: int(p.name))


def resum(bundle: Path) -> None:
    """What a careful attacker does after editing: SHA256SUMS is not signed."""
    lines = []
    for path in sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(bundle)}\n")
    (bundle / "SHA256SUMS").write_text("".join(lines))


# ---------------------------------------------------------------- the live station


def test_intact_station_verifies(station: Path) -> None:
    code, report = verify(station)
    assert code == 0, failures(report)
    assert report["intact"] is True
    steps = {s["step"]: s["status"] for s in report["steps"]}
    assert steps == {1: "passed", 2: "passed", 3: "passed", 4: "passed", 5: "skipped"}
    (log,) = report["logs"]
    assert log["origin"] == ORIGIN and log["unsigned_entries"] == 0
    assert log["entries"] == log["latest_checkpoint"]["size"] > 10
    human = agent(station, "verify")
    assert human.returncode == 0 and "INTACT" in human.stdout


def test_stored_objects_are_rehashed_both_ways(station: Path) -> None:
    (flipped_id, flipped), (_, missing), *_ = clips(station)
    path = object_path(station, flipped)
    path.chmod(0o644)  # the store's files are read-only: an attacker makes them writable
    with path.open("r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0x01]))
    object_path(station, missing).unlink()
    extra = b"not evidence"
    extra_sha = hashlib.sha256(extra).hexdigest()
    object_path(station, extra_sha).parent.mkdir(parents=True)
    object_path(station, extra_sha).write_bytes(extra)

    code, report = verify(station)
    assert code == INTEGRITY
    assert named(report, f"object {flipped}", f"clip {flipped_id}", step=3), failures(report)
    assert named(report, f"object {missing}", "missing", step=3)
    assert named(
        report, f"object {extra_sha}", "no clip.ingested or case.document_added event", step=3
    )


def test_catalog_rows_edited_behind_the_log(station: Path) -> None:
    (a, _), (b, _), (c, _), (d, _), *_ = clips(station)
    sql(
        station,
        f"update clips set sha256 = '{'0' * 64}' where id = '{a}'",
        f"update clips set recorded_start = '2020-01-01 00:00:00.000000' where id = '{b}'",
        "insert into officers (badge, name) values ('999999', 'someone else')",
        f"update clips set officer_id = (select id from officers where badge = '999999') where id = '{c}'",
        "insert into cases (number, title, parties, cause_of_action, enforcement_type, "
        "handling_officers, created_at, state) values ('2026-0042', 't', '[]', '', '', '[]', "
        "'2026-01-01 00:00:00', 'open')",
        f"insert into case_clips (case_id, clip_id, linked_at, actor, reason) select id, '{d}', "
        "'2026-01-01 00:00:00', 'user:x', 'y' from cases where number = '2026-0042'",
    )
    code, report = verify(station)
    assert code == INTEGRITY
    assert named(report, f"clip {a}", "catalog sha256", step=4), failures(report)
    assert named(report, f"clip {b}", "catalog recorded_start is '2020-01-01", step=4)
    assert named(report, f"clip {c}", "catalog officer is '999999'", step=4)
    assert named(report, f"link case 2026-0042 - clip {d}", "no custody event", step=4)
    assert named(report, "case 2026-0042", "no case.created event in the log", step=4)


def test_hold_grounds_and_retention_edited_behind_the_log(station: Path, tmp_path: Path) -> None:
    """What decides a deletion is held to the log: on the station, and in a bundle it exports."""
    (a, _), (b, _), (c, _), *_ = clips(station)
    sql(
        station,
        f"update clips set legal_hold = 1 where id = '{a}'",
        f"update clips set retention_grounds = '[\"obstruction\"]' where id = '{b}'",
        f"update clips set retention_until = '2020-01-01 00:00:00.000000' where id = '{c}'",
    )
    exported = agent(station, "audit", "export", str(tmp_path / "bundle"))
    assert exported.returncode == 0, exported.stderr
    for args in ((), ("--bundle", str(tmp_path / "bundle"))):
        code, report = verify(station, *args)
        assert code == INTEGRITY, args
        assert named(report, f"clip {a}", "catalog legal_hold is True", step=4), failures(report)
        assert named(report, f"clip {b}", "catalog retention_grounds is ['obstruction']", step=4)
        assert named(report, f"clip {c}", "catalog retention_until is '2020-01-01", step=4)


def _change_entry(data: Path) -> None:
    sql(
        data,
        "update custody_entries set entry = replace(entry, cast('100231' as blob), "
        "cast('100232' as blob)) where seq = 2",
    )


def _delete_entry(data: Path) -> None:
    sql(data, "delete from custody_entries where seq = 5")


def _reorder_entries(data: Path) -> None:
    sql(
        data,
        "update custody_entries set seq = -1 where seq = 4",
        "update custody_entries set seq = 4 where seq = 5",
        "update custody_entries set seq = 5 where seq = -1",
    )


def _insert_entry(data: Path) -> None:
    # A forged event slipped in at position 5, the later rows renumbered, its leaf hash right.
    (entry,) = sql(data, "select entry from custody_entries where seq = 5")[0]
    forged = bytes(entry).replace(b'"reason":"', b'"reason":"forged: ')
    sql(
        data,
        "update custody_entries set seq = seq + 1000 where seq >= 5",
        "update custody_entries set seq = seq - 999 where seq >= 1000",
    )
    sql(
        data,
        "insert into custody_entries (station_id, seq, entry, leaf_hash, event_type, "
        "subject_id, recorded_at) values (?, 5, ?, ?, 'clip.stored', null, '2026-01-01 00:00:00')",
        params=(STATION, forged, hashlib.sha256(b"\x00" + forged).digest()),
    )


def _truncate_log(data: Path) -> None:
    sql(data, "delete from custody_entries where seq >= 10")


@pytest.mark.parametrize(
    ("tamper", "item", "text"),
    [
        (_change_entry, "entry 2", "do not hash to the leaf hash"),
        (_delete_entry, "entry 5", "holds event number 6"),
        (_reorder_entries, "entry 4", "holds event number 5"),
        (_insert_entry, "entry 6", "holds event number 5"),
        (_truncate_log, "checkpoint", "log truncated"),
    ],
    ids=["changed", "deleted", "reordered", "inserted", "truncated"],
)
def test_log_entries_edited_in_the_catalog(
    station: Path, tamper: Callable[[Path], None], item: str, text: str
) -> None:
    tamper(station)
    code, report = verify(station)
    assert code == INTEGRITY
    assert named(report, item, text, step=1), failures(report)
    assert named(report, "checkpoint", "", step=1)  # and the signed roots no longer match


def test_checkpoints_edited_in_the_catalog(station: Path) -> None:
    rows = sql(station, "select size, note from custody_checkpoints order by size")
    (first, first_note), (middle, middle_note), (latest, _) = rows[0], rows[1], rows[-1]
    text, _, sig_line = first_note.rpartition("\n\u2014 ")
    sig = list(sig_line)
    sig[-10] = "A" if sig[-10] != "A" else "B"  # a byte of the signature, not the key ID
    lines = middle_note.split("\n")
    lines[2] = "A" + lines[2][1:] if lines[2][0] != "A" else "B" + lines[2][1:]  # its root
    sql(
        station,
        "update custody_checkpoints set note = ? where size = " + str(first),
        params=(f"{text}\n\u2014 {''.join(sig)}",),
    )
    sql(
        station,
        "update custody_checkpoints set note = ? where size = " + str(middle),
        params=("\n".join(lines),),
    )
    sql(station, f"update custody_checkpoints set size = {latest + 5} where size = {latest}")
    code, report = verify(station)
    assert code == INTEGRITY
    assert named(report, f"checkpoint {first}", "signature check failed", step=1), failures(report)
    assert named(report, f"checkpoint {middle}", "signature check failed", step=1)
    assert named(report, f"checkpoint {latest + 5}", f"for tree size {latest}, not {latest + 5}")


def test_swapped_station_key(station: Path) -> None:
    key = station / "keys" / "station.key"
    key.chmod(0o600)
    key.write_text(Ed25519Signer.generate(ORIGIN).key_string() + "\n")
    code, report = verify(station)
    assert code == INTEGRITY
    assert named(report, "public key", "swapped", step=1), failures(report)
    assert named(report, "checkpoint", "signature check failed", step=1)


# ---------------------------------------------------------------- a bundle alone


def test_intact_bundle_needs_no_database(bundle: Path, tmp_path: Path) -> None:
    nowhere = tmp_path / "no-station"
    code, report = verify(nowhere, "--bundle", str(bundle))
    assert code == 0, failures(report)
    assert not nowhere.exists()  # no data directory, no catalog was opened
    steps = {s["step"]: s["status"] for s in report["steps"]}
    assert steps == {1: "passed", 2: "passed", 3: "skipped", 4: "limited", 5: "skipped"}
    human = agent(nowhere, "verify", "--bundle", str(bundle))
    assert human.returncode == 0 and "INTACT" in human.stdout


def _entries(bundle: Path) -> Path:
    return station_dir(bundle) / "entries.jsonl"


def _edit_lines(bundle: Path, edit: Callable[[list[bytes]], list[bytes]], *, sums: bool) -> None:
    path = _entries(bundle)
    path.write_bytes(b"".join(edit(path.read_bytes().splitlines(keepends=True))))
    if sums:
        resum(bundle)


def _swap(lines: list[bytes]) -> list[bytes]:
    lines[4], lines[5] = lines[5], lines[4]
    return lines


def _edit_checkpoints(bundle: Path) -> None:
    files = sorted((station_dir(bundle) / "checkpoints").iterdir(), key=lambda p: int(p.name))
    sig_file, size_file, root_file = files[0], files[1], files[-1]
    text = sig_file.read_text()
    sig_file.write_text(text[:-12] + ("A" if text[-12] != "A" else "B") + text[-11:])
    lines = size_file.read_text().split("\n")
    lines[1] = str(int(lines[1]) - 1)
    size_file.write_text("\n".join(lines))
    lines = root_file.read_text().split("\n")
    lines[2] = ("B" if lines[2][0] == "A" else "A") + lines[2][1:]
    root_file.write_text("\n".join(lines))
    resum(bundle)


def _swap_key(bundle: Path) -> None:
    other = Ed25519Signer.generate(ORIGIN).verifier
    (station_dir(bundle) / "station.vkey").write_text(other.key_string() + "\n")
    (station_dir(bundle) / "station.pub.pem").write_text(other.public_key_pem())
    resum(bundle)


def _remove_and_add(bundle: Path) -> None:
    latest_checkpoint(bundle).unlink()
    (station_dir(bundle) / "checkpoints" / "999").write_text("x\n")


def _edit_catalog_row(bundle: Path) -> None:
    path = station_dir(bundle) / "catalog" / "clips.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["officer"] = "999999"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    resum(bundle)


BUNDLE_TAMPERING: list[tuple[str, Callable[[Path], None], str, str]] = [
    (
        "entry-changed",
        lambda b: _edit_lines(
            b, lambda ls: [ls[0], ls[1], ls[2].replace(b"100231", b"100232"), *ls[3:]], sums=False
        ),
        "entries.jsonl",
        "the file changed",
    ),
    (
        "entry-changed-sums-redone",
        lambda b: _edit_lines(
            b, lambda ls: [ls[0], ls[1], ls[2].replace(b"100231", b"100232"), *ls[3:]], sums=True
        ),
        "checkpoints/",
        "one of entries 1..",
    ),
    (
        "entry-deleted",
        lambda b: _edit_lines(b, lambda ls: ls[:5] + ls[6:], sums=True),
        "entry 5",
        "holds event number 6",
    ),
    (
        "entries-reordered",
        lambda b: _edit_lines(b, _swap, sums=True),
        "entry 4",
        "holds event number 5",
    ),
    (
        "entry-inserted",
        lambda b: _edit_lines(b, lambda ls: [*ls[:6], ls[5], *ls[6:]], sums=True),
        "entry 6",
        "holds event number 5",
    ),
    (
        "log-truncated",
        lambda b: _edit_lines(b, lambda ls: ls[:-2], sums=True),
        "checkpoints/",
        "log truncated",
    ),
    ("key-swapped", _swap_key, "checkpoints/", "signature check failed"),
    ("checkpoint-missing-and-file-added", _remove_and_add, "checkpoints/", "but missing"),
    (
        "vkey-missing",
        lambda b: (station_dir(b) / "station.vkey").unlink(),
        "station.vkey",
        "missing",
    ),
    ("entries-missing", lambda b: _entries(b).unlink(), "entries.jsonl", "missing"),
    ("sums-missing", lambda b: (b / "SHA256SUMS").unlink(), "SHA256SUMS", "missing"),
    ("catalog-row-edited", _edit_catalog_row, "clip ", "catalog officer is '999999'"),
]


@pytest.mark.parametrize(
    ("tamper", "item", "text"),
    [t[1:] for t in BUNDLE_TAMPERING],
    ids=[t[0] for t in BUNDLE_TAMPERING],
)
def test_tampered_bundle(
    bundle: Path, tmp_path: Path, tamper: Callable[[Path], None], item: str, text: str
) -> None:
    tamper(bundle)
    code, report = verify(tmp_path / "no-station", "--bundle", str(bundle))
    assert code == INTEGRITY
    assert named(report, item, text), failures(report)
    if tamper is _remove_and_add:
        assert named(report, "checkpoints/999", "not listed in SHA256SUMS"), failures(report)


def test_checkpoints_edited_in_a_bundle_are_each_named(bundle: Path, tmp_path: Path) -> None:
    files = sorted((station_dir(bundle) / "checkpoints").iterdir(), key=lambda p: int(p.name))
    _edit_checkpoints(bundle)  # a signature, a size and a root, each in another checkpoint
    code, report = verify(tmp_path / "no-station", "--bundle", str(bundle))
    assert code == INTEGRITY
    for path in (files[0], files[1], files[-1]):
        assert named(report, str(path.relative_to(bundle)), "signature check failed")


def _garbage_manifest(b: Path) -> None:
    (b / "manifest.json").write_text("{not json")


def _future_version(b: Path) -> None:
    doc = json.loads((b / "manifest.json").read_text())
    doc["version"] = 99
    (b / "manifest.json").write_text(json.dumps(doc))


def _bad_sums_line(b: Path) -> None:
    with (b / "SHA256SUMS").open("a") as f:
        f.write("this is not a checksum line\n")


def _bad_catalog_row(b: Path) -> None:
    (station_dir(b) / "catalog" / "clips.jsonl").write_text('{"id": "x"\n')
    resum(b)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_garbage_manifest, "manifest.json is not JSON"),
        (_future_version, "version 99 is not supported"),
        (_bad_sums_line, "SHA256SUMS line"),
        (_bad_catalog_row, "clips.jsonl line 1 is not JSON"),
        (lambda b: (b / "manifest.json").unlink(), "not an audit bundle"),
    ],
    ids=["manifest-garbage", "future-version", "sums-line", "catalog-row", "not-a-bundle"],
)
def test_malformed_bundle_is_a_clear_error(
    bundle: Path, tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    damage(bundle)
    proc = agent(tmp_path / "no-station", "verify", "--bundle", str(bundle))
    assert proc.returncode == ERROR
    assert proc.stdout == ""
    assert message in proc.stderr and proc.stderr.startswith("error: ")


# ---------------------------------------------------------------- against a trusted checkpoint


def test_log_extends_the_trusted_checkpoint(exported: tuple[Path, Path], tmp_path: Path) -> None:
    data, bundle = copy(exported[0], tmp_path / "data"), exported[1]
    oldest = min((station_dir(bundle) / "checkpoints").iterdir(), key=lambda p: int(p.name))
    code, report = verify(data, "--trusted-checkpoint", str(oldest))
    assert code == 0, failures(report)
    assert report["logs"][0]["trusted_checkpoint"]["consistency_proof"]


def test_rollback_to_an_older_state(station: Path, exported: tuple[Path, Path]) -> None:
    # The station's data restored from a backup older than the checkpoint the auditor kept.
    trusted = latest_checkpoint(exported[1])
    code, report = verify(station, "--trusted-checkpoint", str(trusted))
    assert code == INTEGRITY
    assert named(report, str(trusted), "truncated or rolled back", step=5), failures(report)


def test_fork_after_a_rollback(station: Path, exported: tuple[Path, Path], tmp_path: Path) -> None:
    # Rolled back, then new events: the log has as many entries as the trusted checkpoint
    # covers, but not the same ones, and the station signed both histories.
    assert agent(station, "audit", "export", str(tmp_path / "other")).returncode == 0
    trusted = latest_checkpoint(exported[1])
    code, report = verify(station, "--trusted-checkpoint", str(trusted))
    assert code == INTEGRITY
    assert named(report, str(trusted), "fork", step=5), failures(report)
    assert named(report, f"checkpoint {trusted.name}", "two histories", step=5)


def test_truncated_bundle_against_the_trusted_checkpoint(bundle: Path, tmp_path: Path) -> None:
    trusted = tmp_path / "kept-checkpoint"
    shutil.copy(latest_checkpoint(bundle), trusted)
    _edit_lines(bundle, lambda ls: ls[:-1], sums=False)
    latest_checkpoint(bundle).unlink()
    resum(bundle)
    args = ("--bundle", str(bundle), "--trusted-checkpoint", str(trusted))
    code, report = verify(tmp_path / "no-station", *args)
    assert code == INTEGRITY
    assert named(report, str(trusted), "truncated or rolled back", step=5), failures(report)
    human = agent(tmp_path / "no-station", "verify", *args)  # the report for people
    assert human.returncode == INTEGRITY and human.stdout.rstrip().endswith("INTEGRITY FAILURE")
    assert "[ FAILED] 5 against the auditor's trusted checkpoint" in human.stdout
    assert f"step 5  {STATION}: {trusted}: the log has" in human.stdout


# ---------------------------------------------------------------- proofs and checkpoints


def test_prove_and_verify_offline(station: Path, tmp_path: Path) -> None:
    clip_id, sha = clips(station)[0]
    proof = tmp_path / "proof.json"
    proc = agent(station, "prove", clip_id[:8], "--out", str(proof), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(proof.read_text())
    shutil.rmtree(station)  # offline: no station, no catalog
    proc = agent(station, "verify-proof", str(proof), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["valid"] and result["clip"] == clip_id and result["sha256"] == sha
    assert [e["type"] for e in result["events"]][:2] == ["clip.ingested", "clip.stored"]
    assert not station.exists()
    human = agent(station, "verify-proof", str(proof))
    assert human.returncode == 0 and human.stdout.startswith("VALID")

    doc = json.loads(proof.read_text())
    doc["events"][0]["entry"] = doc["events"][0]["entry"].replace("100231", "100232")
    proof.write_text(json.dumps(doc))
    proc = agent(station, "verify-proof", str(proof))
    assert proc.returncode == INTEGRITY and "event" in proc.stderr

    proof.write_text("{}")
    proc = agent(station, "verify-proof", str(proof))
    assert proc.returncode == ERROR and "malformed proof" in proc.stderr


def test_export_and_prove_need_a_role_and_a_refusal_is_logged(
    station: Path, tmp_path: Path
) -> None:
    clip_id, _ = clips(station)[0]
    (station / "roles.toml").unlink()
    exported = agent(station, "audit", "export", str(tmp_path / "bundle"))
    assert exported.returncode == 5 and not (tmp_path / "bundle").exists()
    assert agent(station, "prove", clip_id).returncode == 5
    assert [e["data"]["action"] for e in logged(station, "access.refused")] == [
        "audit_export",
        "prove",
    ]

    grant_auditor(station)
    assert agent(station, "prove", clip_id, "--json").returncode == 0
    me = pwd.getpwuid(os.getuid()).pw_name
    [proved] = logged(station, "clip.proved")
    assert proved["actor"] == f"user:{me}" and proved["data"]["events"] >= 2


def test_prove_an_unknown_clip(station: Path) -> None:
    proc = agent(station, "prove", "no-such-clip")
    assert proc.returncode == ERROR and "no clip" in proc.stderr


def test_custody_checkpoint_and_export_refuses_a_used_directory(
    station: Path, tmp_path: Path
) -> None:
    proc = agent(station, "custody", "checkpoint", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["made"] is False and result["note"].startswith(ORIGIN + "\n")
    used = tmp_path / "used"
    used.mkdir()
    (used / "file").write_text("x")
    proc = agent(station, "audit", "export", str(used))
    assert proc.returncode == ERROR and "not an empty directory" in proc.stderr


def _append_forged_clip(bundle: Path) -> None:
    """An entry appended after the last checkpoint, as a forger with the bundle alone can: a
    clip.ingested copied from a real one with a new id and hash, its catalog row beside it,
    SHA256SUMS redone."""
    path = _entries(bundle)
    lines = path.read_bytes().splitlines(keepends=True)
    ingested = next(json.loads(line) for line in lines if b'"clip.ingested"' in line)
    forged = {**ingested, "seq": len(lines), "sha256": "ab" * 32}
    forged["subject"] = {**ingested["subject"], "id": "00000000-0000-4000-8000-000000000000"}
    path.write_bytes(b"".join(lines) + canonical_json(forged) + b"\n")
    rows_path = station_dir(bundle) / "catalog" / "clips.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    rows.append({**rows[0], "id": forged["subject"]["id"], "sha256": forged["sha256"]})
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    resum(bundle)


def _remove_newest_checkpoint(bundle: Path) -> None:
    latest_checkpoint(bundle).unlink()
    resum(bundle)


@pytest.mark.parametrize("forge", [_append_forged_clip, _remove_newest_checkpoint])
def test_a_bundle_is_signed_to_its_last_entry(
    exported: tuple[Path, Path], bundle: Path, tmp_path: Path, forge: Callable[[Path], None]
) -> None:
    """An export ends on a checkpoint covering every entry: an unsigned entry in a bundle, or
    a missing newest checkpoint, is an integrity failure even for an auditor who holds the
    station's key and an older checkpoint; and no unsigned entry vouches for a catalog row."""
    trusted = tmp_path / "trusted-checkpoint"
    shutil.copy(
        min((station_dir(bundle) / "checkpoints").iterdir(), key=lambda p: int(p.name)), trusted
    )
    key = tmp_path / "station.vkey"
    shutil.copy(station_dir(bundle) / "station.vkey", key)
    forge(bundle)
    code, report = verify(
        tmp_path / "no-station",
        "--bundle",
        str(bundle),
        "--trusted-key",
        str(key),
        "--trusted-checkpoint",
        str(trusted),
    )
    assert code == INTEGRITY, failures(report)
    assert named(report, "checkpoints", "after the newest signed checkpoint", step=1)
    if forge is _append_forged_clip:
        assert named(report, "clip 00000000", step=4), failures(report)


def test_without_a_trusted_key_the_report_says_whose_key_it_used(
    bundle: Path, tmp_path: Path
) -> None:
    """A bundle re-signed with an attacker's key is whole; without --trusted-key that is all
    verify can say, and it says so instead of a bare INTACT."""
    code, report = verify(tmp_path / "no-station", "--bundle", str(bundle))
    assert code == 0 and report["key_from_bundle"] is True
    text = agent(tmp_path / "no-station", "verify", "--bundle", str(bundle)).stdout
    assert "INTACT, with the key the bundle carries itself" in text
    assert "--trusted-key" in text
    key = tmp_path / "station.vkey"
    shutil.copy(station_dir(bundle) / "station.vkey", key)
    pinned = agent(
        tmp_path / "no-station", "verify", "--bundle", str(bundle), "--trusted-key", str(key)
    )
    assert pinned.stdout.rstrip().endswith("INTACT")
