"""The custody event vocabulary: the enum, its table in docs/audit.md, and the events it builds."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.custody import canonical, events
from evidence_agent.custody.events import encode_entries, encode_entry
from evidence_agent.custody.vocabulary import EventType, Subject

AUDIT_DOC = Path(__file__).resolve().parents[3] / "docs" / "audit.md"
SECTION = "## Custody events"


def documented_events() -> dict[str, tuple[tuple[str, ...], frozenset[str], frozenset[str]]]:
    """The rows of the table in docs/audit.md: type -> (subject kinds, required, optional)."""
    text = AUDIT_DOC.read_text(encoding="utf-8")
    assert text.count(SECTION) == 1, f"docs/audit.md needs one '{SECTION}' section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[tuple[str, ...], frozenset[str], frozenset[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue  # prose, the header or its rule
        name, subjects, data, _written = cells
        required, _, optional = data.partition("; optional:")
        assert name not in rows, f"{name} is listed twice"
        rows[name.strip("`")] = (
            tuple(s.strip() for s in subjects.split(",")),
            frozenset(re.findall(r"`([^`]+)`", required)),
            frozenset(re.findall(r"`([^`]+)`", optional)),
        )
    return rows


def test_every_event_type_is_documented_with_its_subjects_and_fields() -> None:
    documented = documented_events()
    declared = {t.value: t for t in EventType}
    assert sorted(set(declared) - set(documented)) == [], "missing from docs/audit.md"
    assert sorted(set(documented) - set(declared)) == [], "documented but not in EventType"
    for name, (subjects, required, optional) in documented.items():
        member = declared[name]
        assert subjects == tuple(s.value for s in member.subjects), name
        assert required == member.required, name
        assert optional == member.optional, name


def test_the_doc_table_is_read() -> None:
    # the parser above must not pass by reading nothing
    subjects, required, optional = documented_events()["dock.finished"]
    assert subjects == ("recorder", "dock")
    assert required == {"dock_session", "state"}
    assert "recovered" in optional


def test_each_value_names_one_type() -> None:
    # a repeated value would make a second name an alias of the first
    assert len(EventType.__members__) == len(EventType)
    assert all(re.fullmatch(r"[a-z_]+\.[a-z_]+", t.value) for t in EventType)


def _linked(**data: Any) -> events.CustodyEvent:
    return EventType.CASE_CLIP_LINKED.event(
        "1da9e1cc", actor="user:alice", reason="court request", data=data
    )


def test_an_event_carries_plain_strings() -> None:
    event = _linked(case="2026-117")
    assert (event.type, event.subject_kind) == ("case.clip_linked", "clip")
    assert type(event.type) is str
    assert type(event.subject_kind) is str


def test_data_keys_must_be_those_declared() -> None:
    with pytest.raises(ValueError, match=r"lacks \['case'\]"):
        _linked()
    with pytest.raises(ValueError, match=r"undeclared \['clip'\]"):
        _linked(case="2026-117", clip="1da9e1cc")
    finished = EventType.DOCK_FINISHED.event(
        "A123456",
        actor="service:evidence-agent",
        reason="dock finished",
        data={"dock_session": "d05a", "state": "finished", "clips_new": 1},
    )
    assert finished.data["clips_new"] == 1  # an optional field may be there or not


def test_the_subject_kind_must_be_one_the_type_names() -> None:
    refused = EventType.ACCESS_REFUSED.event(
        "2026-117",
        subject_kind=Subject.CASE,
        actor="user:bob",
        reason="",
        data={"action": "case_read", "cause": "refused: no role", "roles": []},
    )
    assert refused.subject_kind == "case"
    with pytest.raises(ValueError, match="not about a recorder"):
        EventType.CASE_CLIP_LINKED.event(
            "A123456",
            subject_kind=Subject.RECORDER,
            actor="user:alice",
            reason="",
            data={"case": "2026-117"},
        )


def test_built_events_take_the_fast_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    event = EventType.DOCK_STARTED.event(
        "A123456",
        actor="service:evidence-agent@vm",
        reason="recorder docked (usb)",
        data={
            "dock_session": "d05a",
            "volume": "/run/x",
            "identity": None,
            "clock_skew_seconds": 2,
        },
    )
    when = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    expected = encode_entry(event, station_id="vm", seq=7, time=when)

    def slow(*args: Any) -> Any:
        raise AssertionError("the reference encoder was used")

    monkeypatch.setattr(events, "_document", slow)
    monkeypatch.setattr(canonical, "_reference_canonical_json", slow)
    assert encode_entries([event], station_id="vm", first_seq=7, time=when) == [expected]
