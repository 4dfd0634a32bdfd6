"""Tests of the verification steps on plain values: each fast path against its reference, one log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from evidence_agent.custody.audit_report import AuditReport
from evidence_agent.custody.catalog_rows import (
    CatalogSnapshot,
    clip_row_differences,
    clip_row_differences_reference,
    step4_catalog_rows_against_log,
)
from evidence_agent.custody.checkpoint import Checkpoint, sign_checkpoint
from evidence_agent.custody.entry_pass import check_positions, check_positions_reference
from evidence_agent.custody.entry_schema import (
    is_canonical,
    is_canonical_reference,
    read_seq,
    seq_after,
    seq_from_json,
)
from evidence_agent.custody.events import CustodyEvent, encode_entry, format_time
from evidence_agent.custody.log_facts import LogFacts
from evidence_agent.custody.merkle import MerkleAccumulator, consistency_proof, leaf_hash
from evidence_agent.custody.proof_plan import ProofPlan
from evidence_agent.custody.signed_note import Ed25519Signer
from evidence_agent.custody.verification import CheckpointInput, LogInput, verify_log
from evidence_agent.custody.vocabulary import INGEST_FIELDS
from evidence_agent.errors import InputError

SID = "st-1"
SIGNER = Ed25519Signer("evidence-agent/st-1", bytes(range(32)))
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def ingest_data(n: int) -> dict[str, Any]:
    return {
        "size": 1000 + n,
        "blake3": f"{n:064x}",
        "sm3": None,
        "media_kind": "video",
        "source_path": f"DCIM/{n}.MP4",
        "source_path_hex": f"DCIM/{n}.MP4".encode().hex(),
        "recorded_start": format_time(T0 - timedelta(hours=n)),
        "recorded_end": format_time(T0 - timedelta(hours=n, seconds=-4)),
        "time_source": "filename",
        "duration_seconds": 4,
        "ingested_at": format_time(T0),
        "recorder": "A123456",
        "officer": "100231",
        "unit": "330100000000",
        "important": n % 2 == 0,
        "flags": ["tagged"] if n % 3 == 0 else [],
        "dock_session": "d1",
    }


def events(clips: int = 6) -> list[CustodyEvent]:
    def ev(type_: str, clip: int, sha: str | None = None, **data: Any) -> CustodyEvent:
        return CustodyEvent(type_, "clip", f"c{clip}", "user:test", "test", sha, data)

    out = [
        CustodyEvent(
            "key.created", "station", SID, "user:test", "first start", None,
            {"verifier_key": SIGNER.verifier.key_string()},
        )
    ]  # fmt: skip
    for n in range(1, clips + 1):
        sha = f"{n:02x}" * 32
        out.append(ev("clip.ingested", n, sha, **ingest_data(n)))
        if n % 2:
            out.append(ev("clip.stored", n, sha, stored_at=format_time(T0)))
        if n % 3 == 0:
            out.append(ev("case.clip_linked", n, None, case="2026-001"))
    out.append(
        CustodyEvent("note", "station", SID, "u", "r", None, {"ratio": 0.25, "n": 2**52 + 1})
    )
    out.append(CustodyEvent("note", "station", SID, "u", "emoji \U0001f600 é", None, {}))
    return out


def encode(evs: list[CustodyEvent]) -> list[bytes]:
    return [
        encode_entry(e, station_id=SID, seq=i, time=T0 + timedelta(seconds=i))
        for i, e in enumerate(evs)
    ]


ENTRIES = encode(events())


def respelled(entry: bytes) -> bytes:
    return json.dumps(json.loads(entry)).encode()  # ", " and ": " separators, keys unsorted


def seq_first(entry: bytes) -> bytes:
    doc = json.loads(entry)
    return json.dumps({"seq": doc.pop("seq"), **doc}, separators=(",", ":")).encode()


def chunk_variants() -> Iterator[tuple[str, list[bytes]]]:
    e = ENTRIES
    yield "intact", list(e)
    yield "deleted", e[:3] + e[4:]
    yield "swapped", [*e[:3], e[4], e[3], *e[5:]]
    yield "inserted", [*e[:5], e[2], *e[5:]]
    yield "truncated at the front", e[2:]
    yield "respelled", [*e[:4], respelled(e[4]), *e[5:]]
    yield "seq first", [*e[:4], seq_first(e[4]), *e[5:]]
    yield "not JSON", [*e[:4], b"\xff not json", *e[5:]]
    yield "no seq", [*e[:4], e[4].replace(b',"seq":4,', b","), *e[5:]]
    yield "seq not a number", [*e[:4], e[4].replace(b',"seq":4,', b',"seq":"4",'), *e[5:]]


# ---------------------------------------------------------------- step 1: entries


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (b'{"a":1,"b":[true,null,"x"]}', True),
        (b'{"b":1,"a":2}', False),
        (b'{"a":4.5}', True),
        (b'{"a":4.0}', False),
        (b'{"a":1e+16}', False),
        (b'{"a":1e+21}', True),
        (b'{"a":1e-7}', True),
        (b'{"a":-0.0}', False),
        (b'{"a":9007199254740993}', False),
        (b'{"a":"\\u00e9"}', False),
        ('{"a":"\u00e9"}'.encode(), True),
        (b'{"a":"\\n"}', True),
    ],
)
def test_canonical_form_check(text: bytes, canonical: bool) -> None:
    assert is_canonical(text, json.loads(text)) is canonical
    assert is_canonical_reference(text, json.loads(text)) is canonical


def test_canonical_fast_path_agrees_with_reference() -> None:
    corpus = [*ENTRIES, *(respelled(e) for e in ENTRIES), *(seq_first(e) for e in ENTRIES)]
    corpus += [
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        for value in (
            {"a": 1.5, "b": 10**17, "c": -(2**53) - 1, "d": 1e300, "e": 5e-324},
            {"\U0001f600": 1, "\uffff": 2, "z": "\U0001f600"},
            {"a": [1, 2.0, -0.5, {"b": "é\u2028"}], "n": None, "t": True},
        )
    ]
    for entry in corpus:
        doc = json.loads(entry)
        assert is_canonical(entry, doc) is is_canonical_reference(entry, doc), entry


@pytest.mark.parametrize(("first", "offset"), [(0, 0), (20_000, -20_000), (0, 1), (3, -1)])
def test_position_fast_path_agrees_with_reference(first: int, offset: int) -> None:
    for name, chunk in chunk_variants():
        fast = check_positions(chunk, first, offset)
        assert fast == check_positions_reference(chunk, first, offset), name
    assert check_positions(list(ENTRIES), 0, 0) == (0, set(), [])


def test_positions_name_each_place_once() -> None:
    variants = dict(chunk_variants())
    assert check_positions(variants["deleted"], 0, 0)[2] == [
        ("entry 3", "holds event number 4: entries were removed, inserted or reordered here")
    ]
    offset, anomalous, problems = check_positions(variants["swapped"], 0, 0)
    assert (offset, anomalous) == (0, {3, 4, 5})  # 5 is where the numbers are back in step
    assert [item for item, _ in problems] == ["entry 3", "entry 4"]
    assert check_positions(variants["no seq"], 0, 0)[2] == [
        ("entry 4", "has no event number (seq): not a custody event")
    ]


def test_seq_is_read_as_json_reads_it() -> None:
    for name, chunk in chunk_variants():
        for entry in chunk:
            assert read_seq(entry) == seq_from_json(entry), (name, entry)
    entry = ENTRIES[1]
    assert seq_after(entry, entry.rfind(b',"seq":')) == 1
    assert seq_after(b'{"seq":x}', 0) is None


# ---------------------------------------------------------------- step 4: catalog rows


def facts_of(entries: list[bytes]) -> LogFacts:
    report = AuditReport("bundle", "memory", T0)
    log = LogInput(SID, SIGNER.verifier, [], [entries], collect_facts=True)
    return verify_log(report, log)[1]


def catalog_row(facts: LogFacts, clip_id: str) -> dict[str, Any]:
    clip = facts.clips[clip_id]
    row = {"id": clip_id, "sha256": clip.sha256, "station": SID}
    row["state"] = "stored" if clip.stored is not None else "spooled"
    row["stored_at"] = clip.stored.get("stored_at") if clip.stored is not None else None
    row.update({name: clip.ingest.get(name) for name in INGEST_FIELDS})
    return row


def row_variants(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield row
    yield {**row, "duration_seconds": 4.0}  # the catalog's float of the event's 4
    for name in row:
        if name == "id":
            continue
        for value in (None, 0, 1, 4.0, True, False, "x", [], row[name]):
            yield {**row, name: value}
        yield {k: v for k, v in row.items() if k != name}


def test_row_fast_path_agrees_with_reference() -> None:
    facts = facts_of(ENTRIES)
    for clip_id, clip in facts.clips.items():
        for row in row_variants(catalog_row(facts, clip_id)):
            fast = list(clip_row_differences(facts, clip, row))
            assert fast == list(clip_row_differences_reference(facts, clip, row)), row


def test_step_4_on_plain_rows() -> None:
    facts = facts_of(ENTRIES)
    rows = [catalog_row(facts, c) for c in facts.clips]
    rows[0]["officer"] = "999999"
    links = [{"case": "2026-001", "clip": "c3"}, {"case": "2026-002", "clip": "c1"}]
    report = AuditReport("bundle", "memory", T0)
    step4_catalog_rows_against_log(report, facts, CatalogSnapshot(rows[1:] + rows[:1], links))
    assert [(f.step, f.item, f.message.split(",")[0]) for f in report.findings] == [
        (4, "clip c1", "catalog officer is '999999'"),
        (4, "link case 2026-002 - clip c1", "in the catalog"),
        (4, "link case 2026-001 - clip c6", "linked in the log (entry 11) but missing from the catalog"),
    ]  # fmt: skip


# ---------------------------------------------------------------- steps 1, 2 and 5 of one log


def note_at(entries: list[bytes], size: int) -> str:
    acc = MerkleAccumulator()
    acc.extend_entries(entries[:size])
    return sign_checkpoint(Checkpoint("evidence-agent/st-1", size, acc.root()), SIGNER)


def test_one_log_verified_from_plain_values() -> None:
    checkpoints = [CheckpointInput(f"cp {s}", s, note_at(ENTRIES, s)) for s in (2, 9, 14)]
    chunks = [ENTRIES[:5], ENTRIES[5:11], ENTRIES[11:]]
    report = AuditReport("bundle", "memory", T0)
    log = LogInput(SID, SIGNER.verifier, checkpoints, chunks, True, note_at(ENTRIES, 7), "kept")
    summary, facts = verify_log(report, log)
    assert report.intact, report.findings
    assert (summary.entries, summary.latest_size, summary.unsigned_entries) == (14, 14, 0)
    assert summary.trusted_size == 7 and summary.consistency_proof is not None
    assert sorted(facts.clips) == [f"c{n}" for n in range(1, 7)]

    swapped = [*ENTRIES[:3], ENTRIES[4], ENTRIES[3], *ENTRIES[5:]]
    report = AuditReport("bundle", "memory", T0)
    log = LogInput(SID, SIGNER.verifier, checkpoints, [swapped], True, note_at(ENTRIES, 7), "kept")
    verify_log(report, log)
    assert [(f.step, f.item) for f in report.findings] == [
        (1, "entry 3"),
        (1, "entry 4"),
        (1, "cp 9"),
        (1, "cp 14"),
        (5, "kept"),
        (5, "latest checkpoint"),
    ]


# ---------------------------------------------------------------- step 5's consistency proof


def gather(plan: ProofPlan, entries: list[bytes]) -> list[bytes]:
    """What the audit's pass does for a plan: peaks at its stops, leaf hashes it asks for."""
    acc = MerkleAccumulator()
    if 0 in plan.stops:
        plan.peaks[0] = ()
    for i, entry in enumerate(entries):
        acc.extend_entries([entry])
        if acc.size in plan.stops:
            plan.peaks[acc.size] = acc.peaks
        if i in plan.leaves_wanted:
            plan.leaves[i] = leaf_hash(entry)
    return plan.proof()


def test_proof_plan_matches_the_rfc_algorithm() -> None:
    entries = [b"entry %d" % i for i in range(70)]
    leaves = [leaf_hash(e) for e in entries]
    for n in range(1, 70):
        for m in range(0, n + 1):
            expected = consistency_proof(leaves[:n], m)
            assert gather(ProofPlan(m, n), entries[:n]) == expected, (m, n)


def test_proof_plan_on_a_large_tree() -> None:
    entries = [b"%d" % i for i in range(5000)]
    leaves = [leaf_hash(e) for e in entries]
    for m, n in ((1, 5000), (4096, 5000), (2500, 4999), (1023, 1024), (3000, 4096)):
        assert gather(ProofPlan(m, n), entries[:n]) == consistency_proof(leaves[:n], m)
    with pytest.raises(InputError):
        ProofPlan(5, 4)
