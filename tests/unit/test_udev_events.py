"""dock_event_from_udev: which udev events become dock events, with which attributes."""

from __future__ import annotations

from evidence_agent.adapters.udev_source import dock_event_from_udev
from evidence_agent.ports import DockEvent

USB_PARTITION = {
    "DEVTYPE": "partition",
    "ID_BUS": "usb",
    "ID_VENDOR_ID": "2a4b",
    "ID_MODEL_ID": "0c01",
    "ID_VENDOR": "Acme",
    "ID_MODEL": "BodyCam",
    "ID_SERIAL_SHORT": "BWC1",
    "ID_FS_TYPE": "vfat",
    "ID_FS_UUID": "1234-ABCD",
    "ID_PART_ENTRY_TYPE": "0xc",
}
SYS = "/sys/devices/pci0000:00/usb1/1-1/1-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb/sdb1"


def test_usb_partition_added() -> None:
    event = dock_event_from_udev(
        "add",
        devnode="/dev/sdb1",
        sys_path=SYS,
        properties=USB_PARTITION,
        usb_parent_attributes=None,
    )
    assert event is not None
    assert (event.kind, event.source, event.device_id, event.volume) == (
        "added",
        "usb",
        "/dev/sdb1",
        None,
    )
    assert event.attributes == {
        "ID_VENDOR_ID": "2a4b",
        "ID_MODEL_ID": "0c01",
        "ID_VENDOR": "Acme",
        "ID_MODEL": "BodyCam",
        "ID_SERIAL_SHORT": "BWC1",
        "ID_FS_TYPE": "vfat",
        "ID_FS_UUID": "1234-ABCD",
        "devnode": "/dev/sdb1",
        "sys_path": SYS,
    }


def test_identity_falls_back_to_the_usb_device_attributes() -> None:
    props = {"DEVTYPE": "partition", "ID_FS_TYPE": "exfat"}
    parent = {"idVendor": "2a4b", "idProduct": "0c01", "serial": "BWC9 ", "product": "Cam"}
    event = dock_event_from_udev(
        "add", devnode="/dev/sdc1", sys_path=SYS, properties=props, usb_parent_attributes=parent
    )
    assert event is not None
    assert event.attributes["ID_VENDOR_ID"] == "2a4b"
    assert event.attributes["ID_MODEL_ID"] == "0c01"
    assert event.attributes["ID_SERIAL_SHORT"] == "BWC9"
    assert event.attributes["ID_MODEL"] == "Cam"
    assert "ID_VENDOR" not in event.attributes


def test_non_usb_partition_is_ignored() -> None:
    props = {"DEVTYPE": "partition", "ID_BUS": "ata", "ID_FS_TYPE": "ext4"}
    assert (
        dock_event_from_udev(
            "add", devnode="/dev/sda1", sys_path=SYS, properties=props, usb_parent_attributes=None
        )
        is None
    )


def test_disks_are_ignored_unless_formatted_without_partition_table() -> None:
    partitioned = {"DEVTYPE": "disk", "ID_BUS": "usb", "ID_PART_TABLE_TYPE": "dos"}
    superfloppy = {"DEVTYPE": "disk", "ID_BUS": "usb", "ID_FS_USAGE": "filesystem"}
    assert _event("add", partitioned, devnode="/dev/sdb") is None
    event = _event("add", superfloppy, devnode="/dev/sdb")
    assert event is not None and event.device_id == "/dev/sdb"


def test_change_and_bind_events_are_not_docks() -> None:
    for action in ("change", "bind", "move", "online"):
        assert (
            dock_event_from_udev(
                action,
                devnode="/dev/sdb1",
                sys_path=SYS,
                properties=USB_PARTITION,
                usb_parent_attributes=None,
            )
            is None
        )


def test_removal_of_a_known_device_is_reported_even_without_usb_ancestry() -> None:
    props = {"DEVTYPE": "partition"}  # the parent is gone from /sys by the time we look
    assert _event("remove", props) is None
    event = _event("remove", props, known=True)
    assert event is not None and event.kind == "removed" and event.device_id == "/dev/sdb1"


def test_device_without_node_is_identified_by_sys_path() -> None:
    event = dock_event_from_udev(
        "remove", devnode=None, sys_path=SYS, properties=USB_PARTITION, usb_parent_attributes=None
    )
    assert event is not None and event.device_id == SYS


def _event(
    action: str, props: dict[str, str], *, devnode: str = "/dev/sdb1", known: bool = False
) -> DockEvent | None:
    return dock_event_from_udev(
        action,
        devnode=devnode,
        sys_path=SYS,
        properties=props,
        usb_parent_attributes=None,
        known=known,
    )
