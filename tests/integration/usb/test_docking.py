"""The docking daemon with USB recorders plugged in and out at run time (umockdev + pyudev).

The mount step is a port: DirectoryWritableMounter maps each device node to a demo recorder
volume made with ffmpeg. Run with: umockdev-wrapper .venv/bin/python -m pytest -m usb tests/integration/usb
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from evidence_agent.adapters.udev_source import UdevDockSource
from evidence_agent.catalog.models import Clip, ClipSource, CustodyEntry, DockSession
from evidence_agent.catalog.queries import station_status
from evidence_agent.cli.display import status_text
from evidence_agent.config import build_settings
from evidence_agent.domain.deadline import DeadlineRule
from evidence_agent.services import recorders
from evidence_agent.services.clearing import DirectoryWritableMounter
from evidence_agent.services.daemon import Daemon
from evidence_agent.services.demo_recorder import DemoVolume, make_demo_recorder
from evidence_agent.services.station import Station, open_station, service_actor
from tests.docking_gates import GatedSpool, gate_spool
from tests.support import service_missing
from tests.umockdev import Testbed, UsbStorage, add_usb_storage, unplug_usb_storage

pytestmark = pytest.mark.usb

START = datetime(2026, 11, 20, 1, 0, 0, tzinfo=UTC)
TIMEOUT = 30.0
DEVNODE = "/dev/sdb1"


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> DemoVolume:
    if shutil.which("ffmpeg") is None:
        service_missing("ffmpeg is not installed")
    return make_demo_recorder(tmp_path_factory.mktemp("template") / "vol", start=START)


@pytest.fixture
def volume(demo_template: DemoVolume, tmp_path: Path) -> Path:
    target = tmp_path / "volume"
    shutil.copytree(demo_template.root, target)
    return target


@dataclass
class Harness:
    station: Station
    daemon: Daemon
    mounter: DirectoryWritableMounter
    testbed: Testbed

    def plug(self, serial: str = "BWC0001", *, name: str = "1-1", disk: str = "sdb") -> UsbStorage:
        return add_usb_storage(
            self.testbed,
            name=name,
            vendor_id="2a4b",
            model_id="0c01",
            vendor="Acme",
            model="BodyCam_X1",
            serial=serial,
            fs_type="exfat",
            disk_name=disk,
        )

    def sessions(self, state: str | None = None) -> list[DockSession]:
        with self.station.reading() as session:
            query = select(DockSession).order_by(col(DockSession.started_at))
            if state is not None:
                query = query.where(DockSession.state == state)
            return list(session.exec(query))

    def clips(self) -> list[Clip]:
        with self.station.reading() as session:
            return list(session.exec(select(Clip)))

    def events(self, event_type: str) -> list[dict[str, Any]]:
        with self.station.reading() as session:
            rows = session.exec(
                select(CustodyEntry)
                .where(CustodyEntry.event_type == event_type)
                .order_by(col(CustodyEntry.seq))
            )
            return [json.loads(r.entry) for r in rows]


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@contextmanager
def make_harness(
    testbed: Testbed, tmp_path: Path, hold_at: int | None = None, **dock: Any
) -> Iterator[Harness]:
    settings = build_settings(
        {
            "station": {"id": "usb-station"},
            "dock": {
                "sources": ["usb"],
                "settle_seconds": 0,
                "metrics_port": 0,
                "usb_allowlist": [{"vendor_id": "2a4b", "model_id": "0c01"}],
                **dock,
            },
        },
        {"EVIDENCE_AGENT_DATA_DIR": str(tmp_path / "data")},
    )
    station = open_station(settings, actor=service_actor("usb-station"))
    if hold_at is not None:
        gate_spool(station, hold_at)
    mounter = DirectoryWritableMounter()
    daemon = Daemon(station, [UdevDockSource()], mounter=mounter)
    daemon.start()
    thread = threading.Thread(target=daemon.serve, name="daemon-serve")
    thread.start()
    try:
        yield Harness(station, daemon, mounter, testbed)
    finally:
        daemon.stop()
        thread.join(TIMEOUT)
        station.close()
        assert not thread.is_alive()


@pytest.fixture
def harness(testbed: Testbed, tmp_path: Path) -> Iterator[Harness]:
    with make_harness(testbed, tmp_path) as h:
        yield h


def media_count(demo: DemoVolume) -> int:
    return len(demo.media)


def test_recorder_plugged_in_at_run_time_is_mounted_ingested_stored_and_unmounted(
    harness: Harness, volume: Path, demo_template: DemoVolume
) -> None:
    recorders.enroll(harness.station, "A123456", usb_serial="BWC0001", reason="issued to unit 3")
    harness.mounter.add(DEVNODE, volume)

    harness.plug()

    done = wait_for("a finished dock", lambda: harness.sessions("finished"))
    wait_for(
        "every clip stored",
        lambda: (
            len(harness.clips()) == media_count(demo_template)
            and all(c.state == "stored" for c in harness.clips())
        ),
    )
    (dock,) = done
    assert dock.source == "usb"
    assert dock.clips_new == media_count(demo_template)
    assert (
        dock.bytes_done
        == dock.bytes_total
        == sum(f.path.stat().st_size for f in demo_template.media)
    )
    assert json.loads(dock.device_info)["ID_SERIAL_SHORT"] == "BWC0001"
    assert harness.mounter.calls[0] == ("mount", DEVNODE)
    wait_for("the unmount", lambda: ("unmount", str(volume)) in harness.mounter.calls)
    assert harness.mounter.mounted == {}
    started = harness.events("dock.started")
    assert started[0]["subject"]["id"] == "A123456"


def test_unplugged_mid_copy_stops_cleanly_and_replug_resumes_without_duplicates(
    testbed: Testbed, tmp_path: Path, volume: Path, demo_template: DemoVolume
) -> None:
    with make_harness(testbed, tmp_path, hold_at=2) as harness:
        gate = harness.station.spool
        assert isinstance(gate, GatedSpool)
        harness.mounter.add(DEVNODE, volume)
        storage = harness.plug()
        # The first file is read; the copy of the second waits: the dock is mid-copy.
        assert gate.entered.wait(TIMEOUT)

        unplug_usb_storage(testbed, storage)
        harness.mounter.remove(DEVNODE)
        wait_for(
            "the removal to reach the dock", lambda: any(d["gone"] for d in harness.daemon.docks())
        )
        gate.release.set()

        (stopped,) = wait_for("an interrupted dock", lambda: harness.sessions("interrupted"))
        wait_for("the dock to end", lambda: not harness.daemon.docks())
        total = media_count(demo_template)
        assert "unplugged" in (stopped.error or "")
        kept = stopped.clips_new
        assert 1 <= kept < total
        assert len(harness.clips()) == kept
        assert harness.mounter.mounted == {}
        wait_for(
            "the kept clips to be stored",
            lambda: all(c.state == "stored" for c in harness.clips()),
        )

        # Plugged in again it gets another device node, as the kernel often does: the dock
        # resumes by recorder, not by device.
        harness.mounter.add("/dev/sdd1", volume)
        harness.plug(name="1-2", disk="sdd")

        (resumed,) = wait_for("the resumed dock", lambda: harness.sessions("finished"))
        assert (resumed.clips_new, resumed.clips_known) == (total - kept, kept)
        clips = harness.clips()
        assert len(clips) == total
        assert len({c.sha256 for c in clips}) == total
        assert len({c.source_path for c in clips}) == total
        assert len(harness.events("clip.ingested")) == total
        with harness.station.reading() as session:
            assert len(list(session.exec(select(ClipSource)))) == total
        assert not list((harness.station.spool.incoming).iterdir())


def test_unknown_usb_storage_is_not_mounted_nor_read_and_is_reported(
    harness: Harness, volume: Path
) -> None:
    harness.mounter.add("/dev/sdc1", volume)  # even if it could be mounted, it must not be

    add_usb_storage(
        harness.testbed,
        name="1-4",
        vendor_id="0781",
        model_id="5567",
        vendor="SanDisk",
        model="Cruzer_Blade",
        serial="4C530001230101108201",
        disk_name="sdc",
    )

    (refused,) = wait_for("the refusal", lambda: harness.sessions("refused"))
    assert refused.volume == "/dev/sdc1"
    assert "neither an enrolled recorder nor in dock.usb_allowlist" in (refused.error or "")
    assert harness.mounter.calls == []
    assert harness.clips() == []
    assert harness.daemon.metrics.unknown_devices_seen._value.get() == 1
    (event,) = harness.events("dock.refused")
    assert event["subject"] == {"kind": "device", "id": "4C530001230101108201"}
    assert event["data"]["usb"]["ID_VENDOR_ID"] == "0781"

    settings = harness.station.settings
    with harness.station.reading() as session:
        view = station_status(session, harness.station.clock.now(), DeadlineRule())
    data = view.to_json()
    assert data["refused_devices"][0]["usb"]["ID_SERIAL_SHORT"] == "4C530001230101108201"
    text = status_text({**data, "station": "usb-station", "store": "local"}, settings)
    assert "USB storage refused" in text and "0781 5567 SanDisk" in text


def test_identity_disagreeing_with_the_registry_is_flagged_and_attributed_by_the_registry(
    harness: Harness, volume: Path
) -> None:
    recorders.enroll(harness.station, "C555555", usb_serial="BWC0002", reason="spare recorder")
    harness.mounter.add(DEVNODE, volume)  # its identity file says A123456

    harness.plug("BWC0002")

    (dock,) = wait_for("the dock", lambda: harness.sessions("finished"))
    warnings = json.loads(dock.warnings)
    assert any("identity file" in w and "C555555" in w and "A123456" in w for w in warnings)
    (mismatch,) = harness.events("recorder.identity_mismatch")
    assert mismatch["data"] == {
        "registry_serial": "C555555",
        "identity_serial": "A123456",
        "volume": str(volume),
    }
    clips = harness.clips()
    assert clips and all("recorder_mismatch" in json.loads(c.flags) for c in clips)


def test_two_devices_claiming_one_serial_the_second_is_refused(
    testbed: Testbed, tmp_path: Path, volume: Path, demo_template: DemoVolume
) -> None:
    # The first dock is held mid-copy, so both devices are docked at once.
    with make_harness(testbed, tmp_path, hold_at=2) as harness:
        gate = harness.station.spool
        assert isinstance(gate, GatedSpool)
        other = tmp_path / "other"
        shutil.copytree(demo_template.root, other)
        harness.mounter.add(DEVNODE, volume)
        harness.mounter.add("/dev/sdc1", other)
        harness.plug("BWC0009")
        assert gate.entered.wait(TIMEOUT)

        harness.plug("BWC0009", name="1-2", disk="sdc")

        (refused,) = wait_for("the refusal", lambda: harness.sessions("refused"))
        gate.release.set()
        assert "two devices claim USB serial BWC0009" in (refused.error or "")
        assert refused.volume == "/dev/sdc1"
        wait_for("the first dock", lambda: harness.sessions("finished"))
        assert ("mount", "/dev/sdc1") not in harness.mounter.calls


def test_clearing_erases_only_verified_stored_files_each_a_custody_event(
    testbed: Testbed, tmp_path: Path, volume: Path, demo_template: DemoVolume
) -> None:
    with make_harness(testbed, tmp_path, clear_recorder=True) as harness:
        harness.mounter.add(DEVNODE, volume)
        harness.plug()

        total = media_count(demo_template)
        erased = wait_for(
            "the erase events", lambda: len(harness.events("clip.erased_from_recorder")) == total
        )
        assert erased
        left = sorted(str(p.relative_to(volume)) for p in volume.rglob("*") if p.is_file())
        assert left == ["RECORDER.JSON", "SYSTEM/LOG.TXT"]
        by_sha = {c.sha256: c for c in harness.clips()}
        for event in harness.events("clip.erased_from_recorder"):
            clip = by_sha[event["sha256"]]
            assert clip.state == "stored"
            assert harness.station.store.verify(clip.sha256).sha256 == clip.sha256
            assert event["actor"] == service_actor("usb-station")
