"""The recorder registry service against a real catalog: enrolment, assignments, watches, custody."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from evidence_agent.catalog.models import CustodyEntry, DockSession, Recorder
from evidence_agent.catalog.queries import station_status
from evidence_agent.cli.display import status_text
from evidence_agent.config import build_settings
from evidence_agent.domain.deadline import DeadlineRule
from evidence_agent.errors import InputError, NotFoundError
from evidence_agent.services import recorders
from evidence_agent.services.recorders import assigned_officer
from evidence_agent.services.station import Station, open_station

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


@dataclass
class MovableClock:
    at: datetime

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(T0)


@pytest.fixture
def station(tmp_path: Path, clock: MovableClock) -> Iterator[Station]:
    settings = build_settings(
        {"station": {"id": "reg-station"}}, {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")}
    )
    st = open_station(settings, actor="user:sergeant", clock=clock)
    yield st
    st.close()


def events(station: Station, prefix: str = "recorder.") -> list[dict[str, object]]:
    with station.reading() as session:
        rows = session.exec(
            select(CustodyEntry)
            .where(col(CustodyEntry.event_type).startswith(prefix))
            .order_by(col(CustodyEntry.seq))
        )
        return [json.loads(r.entry) for r in rows]


def test_enrol_records_who_when_why_and_refuses_a_second_claim_on_a_usb_serial(
    station: Station,
) -> None:
    view = recorders.enroll(
        station,
        "A123456",
        usb_serial="BWC0001",
        usb_vendor_id="2A4B",
        usb_model_id="0c01",
        vendor="Acme",
        unit="330100",
        reason="new recorder for unit 3",
    )
    assert (view.serial, view.enrolled, view.usb_vendor_id, view.unit) == (
        "A123456",
        True,
        "2a4b",
        "330100",
    )
    (event,) = events(station)
    assert event["type"] == "recorder.enrolled"
    assert event["actor"] == "user:sergeant"
    assert event["reason"] == "new recorder for unit 3"
    assert event["time"] == "2026-11-20T00:00:00.000000Z"
    assert event["data"]["usb_serial"] == "BWC0001"  # type: ignore[index]

    with pytest.raises(InputError, match="already enrolled for recorder A123456"):
        recorders.enroll(station, "B765432", usb_serial="bwc0001", reason="spare")
    with pytest.raises(InputError, match="already enrolled"):
        recorders.enroll(station, "A123456", usb_serial="BWC0002", reason="again")
    with pytest.raises(InputError, match="4 hex digits") as info:
        recorders.enroll(station, "B765432", usb_serial="X", usb_vendor_id="acme", reason=" ")
    assert "--reason must say why" in info.value.message
    assert len(events(station)) == 1
    with station.reading() as session:
        assert recorders.enrolled_devices(session) == [
            recorders.EnrolledDevice("A123456", "BWC0001", "2a4b", "0c01")
        ]


def test_a_recorder_seen_on_ingest_can_be_enrolled(station: Station) -> None:
    with station.transaction() as session:
        session.add(Recorder(serial="A777777"))
    view = recorders.enroll(station, "A777777", usb_serial="S7", reason="found in the drawer")
    assert view.enrolled and view.usb_serial == "S7"


def test_assignment_history_attributes_footage_by_recording_time(
    station: Station, clock: MovableClock
) -> None:
    recorders.enroll(station, "A123456", usb_serial="BWC0001", reason="new")
    recorders.assign(station, "A123456", "100231", reason="day shift", officer_name="Zhang Wei")
    clock.at = T0 + timedelta(hours=8)
    view = recorders.assign(station, "A123456", "100232", reason="night shift")
    assert view.assigned_to is not None and view.assigned_to.officer == "100232"
    clock.at = T0 + timedelta(hours=16)
    with pytest.raises(InputError, match="not after the current one began"):
        recorders.assign(station, "A123456", "100233", reason="x", at=T0 + timedelta(hours=7))
    recorders.unassign(station, "A123456", reason="shift over")
    with pytest.raises(InputError, match="not assigned"):
        recorders.unassign(station, "A123456", reason="again")
    with pytest.raises(InputError, match="before the last one ended"):
        recorders.assign(station, "A123456", "100233", reason="x", at=T0 + timedelta(hours=10))
    with pytest.raises(NotFoundError):
        recorders.assign(station, "Z000000", "100231", reason="x")

    with station.reading() as session:
        shown = recorders.show_recorder(session, "A123456", clock.at, undocked_warn_hours=20)
        recorder_id = session.exec(select(Recorder.id).where(Recorder.serial == "A123456")).one()
        at_two = assigned_officer(session, recorder_id, T0 + timedelta(hours=2))
        at_nine = assigned_officer(session, recorder_id, T0 + timedelta(hours=9))
        at_twenty = assigned_officer(session, recorder_id, T0 + timedelta(hours=20))
    assert [(a.officer, a.start, a.end, a.reason) for a in shown.history] == [
        ("100231", T0, T0 + timedelta(hours=8), "day shift"),
        ("100232", T0 + timedelta(hours=8), T0 + timedelta(hours=16), "night shift"),
    ]
    assert shown.assigned_to is None
    assert (at_two and at_two.badge, at_nine and at_nine.badge, at_twenty) == (
        "100231",
        "100232",
        None,
    )
    assert [(e["type"], e["reason"]) for e in events(station)] == [
        ("recorder.enrolled", "new"),
        ("recorder.assigned", "day shift"),
        ("recorder.assigned", "night shift"),
        ("recorder.unassigned", "shift over"),
    ]
    assert events(station)[2]["data"]["previous_officer"] == "100231"  # type: ignore[index]


def test_undocked_watch_and_clock_skew_in_status(station: Station, clock: MovableClock) -> None:
    recorders.enroll(station, "A123456", usb_serial="S1", reason="new")
    recorders.enroll(station, "B765432", usb_serial="S2", reason="new")
    recorders.assign(station, "A123456", "100231", reason="shift")
    recorders.assign(station, "B765432", "100232", reason="shift")
    with station.transaction() as session:
        b = session.exec(select(Recorder).where(Recorder.serial == "B765432")).one()
        b.last_docked_at = T0 + timedelta(hours=15)
        session.add(b)
        for at, skew in ((T0, 300.0), (T0 + timedelta(hours=15), 5.0)):
            session.add(_dock(b.id, at, skew))
        a = session.exec(select(Recorder).where(Recorder.serial == "A123456")).one()
        session.add(_dock(a.id, T0 + timedelta(hours=1), -120.0))
    clock.at = T0 + timedelta(hours=21)

    with station.reading() as session:
        view = station_status(
            session, clock.at, DeadlineRule(), clock_skew_warn_seconds=60, undocked_warn_hours=20
        )
        listed = recorders.list_recorders(session, clock.at, undocked_warn_hours=20)
    data = view.to_json()
    assert [(u["recorder"], u["hours_undocked"]) for u in data["undocked_recorders"]] == [
        ("A123456", 21.0)
    ]
    assert [(s["recorder"], s["clock_skew_seconds"]) for s in data["clock_skew"]] == [
        ("A123456", -120.0)
    ]
    assert {v.serial: v.undocked_hours for v in listed} == {"A123456": 21.0, "B765432": None}
    text = status_text({**data, "station": "s", "store": "local"}, station.settings)
    assert "recorder A123456 clock was off by -120 s" in text
    assert "recorder A123456 (officer 100231) not docked for 21.0 hours" in text


def _dock(recorder_id: int | None, at: datetime, skew: float) -> DockSession:
    return DockSession(
        id=str(uuid.uuid4()),
        station_id="reg-station",
        recorder_id=recorder_id,
        source="usb",
        started_at=at,
        finished_at=at,
        state="finished",
        clock_skew_seconds=skew,
    )
