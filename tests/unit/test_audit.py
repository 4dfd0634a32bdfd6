"""Tests of the audit on synthetic logs: bundle verification and offline proofs."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.custody import audit_report
from evidence_agent.custody.audit_report import AuditReport
from evidence_agent.custody.checkpoint import Checkpoint, sign_checkpoint
from evidence_agent.custody.events import CustodyEvent, encode_entry, format_time
from evidence_agent.custody.merkle import (
    MerkleAccumulator,
    verify_consistency,
)
from evidence_agent.custody.proof_document import proof_document, verify_proof
from evidence_agent.custody.signed_note import Ed25519Signer
from evidence_agent.errors import ExitCode, InputError, IntegrityError
from evidence_agent.services.audit.proofs import verify_proof_file
from evidence_agent.services.audit.verify_bundle import verify_bundle
from evidence_agent.services.bundle_writer import StationExport, write_bundle

SID = "st-1"
ORIGIN = "evidence-agent/st-1"
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
SIGNER = Ed25519Signer(ORIGIN, bytes(range(32)))
OTHER_SIGNER = Ed25519Signer(ORIGIN, bytes(range(1, 33)))
SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not under test here


def ingest_data(n: int) -> dict[str, Any]:
    return {
        "size": 1000 + n,
        "blake3": f"{n:064x}",
        "sm3": None,
        "media_kind": "video",
        "source_path": f"DCIM/{n}.MP4",
        "source_path_hex": f"DCIM/{n}.MP4".encode().hex(),
        "recorded_start": format_time(T0 - timedelta(hours=n)),
        "recorded_end": format_time(T0 - timedelta(hours=n) + timedelta(seconds=4)),
        "time_source": "filename",
        "duration_seconds": 4,
        "ingested_at": format_time(T0),
        "recorder": "A123456",
        "officer": "100231",
        "unit": "330100000000",
        "important": False,
        "flags": [],
        "dock_session": "d1",
        "probe_error": None,
    }


def clip_row(n: int, sha: str, **changes: Any) -> dict[str, Any]:
    data = ingest_data(n)
    data.pop("probe_error")
    row = {
        "id": f"c{n}",
        "sha256": sha,
        "station": SID,
        "state": "stored",
        "stored_at": format_time(T0 + timedelta(seconds=n)),
        **data,
        "duration_seconds": 4.0,  # the catalog's float is the event's 4
    }
    row.update(changes)
    return row


def standard_events(signer: Ed25519Signer = SIGNER) -> list[CustodyEvent]:
    def ev(type_: str, kind: str, sid: str, sha: str | None = None, **data: Any) -> CustodyEvent:
        return CustodyEvent(type_, kind, sid, "user:test", "test", sha, data)

    return [
        ev("key.created", "station", SID, verifier_key=signer.verifier.key_string()),
        ev("clip.ingested", "clip", "c1", SHA_A, **ingest_data(1)),
        ev("clip.stored", "clip", "c1", SHA_A, stored_at=format_time(T0 + timedelta(seconds=1))),
        ev("clip.ingested", "clip", "c2", SHA_B, **ingest_data(2)),
        ev("case.clip_linked", "clip", "c1", SHA_A, case="2026-001"),
        ev("clip.stored", "clip", "c2", SHA_B, stored_at=format_time(T0 + timedelta(seconds=2))),
    ]


def encode(events: Sequence[CustodyEvent]) -> list[bytes]:
    return [
        encode_entry(e, station_id=SID, seq=i, time=T0 + timedelta(seconds=i))
        for i, e in enumerate(events)
    ]


def sign_at(
    entries: Sequence[bytes], sizes: Sequence[int], signer: Ed25519Signer = SIGNER
) -> list[tuple[int, str]]:
    notes = []
    for size in sizes:
        acc = MerkleAccumulator()
        acc.extend_entries(entries[:size])
        notes.append((size, sign_checkpoint(Checkpoint(ORIGIN, size, acc.root()), signer)))
    return notes


@dataclass
class Log:
    entries: list[bytes] = field(default_factory=lambda: encode(standard_events()))
    sizes: list[int] = field(default_factory=lambda: [1, 4, 6])
    signer: Ed25519Signer = SIGNER
    notes: list[tuple[int, str]] | None = None
    clips: list[dict[str, Any]] | None = field(
        default_factory=lambda: [clip_row(1, SHA_A), clip_row(2, SHA_B)]
    )
    links: list[dict[str, Any]] | None = field(
        default_factory=lambda: [{"case": "2026-001", "clip": "c1"}]
    )
    cases: list[dict[str, Any]] | None = None  # None: a bundle exported before it had cases

    def write(self, dest: Path) -> Path:
        notes = (
            self.notes if self.notes is not None else sign_at(self.entries, self.sizes, self.signer)
        )
        catalog: dict[str, Any] = {}
        if self.clips is not None:
            catalog["clips"] = self.clips
        if self.links is not None:
            catalog["case_clips"] = self.links
        if self.cases is not None:
            catalog["cases"] = self.cases
        export = StationExport(
            station_id=SID,
            verifier_key=self.signer.verifier.key_string(),
            public_key_pem=self.signer.verifier.public_key_pem(),
            entries=self.entries,
            checkpoints=notes,
            catalog=catalog,
        )
        write_bundle(dest, [export], created_at=T0, created_by="user:test")
        return dest


def findings(report: AuditReport) -> list[str]:
    return [f"{f.step} {f.item}: {f.message}" for f in report.findings]


def has(report: AuditReport, step: int, item: str, text: str) -> bool:
    return any(f.step == step and item in f.item and text in f.message for f in report.findings)


def test_intact_bundle(tmp_path: Path) -> None:
    report = verify_bundle(Log().write(tmp_path / "b"))
    assert report.intact, findings(report)
    assert report.exit_code == ExitCode.OK
    statuses = {n: s.status for n, s in report.steps.items()}
    assert statuses == {1: "passed", 2: "passed", 3: "skipped", 4: "limited", 5: "skipped"}
    (log,) = report.logs
    assert (log.entries, log.checkpoints, log.latest_size, log.unsigned_entries) == (6, 3, 6, 0)
    assert log.key == SIGNER.verifier.key_string()
    doc = report.to_json()
    assert doc["intact"] is True and doc["logs"][0]["latest_checkpoint"]["size"] == 6
    report.raise_for_failures()


def test_an_unsigned_tail_fails_a_bundle(tmp_path: Path) -> None:
    """An export ends on a checkpoint covering every entry (the station's own tail, beyond its
    newest checkpoint, is only allowed on the live station)."""
    report = verify_bundle(Log(sizes=[1, 4]).write(tmp_path / "b"))
    assert not report.intact
    assert report.logs[0].unsigned_entries == 2
    assert has(report, 1, "checkpoints", "2 entr(ies) after the newest signed checkpoint")


def test_trusted_checkpoint_extended_by_the_log(tmp_path: Path) -> None:
    log = Log()
    bundle = log.write(tmp_path / "b")
    trusted = tmp_path / "trusted"
    trusted.write_text(sign_at(log.entries, [3])[0][1])
    report = verify_bundle(bundle, trusted_checkpoint=trusted)
    assert report.intact, findings(report)
    summary = report.logs[0]
    assert summary.trusted_size == 3 and summary.consistency_proof
    old_root = MerkleAccumulator()
    old_root.extend_entries(log.entries[:3])
    assert summary.latest_root is not None
    verify_consistency(3, 6, old_root.root(), summary.latest_root, summary.consistency_proof)


def test_trusted_checkpoint_of_another_history_is_a_fork(tmp_path: Path) -> None:
    bundle = Log().write(tmp_path / "b")
    other = encode(
        [
            *standard_events()[:3],
            CustodyEvent("clip.ingested", "clip", "c9", "user:x", "forged", SHA_B, {}),
        ]
    )
    trusted = tmp_path / "trusted"
    trusted.write_text(sign_at(other, [4])[0][1])
    report = verify_bundle(bundle, trusted_checkpoint=trusted)
    assert report.exit_code == ExitCode.INTEGRITY
    assert has(report, 5, str(trusted), "fork")
    assert has(report, 5, "checkpoints/4", "two histories")


def test_trusted_checkpoint_larger_than_the_log_is_truncation(tmp_path: Path) -> None:
    log = Log()
    longer = log.entries + encode(standard_events() * 2)[6:8]
    bundle = log.write(tmp_path / "b")
    trusted = tmp_path / "trusted"
    trusted.write_text(sign_at(longer, [8])[0][1])
    report = verify_bundle(bundle, trusted_checkpoint=trusted)
    assert has(report, 5, str(trusted), "truncated or rolled back")


def test_checkpoints_rolled_back_below_the_trusted_one(tmp_path: Path) -> None:
    log = Log(sizes=[1, 4])  # the entries are all there; the newest checkpoints are gone
    bundle = log.write(tmp_path / "b")
    trusted = tmp_path / "trusted"
    trusted.write_text(sign_at(log.entries, [6])[0][1])
    report = verify_bundle(bundle, trusted_checkpoint=trusted)
    assert has(report, 5, "latest checkpoint", "rolled back")


def test_trusted_checkpoint_signed_by_another_key(tmp_path: Path) -> None:
    log = Log()
    bundle = log.write(tmp_path / "b")
    trusted = tmp_path / "trusted"
    trusted.write_text(sign_at(log.entries, [6], OTHER_SIGNER)[0][1])
    report = verify_bundle(bundle, trusted_checkpoint=trusted)
    assert has(report, 5, str(trusted), "key swapped")


def test_malformed_trusted_checkpoint_is_an_input_error(tmp_path: Path) -> None:
    bundle = Log().write(tmp_path / "b")
    trusted = tmp_path / "trusted"
    trusted.write_text(f"{ORIGIN}\nnot a note\n")
    with pytest.raises(InputError, match="not a signed checkpoint"):
        verify_bundle(bundle, trusted_checkpoint=trusted)
    trusted.write_bytes(b"\xff\n")
    with pytest.raises(InputError, match="not UTF-8"):
        verify_bundle(bundle, trusted_checkpoint=trusted)


def test_a_deleted_entry_is_named_once(tmp_path: Path) -> None:
    log = Log()
    notes = sign_at(log.entries, log.sizes)
    log.entries = log.entries[:2] + log.entries[3:]
    log.notes = notes
    report = verify_bundle(log.write(tmp_path / "b"))
    seq_findings = [f for f in report.findings if f.item.startswith("entry ")]
    assert [(f.item, f.message.split(":")[0]) for f in seq_findings] == [
        ("entry 2", "holds event number 3")
    ]
    assert has(report, 1, "checkpoints/4", "one of entries 1..3")
    assert has(report, 1, "checkpoints/6", "log truncated")


def test_reordered_entries_are_named(tmp_path: Path) -> None:
    log = Log()
    log.notes = sign_at(log.entries, log.sizes)
    log.entries[2], log.entries[3] = log.entries[3], log.entries[2]
    report = verify_bundle(log.write(tmp_path / "b"))
    assert has(report, 1, "entry 2", "holds event number 3")
    assert has(report, 1, "entry 3", "holds event number 2")
    assert has(report, 1, "checkpoints/4", "changed, removed, inserted or reordered")


def test_a_rewritten_history_fails_the_older_checkpoints(tmp_path: Path) -> None:
    # The attacker changes entry 1 and signs new checkpoints from 4 on with the stolen key:
    # checkpoint 1 is still the old one, so only consistency shows the rewrite.
    log = Log()
    events = standard_events()
    events[1] = CustodyEvent("clip.ingested", "clip", "c1", "user:x", "x", SHA_A, ingest_data(9))
    rewritten = encode(events)
    log.notes = sign_at(log.entries, [1, 2]) + sign_at(rewritten, [4, 6])
    log.entries = rewritten
    log.clips = None
    report = verify_bundle(log.write(tmp_path / "b"))
    assert has(report, 1, "checkpoints/2", "one of entries 1..1")
    assert has(report, 2, "checkpoints/2", "inconsistent with the checkpoint of size 6")


def test_checkpoint_named_for_another_size(tmp_path: Path) -> None:
    log = Log()
    notes = sign_at(log.entries, [1, 4, 6])
    forged = sign_at(encode(standard_events()[:3] + standard_events()[:1]), [4])[0][1]
    log.notes = [*notes, (5, forged)]
    report = verify_bundle(log.write(tmp_path / "b"))
    assert has(report, 1, "checkpoints/5", "for tree size 4, not 5")
    assert has(report, 2, "checkpoints/", "the log forked")


def test_fully_swapped_key_is_caught_by_the_key_event(tmp_path: Path) -> None:
    # Every checkpoint re-signed with another key, and that key shipped: self-consistent,
    # except that the log's own key.created event names the real key.
    log = Log(signer=OTHER_SIGNER)
    report = verify_bundle(log.write(tmp_path / "b"))
    assert has(report, 1, "public key", "was swapped")
    pinned = tmp_path / "station.vkey"
    pinned.write_text(SIGNER.verifier.key_string() + "\n")
    report = verify_bundle(tmp_path / "b", trusted_key=pinned)
    assert has(report, 1, "station.vkey", "is not the trusted key")
    assert has(report, 1, "checkpoints/6", "signature check failed")


def test_pem_that_differs_from_the_verifier_key(tmp_path: Path) -> None:
    bundle = Log().write(tmp_path / "b")
    pem = bundle / "stations/st-1/station.pub.pem"
    pem.write_text(OTHER_SIGNER.verifier.public_key_pem())
    report = verify_bundle(bundle)
    assert has(report, 1, "station.pub.pem", "not the same key")
    assert has(report, 1, "station.pub.pem", "the file changed")


def test_non_canonical_entry_is_found(tmp_path: Path) -> None:
    log = Log()
    doc = json.loads(log.entries[1])
    log.entries[1] = json.dumps(doc, sort_keys=True).encode()  # ", " and ": " separators
    report = verify_bundle(log.write(tmp_path / "b"))
    assert has(report, 1, "entry 1", "canonical form")


@pytest.mark.parametrize(
    ("catalog_change", "item", "text"),
    [
        ({"officer": "999999"}, "clip c1", "catalog officer is '999999'"),
        ({"sha256": SHA_B}, "clip c1", "catalog sha256 is"),
        ({"recorded_start": format_time(T0)}, "clip c1", "catalog recorded_start"),
        ({"state": "spooled"}, "clip c1", "entry 2 stored it"),
        ({"duration_seconds": 4.5}, "clip c1", "duration_seconds"),
        ({"important": 0}, "clip c1", "important"),
        ({"blake3": "f" * 64}, "clip c1", "catalog blake3"),
    ],
)
def test_catalog_rows_against_the_log(
    tmp_path: Path, catalog_change: dict[str, Any], item: str, text: str
) -> None:
    log = Log(clips=[clip_row(1, SHA_A, **catalog_change), clip_row(2, SHA_B)])
    report = verify_bundle(log.write(tmp_path / "b"))
    assert has(report, 4, item, text), findings(report)


def test_catalog_rows_missing_or_added(tmp_path: Path) -> None:
    log = Log(clips=[clip_row(1, SHA_A), clip_row(3, "c" * 64)])
    report = verify_bundle(log.write(tmp_path / "b"))
    assert has(report, 4, "clip c3", "no clip.ingested event")
    assert has(report, 4, "clip c2", "the catalog has no row")


def test_case_links_against_the_log(tmp_path: Path) -> None:
    log = Log(links=[{"case": "2026-002", "clip": "c2"}])
    report = verify_bundle(log.write(tmp_path / "b"))
    assert has(report, 4, "link case 2026-002 - clip c2", "no custody event links them")
    assert has(report, 4, "link case 2026-001 - clip c1", "missing from the catalog")


def test_unlink_and_deletion_events_fold(tmp_path: Path) -> None:
    events = [
        *standard_events(),
        CustodyEvent("case.clip_unlinked", "clip", "c1", "u", "r", SHA_A, {"case": "2026-001"}),
        CustodyEvent("clip.deleted", "clip", "c2", "u", "r", SHA_B, {}),
    ]
    log = Log(entries=encode(events), sizes=[8], links=[])
    log.clips = [clip_row(1, SHA_A), clip_row(2, SHA_B, state="deleted")]
    report = verify_bundle(log.write(tmp_path / "b"))
    assert report.intact, findings(report)


def test_bundle_without_catalog_skips_step_4(tmp_path: Path) -> None:
    report = verify_bundle(Log(clips=None, links=None).write(tmp_path / "b"))
    assert report.intact
    assert report.steps[4].status == "skipped"


def test_rows_and_events_from_before_blake3_still_verify(tmp_path: Path) -> None:
    def before(data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if k != "blake3"}

    events = [
        CustodyEvent(
            e.type, e.subject_kind, e.subject_id, e.actor, e.reason, e.sha256, before(e.data)
        )
        for e in standard_events()
    ]
    log = Log(
        entries=encode(events), clips=[before(clip_row(1, SHA_A)), before(clip_row(2, SHA_B))]
    )
    report = verify_bundle(log.write(tmp_path / "b"))
    assert report.intact, findings(report)


def test_row_without_the_blake3_its_event_has(tmp_path: Path) -> None:
    row = {k: v for k, v in clip_row(1, SHA_A).items() if k != "blake3"}
    report = verify_bundle(Log(clips=[row, clip_row(2, SHA_B)]).write(tmp_path / "b"))
    assert has(report, 4, "clip c1", "catalog blake3 is None"), findings(report)


def keeping_events() -> list[CustodyEvent]:
    def ev(type_: str, clip: str, sha: str, **data: Any) -> CustodyEvent:
        return CustodyEvent(type_, "clip", clip, "user:test", "test", sha, data)

    return [
        *standard_events(),
        ev("clip.legal_hold_set", "c1", SHA_A, case=None, store_lock="x"),  # entry 6
        ev("clip.legal_hold_set", "c2", SHA_B, case=None, store_lock="x"),
        ev("clip.legal_hold_released", "c2", SHA_B, case=None, store_lock="x"),  # entry 8
        ev("clip.retention_ground_set", "c2", SHA_B, ground="obstruction"),  # entry 9
    ]


@pytest.mark.parametrize(
    ("c1", "c2", "item", "text"),
    [
        ({}, {}, None, None),
        ({"legal_hold": False}, {}, "clip c1", "legal_hold is False, but in the log entry 6 set"),
        ({}, {"legal_hold": True}, "clip c2", "legal_hold is True, but in the log entry 8 released"),
        ({}, {"retention_grounds": []}, "clip c2", "grounds is [], but the log's clip.retention_gro"),
        ({"retention_grounds": ["obstruction"]}, {}, "clip c1", "give none"),
    ],
)  # fmt: skip
def test_legal_hold_and_grounds_against_the_log(
    tmp_path: Path, c1: dict[str, Any], c2: dict[str, Any], item: str | None, text: str | None
) -> None:
    rows = [
        clip_row(1, SHA_A, **{"legal_hold": True, "retention_grounds": [], **c1}),
        clip_row(2, SHA_B, **{"legal_hold": False, "retention_grounds": ["obstruction"], **c2}),
    ]
    log = Log(entries=encode(keeping_events()), sizes=[10], clips=rows)
    report = verify_bundle(log.write(tmp_path / "b"))
    if item is None:
        assert report.intact, findings(report)
    else:
        assert text is not None and has(report, 4, item, text), findings(report)
        assert len(report.findings) == 1, findings(report)


def test_rows_exported_without_hold_and_grounds_still_verify(tmp_path: Path) -> None:
    log = Log(entries=encode(keeping_events()), sizes=[10])
    report = verify_bundle(log.write(tmp_path / "b"))
    assert report.intact, findings(report)


def test_retention_against_the_log(tmp_path: Path) -> None:
    """The class and date the ingest recorded, until a clip.retention_changed gives others."""
    until = format_time(T0 + timedelta(days=183))
    events = standard_events()
    events[1] = CustodyEvent(
        "clip.ingested", "clip", "c1", "u", "r", SHA_A,
        {**ingest_data(1), "retention_class": "standard", "retention_until": until},
    )  # fmt: skip
    events.append(
        CustodyEvent(
            "clip.retention_changed",
            "clip",
            "c1",
            "u",
            "r",
            SHA_A,
            {
                "from": {"class": "standard", "until": until},
                "to": {"class": "permanent", "until": None},
                "grounds": ["case_evidence"],
                "cause": "linked",
                "store_lock": "x",
            },
        )
    )
    kept = {"legal_hold": False, "retention_grounds": []}
    rows = [clip_row(1, SHA_A, **kept, retention_class="permanent", retention_until=None)]
    # c2's ingest event records no retention (written before it did): its row's is not compared.
    rows.append(clip_row(2, SHA_B, **kept, retention_class="standard", retention_until=until))
    report = verify_bundle(Log(entries=encode(events), sizes=[7], clips=rows).write(tmp_path / "a"))
    assert report.intact, findings(report)
    rows[0]["retention_class"] = "standard"
    report = verify_bundle(Log(entries=encode(events), sizes=[7], clips=rows).write(tmp_path / "b"))
    assert findings(report) == [
        "4 clip c1: catalog retention_class is 'standard', the clip.retention_changed event "
        "(entry 6) says 'permanent'"
    ]
    report = verify_bundle(
        Log(entries=encode(events[:6]), sizes=[6], clips=rows).write(tmp_path / "c")
    )
    assert findings(report) == [
        f"4 clip c1: catalog retention_until is None, the ingest event (entry 1) says {until!r}"
    ]


def case_created(number: str) -> dict[str, Any]:
    return {
        "number": number,
        "title": "Seizure of unlicensed goods",
        "parties": ["李四"],
        "cause_of_action": "unlicensed street trading",
        "enforcement_type": "seizure",
        "full_recording_required": True,
        "unit": "330100000000",
        "handling_officers": ["100231"],
        "action_start": format_time(T0 - timedelta(hours=2)),
        "action_end": format_time(T0 - timedelta(hours=1)),
        "case_file_due": format_time(T0 + timedelta(days=30)),
        "state": "open",
        "created_at": format_time(T0),
        "closed_at": None,
        "clips": 0,
    }


def case_row(number: str, **changes: Any) -> dict[str, Any]:
    data = case_created(number)
    for derived in ("full_recording_required", "case_file_due", "clips"):
        data.pop(derived)
    return {**data, **changes}


def case_events() -> list[CustodyEvent]:
    closed_at = format_time(T0 + timedelta(days=1))
    return [
        *standard_events(),
        CustodyEvent("case.created", "case", "2026-001", "u", "r", None, case_created("2026-001")),
        CustodyEvent("case.created", "case", "2026-002", "u", "r", None, case_created("2026-002")),
        CustodyEvent("case.closed", "case", "2026-002", "u", "r", None, {"closed_at": closed_at}),
    ]


CLOSED = {"state": "closed", "closed_at": format_time(T0 + timedelta(days=1))}


@pytest.mark.parametrize(
    ("rows", "item", "text"),
    [
        ([case_row("2026-001"), case_row("2026-002", **CLOSED)], None, None),
        (
            [case_row("2026-001", action_end=format_time(T0 - timedelta(hours=2))), case_row("2026-002", **CLOSED)],
            "case 2026-001",
            "catalog action_end is '2026-05-01T06:00:00.000000Z', the case.created event (entry 6)",
        ),
        (
            [case_row("2026-001", enforcement_type="hearing"), case_row("2026-002", **CLOSED)],
            "case 2026-001",
            "catalog enforcement_type is 'hearing'",
        ),
        (
            [case_row("2026-001", handling_officers=[]), case_row("2026-002", **CLOSED)],
            "case 2026-001",
            "catalog handling_officers is []",
        ),
        (
            [case_row("2026-001"), case_row("2026-002", closed_at=CLOSED["closed_at"])],
            "case 2026-002",
            "catalog state is 'open', the case.closed event (entry 8) says 'closed'",
        ),
        ([case_row("2026-002", **CLOSED)], "case 2026-001", "the catalog has no row for it"),
        (
            [case_row("2026-001"), case_row("2026-002", **CLOSED), case_row("2026-003")],
            "case 2026-003",
            "no case.created event in the log",
        ),
    ],
)  # fmt: skip
def test_case_rows_against_the_log(
    tmp_path: Path, rows: list[dict[str, Any]], item: str | None, text: str | None
) -> None:
    log = Log(entries=encode(case_events()), sizes=[9], cases=rows)
    report = verify_bundle(log.write(tmp_path / "b"))
    if item is None:
        assert report.intact, findings(report)
    else:
        assert text is not None and has(report, 4, item, text), findings(report)
        assert len(report.findings) == 1, findings(report)


def test_bundle_without_cases_still_verifies(tmp_path: Path) -> None:
    report = verify_bundle(Log(entries=encode(case_events()), sizes=[9]).write(tmp_path / "b"))
    assert report.intact, findings(report)


def test_catalog_rows_with_other_fields_are_malformed(tmp_path: Path) -> None:
    log = Log(clips=[{"id": "c1"}])
    with pytest.raises(InputError, match="does not have the fields"):
        verify_bundle(log.write(tmp_path / "b"))


def test_findings_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_report, "MAX_FINDINGS", 2)
    log = Log(clips=[clip_row(1, SHA_A, officer="x", unit="y", recorder="z"), clip_row(2, SHA_B)])
    report = verify_bundle(log.write(tmp_path / "b"))
    assert len(report.findings) == 2 and report.findings_dropped == 1
    assert report.exit_code == ExitCode.INTEGRITY and not report.intact


# ---------------------------------------------------------------- proofs


def make_proof(entries: list[bytes] | None = None, clip: str = "c1") -> dict[str, Any]:
    entries = entries or encode(standard_events())
    note = sign_at(entries, [len(entries)])[0][1]
    return proof_document(
        station_id=SID,
        clip_id=clip,
        entries=entries,
        note=note,
        verifier=SIGNER.verifier,
        made_at=T0,
        made_by="user:test",
    )


def test_proof_round_trip() -> None:
    doc = json.loads(json.dumps(make_proof()))
    result = verify_proof(doc)
    assert result["valid"] and result["clip"] == "c1" and result["sha256"] == SHA_A
    assert [e["type"] for e in result["events"]] == [
        "clip.ingested",
        "clip.stored",
        "case.clip_linked",
    ]
    assert result["checkpoint"]["size"] == 6


def test_proof_with_a_pinned_key() -> None:
    assert verify_proof(make_proof(), trusted_key=SIGNER.verifier)["valid"]
    with pytest.raises(IntegrityError, match="not the trusted key"):
        verify_proof(make_proof(), trusted_key=OTHER_SIGNER.verifier)


def test_proof_for_a_clip_without_ingest_event() -> None:
    with pytest.raises(IntegrityError, match=r"no clip\.ingested event"):
        make_proof(clip="c404")


def test_proof_refuses_entries_that_are_not_the_signed_tree() -> None:
    entries = encode(standard_events())
    note = sign_at(entries, [6])[0][1]
    entries[3] = entries[3].replace(b"100231", b"100232")
    with pytest.raises(IntegrityError, match="do not match"):
        proof_document(
            station_id=SID,
            clip_id="c1",
            entries=entries,
            note=note,
            verifier=SIGNER.verifier,
            made_at=T0,
            made_by="t",
        )


def tamper(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    target: Any = doc
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("events.0.entry", None, "changed"),
        ("events.0.leaf_hash", "0" * 64, "does not hash to its leaf hash"),
        ("events.0.inclusion_proof.0", "0" * 64, "event 1: inclusion proof"),
        ("events.0.seq", 2, "event 2"),
        ("tree_size", 5, "differ from the signed checkpoint"),
        ("sha256", SHA_B, "sha256 is not"),
        ("checkpoint", None, "signature"),
        ("public_key_pem", OTHER_SIGNER.verifier.public_key_pem(), "PEM public key is not"),
    ],
)
def test_tampered_proofs_fail(path: str, value: Any, message: str) -> None:
    doc = make_proof()
    if path == "events.0.entry":
        value = doc["events"][0]["entry"].replace("100231", "100232")
    if path == "checkpoint":
        value = doc["checkpoint"].replace("\n6\n", "\n5\n")
    with pytest.raises(IntegrityError, match=message):
        verify_proof(tamper(doc, path, value))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("format", "x"),
        ("version", 2),
        ("events", []),
        ("events.0.seq", -1),
        ("events.0.seq", 99),
        ("events.0.leaf_hash", "XYZ"),
        ("events.0.inclusion_proof", "nope"),
        ("root_hash", 5),
        ("tree_size", True),
        ("sha256", "A" * 64),
        ("clip", 7),
        ("verifier_key", "garbage"),
        ("public_key_pem", "not pem"),
    ],
)
def test_malformed_proofs_are_input_errors(path: str, value: Any) -> None:
    with pytest.raises(InputError):
        verify_proof(tamper(make_proof(), path, value))


def test_proof_with_extra_fields_is_malformed() -> None:
    doc = make_proof()
    doc["extra"] = 1
    with pytest.raises(InputError, match="fields differ"):
        verify_proof(doc)
    with pytest.raises(InputError, match="not a JSON object"):
        verify_proof([doc])


def test_proof_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "proof.json"
    path.write_bytes(b"\x00\xff")
    with pytest.raises(InputError, match="not JSON"):
        verify_proof_file(path)
    path.write_text('{"a": NaN}')
    with pytest.raises(InputError, match="not JSON"):
        verify_proof_file(path)
    with pytest.raises(InputError, match="cannot read"):
        verify_proof_file(tmp_path / "missing.json")


# ---------------------------------------------------------------- helpers


def test_origin_is_the_logs() -> None:
    from evidence_agent.catalog.custody_log import log_origin as signing_origin
    from evidence_agent.custody.checkpoint import log_origin

    assert log_origin("vm") == signing_origin("vm")
