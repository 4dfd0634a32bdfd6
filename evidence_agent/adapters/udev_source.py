"""USB recorder detection with pyudev: partitions of USB mass-storage devices become dock events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pyudev

from evidence_agent.errors import EvidenceError
from evidence_agent.ports import DockEvent

logger = logging.getLogger(__name__)

SOURCE_NAME = "usb"

# The udev properties a dock event carries; the allowlist and the registry match on them.
PROPERTY_KEYS = (
    "ID_VENDOR_ID",
    "ID_MODEL_ID",
    "ID_VENDOR",
    "ID_MODEL",
    "ID_SERIAL_SHORT",
    "ID_FS_TYPE",
    "ID_FS_UUID",
)

# When udev's rules did not copy the USB identity onto the block device, the usb_device's own
# sysfs attributes say the same thing.
_USB_SYSFS_FALLBACK = {
    "ID_VENDOR_ID": "idVendor",
    "ID_MODEL_ID": "idProduct",
    "ID_VENDOR": "manufacturer",
    "ID_MODEL": "product",
    "ID_SERIAL_SHORT": "serial",
}

_ACTIONS = {"add": "added", "remove": "removed"}


def is_storage_volume(properties: Mapping[str, str]) -> bool:
    """A partition, or a whole disk formatted without a partition table (a "superfloppy")."""
    devtype = properties.get("DEVTYPE")
    if devtype == "partition":
        return True
    return devtype == "disk" and properties.get("ID_FS_USAGE") == "filesystem"


def dock_event_from_udev(
    action: str,
    *,
    devnode: str | None,
    sys_path: str,
    properties: Mapping[str, str],
    usb_parent_attributes: Mapping[str, str] | None,
    known: bool = False,
) -> DockEvent | None:
    """The dock event for one udev event, or None when it is not about USB storage coming or going.

    `usb_parent_attributes` are the sysfs attributes of the ancestor in subsystem "usb" (None when
    there is none); `known` says the device was reported as added before, so its removal is reported
    even when its USB ancestry can no longer be seen.
    """
    kind = _ACTIONS.get(action)
    if kind is None or not is_storage_volume(properties):
        return None
    on_usb = properties.get("ID_BUS") == "usb" or usb_parent_attributes is not None
    if not on_usb and not (kind == "removed" and known):
        return None
    attributes: dict[str, Any] = {}
    for key in PROPERTY_KEYS:
        value = properties.get(key)
        if not value and usb_parent_attributes is not None and key in _USB_SYSFS_FALLBACK:
            value = usb_parent_attributes.get(_USB_SYSFS_FALLBACK[key])
        if value:
            attributes[key] = value.strip()
    attributes["devnode"] = devnode
    attributes["sys_path"] = sys_path
    return DockEvent(
        kind=kind,
        volume=None,  # not mounted yet: the mounter decides where
        source=SOURCE_NAME,
        device_id=devnode or sys_path,
        attributes=attributes,
    )


def _usb_parent_attributes(device: Any) -> dict[str, str] | None:
    parent = device.find_parent("usb", "usb_device")
    if parent is None:
        return None
    found: dict[str, str] = {}
    for name in _USB_SYSFS_FALLBACK.values():
        try:
            found[name] = str(parent.attributes.asstring(name))
        except (KeyError, UnicodeDecodeError, OSError):
            continue  # an attribute the device does not have, or went away with it
    return found


def _event_for(device: Any, action: str, known: bool) -> DockEvent | None:
    properties = {str(k): str(v) for k, v in device.properties.items()}
    node = device.device_node
    return dock_event_from_udev(
        action,
        devnode=None if node is None else str(node),
        sys_path=str(device.sys_path),
        properties=properties,
        usb_parent_attributes=_usb_parent_attributes(device),
        known=known,
    )


class UdevDockSource:
    """DockSource for USB mass storage: pyudev's netlink monitor, filtered to block devices.

    Call `start()` before `enumerate_present()` so that nothing plugged in between is missed; the
    consumer drops the duplicate "added" that can result (same device_id).
    """

    def __init__(self, context: Any = None) -> None:
        self._context = context
        self._observer: Any = None
        self._emit: Callable[[DockEvent], None] | None = None
        self._lock = threading.Lock()
        self._known: set[str] = set()  # device ids reported as added and not yet removed

    def _get_context(self) -> Any:
        if self._context is None:
            self._context = pyudev.Context()
        return self._context

    def start(self, emit: Callable[[DockEvent], None]) -> None:
        if self._observer is not None:
            raise RuntimeError("UdevDockSource already started")
        try:
            monitor = pyudev.Monitor.from_netlink(self._get_context())
            # Filter on subsystem only: whole-disk (unpartitioned) volumes are block "disk" devices.
            monitor.filter_by("block")
            monitor.start()
        except (OSError, ValueError) as e:
            raise EvidenceError(
                f"cannot listen for USB devices through udev: {e}",
                remedy="run on a host with systemd-udevd and allow AF_NETLINK "
                "(RestrictAddressFamilies in the service), or drop 'usb' from dock.sources",
            ) from e
        self._emit = emit
        observer = pyudev.MonitorObserver(
            monitor, callback=self._on_device, name="udev-dock-source"
        )
        self._observer = observer
        observer.start()

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()  # joins: no callback runs after this returns

    def is_alive(self) -> bool:
        """False once the observer thread died (e.g. the netlink socket failed): stop pinging the watchdog."""
        return self._observer is not None and bool(self._observer.is_alive())

    def enumerate_present(self) -> list[DockEvent]:
        """An "added" event for each USB storage volume already plugged in."""
        events: list[DockEvent] = []
        devices = self._get_context().list_devices(subsystem="block")
        for device in devices:
            try:
                event = _event_for(device, "add", known=False)
            except pyudev.DeviceNotFoundError:
                continue  # unplugged while we looked
            if event is not None:
                with self._lock:
                    self._known.add(event.device_id)
                events.append(event)
        return events

    def _on_device(self, device: Any) -> None:
        """Runs on the observer thread: build a small event and enqueue it, nothing more."""
        action = str(device.action)
        try:
            with self._lock:
                known = str(device.device_node or device.sys_path) in self._known
            event = _event_for(device, action, known)
        except (pyudev.DeviceNotFoundError, OSError, UnicodeDecodeError) as e:
            # Dying here would silently end detection; one lost event is reported instead.
            logger.warning("ignoring udev %s event for %s: %s", action, device.sys_path, e)
            return
        if event is None:
            return
        with self._lock:
            if event.kind == "added":
                self._known.add(event.device_id)
            else:
                self._known.discard(event.device_id)
        emit = self._emit
        if emit is not None:
            emit(event)
