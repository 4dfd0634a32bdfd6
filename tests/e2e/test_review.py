"""End to end: clerks, supervisors, auditors and officers using the review commands of `evidence-agent`.

One demo recorder is docked once per module; each test works on its own copy of that station.
Roles are given to the OS user running the tests through the station's roles file (<data_dir>/roles.toml),
rewritten before each command to act as one role or another."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support import service_missing

EA = Path(sys.executable).with_name("evidence-agent")
USER = pwd.getpwuid(os.getuid()).pw_name
ME = f"user:{USER}"
FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)
LATER = 200  # days: every clip of the demo is past its 183 days


@pytest.fixture(autouse=True, scope="module")
def ffmpeg() -> None:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed: scripts/setup.sh installs it")


def faketime_library() -> str:
    found = [p for p in FAKETIME_LIBRARIES if Path(p).exists()]
    if not found:
        service_missing("libfaketime is not installed: scripts/setup.sh --dev installs it")
    return found[0]


class Station:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.roles_file = data / "roles.toml"

    def run(
        self,
        *args: str,
        roles: Sequence[str] = ("clerk",),
        review: str = "",
        badge: str | None = None,
        days_later: int = 0,
    ) -> subprocess.CompletedProcess[str]:
        """Run `evidence-agent` as the test user holding `roles` (and nothing else), on a clock
        `days_later` days ahead (libfaketime): retention counts time that nobody can edit."""
        text = f"[roles.users]\n{USER} = {json.dumps(list(roles))}\n"
        if badge:
            text += f'[roles.officers]\n{USER} = "{badge}"\n'
        if review:
            text += f"[review]\n{review}\n"
        self.data.mkdir(mode=0o700, exist_ok=True)
        self.roles_file.write_text(text)
        self.roles_file.chmod(0o644)
        env = {
            **os.environ,
            "EVIDENCE_AGENT_DATA_DIR": str(self.data),
            "EVIDENCE_AGENT__STATION__TIMEZONE": "Asia/Shanghai",
        }
        env.pop("EVIDENCE_AGENT_CONFIG", None)
        if days_later:
            env.update(LD_PRELOAD=faketime_library(), FAKETIME=f"+{days_later}d")
        return subprocess.run([str(EA), *args], env=env, capture_output=True, text=True, timeout=60)

    def json(self, *args: str, **kw: Any) -> Any:
        result = self.run(*args, "--json", **kw)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def sql(self, statement: str, *params: Any) -> None:
        with sqlite3.connect(self.data / "catalog.sqlite3") as db:
            db.execute(statement, params)

    def object_path(self, sha256: str) -> Path:
        return self.data / "objects" / "sha256" / sha256[:2] / sha256[2:4] / sha256


@dataclass(frozen=True)
class Docked:
    data: Path
    videos: list[dict[str, Any]]  # the demo's readable video clips, in recording order


@pytest.fixture(scope="module")
def docked(tmp_path_factory: pytest.TempPathFactory) -> Docked:
    """A station with one demo recorder ingested and stored."""
    root = tmp_path_factory.mktemp("golden")
    station = Station(root / "data")
    made = station.run("demo-recorder", str(root / "volume"))
    assert made.returncode == 0, made.stderr
    ingested = station.run("ingest", str(root / "volume"), "--json")
    assert ingested.returncode in (0, 1), ingested.stderr  # 1: the demo's cut-off clip is flagged
    clips = station.json("clips", "search", "--officer", "100231", roles=["clerk"])
    good = [c for c in clips if c["media_kind"] == "video" and c["duration_seconds"]]
    return Docked(station.data, sorted(good, key=lambda c: c["recorded_start"]))


@pytest.fixture
def station(docked: Docked, tmp_path: Path) -> Station:
    data = tmp_path / "data"
    shutil.copytree(docked.data, data)
    return Station(data)


@pytest.fixture
def videos(docked: Docked) -> list[dict[str, Any]]:
    return docked.videos


def access_log(station: Station, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = station.json("access-log", *args, roles=["auditor"])
    return rows


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clerk_builds_a_case_finds_a_gap_completes_it_and_retrieves_it(
    station: Station, videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    v1, v2, v3 = videos[:3]
    case = station.json(
        "case", "create", "2026-0042",
        "--type", "seizure",
        "--title", "Seizure of unlicensed goods",
        "--party", "李四",
        "--cause", "unlicensed street trading",
        "--unit", "330100000000",
        "--officer", "100231",
        "--start", v1["recorded_start"],
        "--end", v3["recorded_end"],
    )  # fmt: skip
    assert case["full_recording_required"] is True
    assert case["case_file_due"] is not None

    suggested = station.json("case", "suggest", "2026-0042")["suggested"]
    assert {v1["id"], v2["id"], v3["id"]} <= {c["id"] for c in suggested}

    linked = station.json(
        "case", "link", "2026-0042", v1["id"], v3["id"], "--reason", "seizure footage"
    )
    assert sorted(linked["linked"]) == sorted([v1["id"], v3["id"]])

    # The middle clip is missing: a gap exactly where it was, and it is named as not linked.
    check = station.run("case", "check", "2026-0042", "--json")
    assert check.returncode == 6, check.stderr
    report = json.loads(check.stdout)
    assert report["complete"] is False
    assert [(g["start"], g["end"]) for g in report["gaps"]] == [
        (v2["recorded_start"], v2["recorded_end"])
    ]
    assert report["unlinked_in_window"] == [v2["id"]]

    station.json("case", "link", "2026-0042", v2["id"][:8], "--reason", "gap found by check")
    check = station.run("case", "check", "2026-0042", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["complete"] is True

    # Linked footage is evidence: kept permanently; search by party and cause finds it.
    found = station.json("clips", "search", "--party", "李", "--cause", "street trading")
    assert {c["id"] for c in found} == {v1["id"], v2["id"], v3["id"]}
    assert {c["retention_class"] for c in found} == {"permanent"}

    shown = station.json("case", "show", "2026-0042")
    assert [c["id"] for c in shown["footage"]] == [v1["id"], v2["id"], v3["id"]]
    assert [e["kind"] for e in shown["timeline"]].count("video") == 3

    # The clerk hands the case's footage over, with a reason: verified copies and a receipt.
    target = tmp_path / "for-court"
    handover = station.json(
        "retrieve", "--case", "2026-0042", "--to", str(target), "--reason", "court request 17"
    )
    handed = {item["clip"]: target / item["file"] for item in handover["handed_over"]}
    assert set(handed) == {v1["id"], v2["id"], v3["id"]}
    for clip in (v1, v2, v3):
        assert sha256_of(handed[clip["id"]]) == clip["sha256"]
        assert sha256_of(station.object_path(clip["sha256"])) == clip["sha256"]
    receipt_path = Path(handover["receipt"])
    receipt = json.loads(receipt_path.read_text())
    assert receipt["reason"] == "court request 17" and receipt["actor"] == ME
    assert {i["sha256"] for i in receipt["items"]} == {v1["sha256"], v2["sha256"], v3["sha256"]}
    assert sha256_of(receipt_path) == handover["receipt_sha256"]
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [*(p.name for p in handed.values()), receipt_path.name]
    )  # no temporary file left behind

    # The auditor sees who linked and who retrieved what, when and why.
    events = access_log(
        station, "--type", "case.clip_linked", "--type", "clip.retrieved",
        "--type", "retrieval.receipt",
    )  # fmt: skip
    seen = {(e["type"], e["subject"]["id"], e["actor"], e["reason"]) for e in events}
    assert seen >= {
        ("case.clip_linked", v1["id"], ME, "seizure footage"),
        ("case.clip_linked", v3["id"], ME, "seizure footage"),
        ("case.clip_linked", v2["id"], ME, "gap found by check"),
        *(("clip.retrieved", v["id"], ME, "court request 17") for v in (v1, v2, v3)),
    }
    assert {e["sha256"] for e in events if e["type"] == "clip.retrieved"} == {
        v1["sha256"],
        v2["sha256"],
        v3["sha256"],
    }
    assert events[-1]["type"] == "retrieval.receipt"
    assert events[-1]["data"]["receipt_sha256"] == handover["receipt_sha256"]


def test_a_case_is_handed_over_whole_by_the_recorders_names_and_again_without_copies(
    station: Station, videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    v1 = videos[0]
    # A clip whose name on the recorder is not UTF-8.
    volume = tmp_path / "odd-volume"
    volume.mkdir()
    odd_bytes = os.urandom(40_000)
    with open(os.fsencode(volume) + b"/caf\xe9 0001.MP4", "wb") as f:
        f.write(odd_bytes)
    ingested = station.run("ingest", str(volume), "--recorder", "A123456", "--json")
    assert ingested.returncode in (0, 1), ingested.stderr  # 1: flagged (not readable media)
    (odd,) = json.loads(ingested.stdout)["clips"]
    shown_name = "caf\\xe9 0001.MP4"  # as the catalog shows it: the byte as an escape
    assert odd["source_path"] == shown_name

    station.json(
        "case", "create", "2026-0043", "--type", "seizure", "--unit", "330100000000",
        "--officer", "100231", "--start", v1["recorded_start"], "--end", v1["recorded_end"],
    )  # fmt: skip
    station.json("case", "link", "2026-0043", v1["id"], odd["id"], "--reason", "seizure")
    decision = tmp_path / "decision.pdf"
    decision.write_bytes(b"%PDF-1.7 the decision of case 2026-0043")
    station.json("case", "attach", "2026-0043", str(decision), "--reason", "the decision")

    target = tmp_path / "for-court"
    args = ("retrieve", "--case", "2026-0043", "--to", str(target), "--reason", "court 18")
    first = station.json(*args)
    files = {item["clip"]: item["file"] for item in first["handed_over"]}
    assert files[odd["id"]] == shown_name
    assert (target / shown_name).read_bytes() == odd_bytes
    assert sha256_of(target / files[v1["id"]]) == v1["sha256"]
    (document,) = first["documents"]
    assert document["name"] == "decision.pdf" and document["verified"] == "sha256"
    assert (target / document["file"]).read_bytes() == decision.read_bytes()
    assert document["sha256"] == sha256_of(decision)
    receipt = json.loads(Path(first["receipt"]).read_text())
    assert [d["sha256"] for d in receipt["documents"]] == [sha256_of(decision)]
    assert {i["file"] for i in receipt["items"]} == set(files.values())
    handed = sorted(p.name for p in target.iterdir())

    # The same retrieval again finds the identical, verified files there: no second copies.
    second = station.json(*args)
    assert all(i["already_there"] for i in [*second["handed_over"], *second["documents"]])
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [*handed, Path(second["receipt"]).name]
    )
    text = station.run(*args)
    assert text.returncode == 0 and "already in the target, identical" in text.stdout

    # A different file under the clip's name is never replaced: the copy takes "-2".
    taken = target / files[v1["id"]]
    taken.chmod(0o644)
    taken.write_bytes(b"someone else's file")
    third = station.json(*args)
    (again,) = [i for i in third["handed_over"] if i["clip"] == v1["id"]]
    assert again["file"] == taken.name.replace(".MP4", "-2.MP4") and not again["already_there"]
    assert sha256_of(target / again["file"]) == v1["sha256"]
    assert taken.read_bytes() == b"someone else's file"


def test_refusals_are_clear_and_logged(
    station: Station, videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    clip = videos[0]
    target = tmp_path / "out"

    # An officer may not retrieve.
    refused = station.run(
        "retrieve", clip["id"], "--to", str(target), "--reason", "curious", roles=["officer"]
    )
    assert refused.returncode == 5 and "refused" in refused.stderr
    assert "remedy: ask an admin for the role" in refused.stderr
    # A clerk may not read the access log.
    assert station.run("access-log", roles=["clerk"]).returncode == 5
    # No reason, no retrieval.
    no_reason = station.run("retrieve", clip["id"], "--to", str(target))
    assert no_reason.returncode == 2 and "reason" in no_reason.stderr
    # Unknown clip and unknown case.
    unknown = station.run("retrieve", "ffffffffffff", "--to", str(target), "--reason", "x")
    assert unknown.returncode == 2 and "no clip" in unknown.stderr
    # A target that is not a directory.
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    not_dir = station.run("retrieve", clip["id"], "--to", str(a_file), "--reason", "x")
    assert not_dir.returncode == 2 and "not a directory" in not_dir.stderr

    assert not target.exists() or not any(target.iterdir())  # nothing handed over
    refusals = access_log(station, "--type", "access.refused")
    causes = [(e["data"]["action"], e["data"]["roles"], e["data"]["cause"]) for e in refusals]
    assert [c[:2] for c in causes[:2]] == [("retrieve", ["officer"]), ("access_log", ["clerk"])]
    assert "reason" in causes[2][2]
    assert "no clip" in causes[3][2]
    assert "not a directory" in causes[4][2] and len(causes) == 5
    assert all(e["actor"] == ME for e in refusals)

    # Someone with no role at all may not even search their own footage (the operation's
    # guard action, checked before the search), and is told how to get one.
    no_role = station.run("clips", "search", "--officer", "100231", roles=[])
    assert no_role.returncode == 5
    assert "remedy: ask an admin for the role" in no_role.stderr
    searched = access_log(station, "--type", "access.refused")[-1]
    assert searched["data"]["action"] == "search_own" and searched["data"]["roles"] == []


def test_an_officer_sees_only_their_own_footage(station: Station) -> None:
    own = station.json("clips", "search", roles=["officer"], badge="100231")
    assert own and {c["officer"] for c in own} == {"100231"}
    asked = station.run("clips", "search", "--officer", "100231", roles=["officer"], badge="999999")
    assert asked.returncode == 5


def test_a_corrupted_stored_copy_is_not_handed_over(
    station: Station, videos: list[dict[str, Any]], tmp_path: Path
) -> None:
    clip = videos[0]
    stored = station.object_path(clip["sha256"])
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))

    target = tmp_path / "out"
    result = station.run(
        "retrieve", clip["id"], "--to", str(target), "--reason", "appeal", "--json"
    )
    assert result.returncode == 3, result.stderr
    assert "failed verification" in result.stderr
    report = json.loads(result.stdout)
    assert report["handed_over"] == [] and clip["id"] in report["integrity_failures"]
    assert [p.name for p in target.iterdir()] == [Path(report["receipt"]).name]  # receipt only
    events = access_log(station, "--type", "clip.integrity_failed", "--type", "clip.retrieved")
    assert [(e["type"], e["subject"]["id"]) for e in events] == [
        ("clip.integrity_failed", clip["id"])
    ]


def test_deletion_past_retention_needs_a_supervisor_and_no_hold(
    station: Station, videos: list[dict[str, Any]]
) -> None:
    old, held = videos[0], videos[1]
    due = station.json("retention", "due", roles=["supervisor"], days_later=LATER)
    assert {old["id"], held["id"]} <= {c["id"] for c in due}
    station.json("retention", "hold", held["id"], "--reason", "litigation", roles=["supervisor"])

    # Clerks request, they do not approve; the requester cannot approve their own request.
    assert station.run("retention", "delete", old["id"], "--reason", "x").returncode == 5
    station.json(
        "retention", "request", old["id"], "--reason", "past retention, no case",
        days_later=LATER,
    )  # fmt: skip
    same_person = station.run(
        "retention", "delete", old["id"], "--reason", "approved", roles=["supervisor"],
        days_later=LATER,
    )  # fmt: skip
    assert same_person.returncode == 5 and "two-person" in same_person.stderr
    # Where one supervisor's approval is the policy: a held clip stays, the other goes.
    one_supervisor = 'deletion_approval = "supervisor"'
    kept = station.run(
        "retention", "delete", held["id"], "--reason", "tidy up", roles=["supervisor"],
        review=one_supervisor, days_later=LATER,
    )  # fmt: skip
    assert kept.returncode == 2 and "legal hold" in kept.stderr
    done = station.json(
        "retention", "delete", old["id"], "--reason", "approved: 183 days passed",
        roles=["supervisor"], review=one_supervisor, days_later=LATER,
    )  # fmt: skip
    assert done["store"] == "removed"
    assert done["request"]["requested_by"] == ME and done["request"]["state"] == "approved"
    assert not station.object_path(old["sha256"]).exists()
    assert station.object_path(held["sha256"]).exists()
    with sqlite3.connect(station.data / "catalog.sqlite3") as db:
        states = dict(
            db.execute("SELECT id, state FROM clips WHERE id IN (?, ?)", (old["id"], held["id"]))
        )
    assert states == {old["id"]: "deleted", held["id"]: "stored"}

    events = access_log(station, "--type", "clip.deleted", "--type", "access.refused")
    [tombstone] = [e for e in events if e["type"] == "clip.deleted"]
    assert tombstone["sha256"] == old["sha256"] and tombstone["actor"] == ME
    assert tombstone["data"]["request"]["reason"] == "past retention, no case"
    refused = [e["data"]["action"] for e in events if e["type"] == "access.refused"]
    assert refused == ["retention_approve"] * 3


def ingest_retention(station: Station, clip_id: str) -> str:
    """The keep-until time the clip's ingest event records, as the catalog stores it."""
    with sqlite3.connect(station.data / "catalog.sqlite3") as db:
        (entry,) = db.execute(
            "SELECT entry FROM custody_entries WHERE subject_id = ? AND event_type = ?",
            (clip_id, "clip.ingested"),
        ).fetchone()
    until = datetime.fromisoformat(json.loads(entry)["data"]["retention_until"])
    return until.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def verify_report(station: Station) -> tuple[int, dict[str, Any]]:
    result = station.run("verify", "--json")
    return result.returncode, json.loads(result.stdout)


def test_a_hold_cleared_in_the_catalog_still_keeps_the_clip(
    station: Station, videos: list[dict[str, Any]]
) -> None:
    held = videos[0]
    station.json("retention", "hold", held["id"], "--reason", "litigation", roles=["supervisor"])
    station.sql("UPDATE clips SET legal_hold = 0 WHERE id = ?", held["id"])

    code, report = verify_report(station)
    assert code == 3
    assert any(
        f["item"] == f"clip {held['id']}" and "legal_hold" in f["message"]
        for f in report["findings"]
    ), report["findings"]

    # The deletion path reads the hold from the clip's events: every step of it refuses.
    requested = station.run(
        "retention", "request", held["id"], "--reason", "past retention", days_later=LATER
    )
    assert requested.returncode == 3, requested.stderr
    assert held["id"] in requested.stderr and "legal_hold" in requested.stderr
    deleted = station.run(
        "retention", "delete", held["id"], "--reason", "tidy up", roles=["supervisor"],
        review='deletion_approval = "supervisor"', days_later=LATER,
    )  # fmt: skip
    assert deleted.returncode == 3, deleted.stderr
    assert held["id"] in deleted.stderr and "legal_hold" in deleted.stderr
    assert station.object_path(held["sha256"]).exists()
    with sqlite3.connect(station.data / "catalog.sqlite3") as db:
        (state,) = db.execute("SELECT state FROM clips WHERE id = ?", (held["id"],)).fetchone()
    assert state == "stored"
    refused = [
        e["data"]
        for e in access_log(station, "--type", "access.refused")
        if e["subject"]["id"] == held["id"]
    ]
    assert [r["action"] for r in refused] == ["retention_request", "retention_approve"]
    assert all("legal_hold" in r["cause"] for r in refused)


def test_grounds_and_links_changed_in_the_catalog_keep_the_clip(
    station: Station, videos: list[dict[str, Any]]
) -> None:
    marked, linked = videos[0], videos[1]
    station.json(
        "case", "create", "2026-0077", "--type", "seizure", "--title", "t",
        "--officer", "100231",
    )  # fmt: skip
    station.json("case", "link", "2026-0077", linked["id"], "--reason", "evidence")
    station.json(
        "retention", "mark", marked["id"], "--ground", "obstruction", "--reason", "seen",
        roles=["supervisor"],
    )  # fmt: skip
    # Back to what the ingest gave them, as a careful attacker would: class and date too.
    for clip_id in (marked["id"], linked["id"]):
        station.sql(
            "UPDATE clips SET retention_grounds = '[]', retention_class = 'standard',"
            " retention_until = ? WHERE id = ?",
            ingest_retention(station, clip_id), clip_id,
        )  # fmt: skip
    station.sql("DELETE FROM case_clips WHERE clip_id = ?", linked["id"])

    code, report = verify_report(station)
    assert code == 3
    messages = {(f["item"], f["message"].split(" is ")[0]) for f in report["findings"]}
    assert (f"clip {marked['id']}", "catalog retention_grounds") in messages, messages
    for clip, field in ((marked, "retention_grounds"), (linked, "case")):
        deleted = station.run(
            "retention", "delete", clip["id"], "--reason", "tidy up", roles=["supervisor"],
            review='deletion_approval = "supervisor"', days_later=LATER,
        )  # fmt: skip
        assert deleted.returncode == 3, deleted.stderr
        assert clip["id"] in deleted.stderr and field in deleted.stderr
        assert station.object_path(clip["sha256"]).exists()


CASE_EDITS = [
    pytest.param("UPDATE cases SET action_end = action_start", "action_end", id="window-narrowed"),
    pytest.param(
        "UPDATE cases SET enforcement_type = 'on_site_inspection'", "enforcement_type", id="type"
    ),
]


@pytest.mark.parametrize(("edit", "field"), CASE_EDITS)
def test_a_case_edited_in_the_catalog_is_not_checked_nor_closed(
    station: Station, videos: list[dict[str, Any]], tmp_path: Path, edit: str, field: str
) -> None:
    v1, _, v3 = videos[:3]
    station.json(
        "case", "create", "2026-0042", "--type", "seizure", "--title", "t", "--officer", "100231",
        "--start", v1["recorded_start"], "--end", v3["recorded_end"],
    )  # fmt: skip
    station.json("case", "link", "2026-0042", v1["id"], "--reason", "footage")
    assert station.run("case", "check", "2026-0042").returncode == 6  # the rest is missing

    station.sql(edit)
    checked = station.run("case", "check", "2026-0042", "--json")
    assert checked.returncode == 3, checked.stdout + checked.stderr
    assert "case 2026-0042" in checked.stderr and field in checked.stderr
    closed = station.run("case", "close", "2026-0042", "--reason", "done", "--override-incomplete")
    assert closed.returncode == 3, closed.stderr
    refused = [
        e["data"] for e in access_log(station, "--type", "access.refused", "--subject", "2026-0042")
    ]
    assert sorted(r["action"] for r in refused) == ["case_close", "case_read"]

    code, report = verify_report(station)
    assert code == 3
    assert any(
        f["item"] == "case 2026-0042" and f"catalog {field} is" in f["message"]
        for f in report["findings"]
    ), report["findings"]
    bundle = tmp_path / "bundle"
    assert station.run("audit", "export", str(bundle), roles=["auditor"]).returncode == 0
    verified = station.run("verify", "--bundle", str(bundle), "--json")
    assert verified.returncode == 3
    findings = json.loads(verified.stdout)["findings"]
    assert any(f["item"] == "case 2026-0042" and field in f["message"] for f in findings)


def test_a_link_added_in_the_catalog_is_not_checked(
    station: Station, videos: list[dict[str, Any]]
) -> None:
    v1, v2 = videos[:2]
    station.json(
        "case", "create", "2026-0043", "--type", "seizure", "--title", "t",
        "--start", v1["recorded_start"], "--end", v2["recorded_end"],
    )  # fmt: skip
    station.json("case", "link", "2026-0043", v1["id"], "--reason", "footage")
    station.sql(
        "INSERT INTO case_clips (case_id, clip_id, linked_at, actor, reason) SELECT id, ?,"
        " '2026-01-01 00:00:00', 'user:x', 'y' FROM cases WHERE number = '2026-0043'",
        v2["id"],
    )
    checked = station.run("case", "check", "2026-0043")
    assert checked.returncode == 3, checked.stdout + checked.stderr
    assert v2["id"] in checked.stderr and "case.clip_linked" in checked.stderr


def test_a_retention_shortened_in_the_catalog_keeps_the_clip(
    station: Station, videos: list[dict[str, Any]]
) -> None:
    """An important clip is kept three years; the catalog edited to say standard retention
    (and not important) does not make it due after six months."""
    important = next(v for v in videos if v["important"])
    assert important["retention_class"] == "important"
    station.sql(
        "UPDATE clips SET important = 0, retention_class = 'standard', retention_until = ?"
        " WHERE id = ?",
        (datetime.now(UTC) + timedelta(days=LATER - 10)).strftime("%Y-%m-%d %H:%M:%S.%f"),
        important["id"],
    )
    code, report = verify_report(station)
    assert code == 3
    found = {f["message"].split(" is ")[0] for f in report["findings"]
             if f["item"] == f"clip {important['id']}"}  # fmt: skip
    assert {"catalog retention_class", "catalog retention_until"} <= found, found
    deleted = station.run(
        "retention", "delete", important["id"], "--reason", "tidy up", roles=["supervisor"],
        review='deletion_approval = "supervisor"', days_later=LATER,
    )  # fmt: skip
    assert deleted.returncode == 3, deleted.stderr
    assert important["id"] in deleted.stderr and "retention_class" in deleted.stderr
    assert station.object_path(important["sha256"]).exists()
