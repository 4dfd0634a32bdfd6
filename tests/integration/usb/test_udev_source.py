"""UdevDockSource against umockdev: USB storage plugged in and out at run time, seen through pyudev.

Run with: umockdev-wrapper .venv/bin/python -m pytest -m usb tests/integration/usb
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from evidence_agent.adapters.udev_source import UdevDockSource
from evidence_agent.domain.usb_allowlist import AllowlistEntry, classify_device
from evidence_agent.ports import DockEvent
from tests.umockdev import Testbed, UsbStorage, add_usb_storage, unplug_usb_storage

pytestmark = pytest.mark.usb

ALLOWLIST = (AllowlistEntry(vendor_id="2a4b", model_id="0c01"),)
TIMEOUT = 5.0


def plug_recorder(
    bed: Testbed, *, name: str = "1-1", disk: str = "sdb", serial: str = "BWC0001"
) -> UsbStorage:
    return add_usb_storage(
        bed,
        name=name,
        vendor_id="2a4b",
        model_id="0c01",
        vendor="Acme",
        model="BodyCam_X1",
        serial=serial,
        fs_type="exfat",
        fs_uuid="5E1F-0A2B",
        disk_name=disk,
    )


@pytest.fixture
def events(testbed: Testbed) -> Iterator[tuple[UdevDockSource, queue.Queue[DockEvent]]]:
    source = UdevDockSource()
    received: queue.Queue[DockEvent] = queue.Queue()
    source.start(received.put)  # the daemon's emit only enqueues, like this
    try:
        yield source, received
    finally:
        source.stop()


def next_event(received: queue.Queue[DockEvent]) -> DockEvent:
    try:
        return received.get(timeout=TIMEOUT)
    except queue.Empty:
        pytest.fail(f"no dock event within {TIMEOUT} s")


def test_added_recorder_partition_is_seen_with_its_attributes(
    testbed: Testbed, events: tuple[UdevDockSource, queue.Queue[DockEvent]]
) -> None:
    source, received = events
    storage = plug_recorder(testbed)

    event = next_event(received)

    assert event.kind == "added"
    assert event.source == "usb"
    assert event.volume is None
    assert event.device_id == "/dev/sdb1" == storage.devnode
    assert event.attributes["ID_VENDOR_ID"] == "2a4b"
    assert event.attributes["ID_MODEL_ID"] == "0c01"
    assert event.attributes["ID_VENDOR"] == "Acme"
    assert event.attributes["ID_MODEL"] == "BodyCam_X1"
    assert event.attributes["ID_SERIAL_SHORT"] == "BWC0001"
    assert event.attributes["ID_FS_TYPE"] == "exfat"
    assert event.attributes["ID_FS_UUID"] == "5E1F-0A2B"
    assert event.attributes["devnode"] == "/dev/sdb1"
    assert classify_device(event.attributes, set(), ALLOWLIST) == "recorder"
    assert source.is_alive()
    assert received.empty(), "only the partition is a dock event, not the disk or the USB device"


def test_removal_is_seen(
    testbed: Testbed, events: tuple[UdevDockSource, queue.Queue[DockEvent]]
) -> None:
    _, received = events
    storage = plug_recorder(testbed)
    added = next_event(received)

    unplug_usb_storage(testbed, storage)
    removed = next_event(received)

    assert removed.kind == "removed"
    assert removed.device_id == added.device_id
    assert removed.attributes["ID_SERIAL_SHORT"] == "BWC0001"


def test_enumerate_present_lists_a_recorder_plugged_in_before_start(testbed: Testbed) -> None:
    plug_recorder(testbed, serial="BWC0042")
    # A SATA disk's partition: block storage, but not USB, so never a dock.
    ata = testbed.add_device("pci", "pci0000:00/ata1", None, {}, {"SUBSYSTEM": "pci"})
    disk = testbed.add_device(
        "block", "sda", ata, {"dev": "8:0"}, {"DEVNAME": "/dev/sda", "DEVTYPE": "disk"}
    )
    testbed.add_device(
        "block",
        "sda1",
        disk,
        {"dev": "8:1", "partition": "1"},
        {"DEVNAME": "/dev/sda1", "DEVTYPE": "partition", "ID_FS_TYPE": "ext4", "ID_BUS": "ata"},
    )
    source = UdevDockSource()

    present = source.enumerate_present()

    assert [(e.kind, e.device_id) for e in present] == [("added", "/dev/sdb1")]
    assert present[0].attributes["ID_SERIAL_SHORT"] == "BWC0042"


def test_an_unknown_stick_is_seen_and_classified_unknown(
    testbed: Testbed, events: tuple[UdevDockSource, queue.Queue[DockEvent]]
) -> None:
    _, received = events
    add_usb_storage(
        testbed,
        name="1-4",
        vendor_id="0781",
        model_id="5567",
        vendor="SanDisk",
        model="Cruzer_Blade",
        serial="4C530001230101108201",
        disk_name="sdc",
    )

    event = next_event(received)

    assert event.kind == "added"
    assert event.device_id == "/dev/sdc1"
    assert classify_device(event.attributes, {"BWC0001"}, ALLOWLIST) == "unknown"


def test_an_enrolled_serial_makes_a_recorder_without_an_allowlist_entry(
    testbed: Testbed, events: tuple[UdevDockSource, queue.Queue[DockEvent]]
) -> None:
    _, received = events
    add_usb_storage(
        testbed,
        name="1-5",
        vendor_id="1234",
        model_id="5678",
        vendor="Other",
        model="Cam",
        serial="ZX81",
        disk_name="sdd",
    )

    event = next_event(received)

    assert classify_device(event.attributes, {"zx81"}, ()) == "recorder"
