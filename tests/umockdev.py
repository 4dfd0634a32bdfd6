"""A small ctypes binding to libumockdev's Testbed, so tests can plug in mock USB devices at run time.

The venv's Python cannot import Debian's `gi`, and only a handful of calls are needed, so this
binds the C symbols directly (signatures and ownership checked against UMockdev-1.0.typelib).
The process must run under `umockdev-wrapper` (which preloads libumockdev-preload) for libudev,
and therefore pyudev, to see the testbed instead of the real /sys and netlink.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

WRAPPER_COMMAND = "umockdev-wrapper .venv/bin/python -m pytest -m usb tests/integration/usb"


def preload_active(environ: Mapping[str, str] | None = None) -> bool:
    """True when this process runs under umockdev-wrapper (the preload library is loaded)."""
    env = os.environ if environ is None else environ
    return "libumockdev-preload" in env.get("LD_PRELOAD", "")


def library_available() -> bool:
    try:
        ctypes.CDLL("libumockdev.so.0")
    except OSError:
        return False
    return True


class _GError(ctypes.Structure):
    _fields_ = [
        ("domain", ctypes.c_uint32),
        ("code", ctypes.c_int),
        ("message", ctypes.c_char_p),
    ]


class _Lib:
    """The three shared libraries and the prototypes of the calls used."""

    def __init__(self) -> None:
        self.umockdev = ctypes.CDLL("libumockdev.so.0")
        self.glib = ctypes.CDLL("libglib-2.0.so.0")
        self.gobject = ctypes.CDLL("libgobject-2.0.so.0")
        u, vp, cp = self.umockdev, ctypes.c_void_p, ctypes.c_char_p
        u.umockdev_testbed_new.restype = vp
        u.umockdev_testbed_new.argtypes = []
        # gchar* (owned) add_devicev(self, subsystem, name, parent?, gchar** attrs, gchar** props)
        u.umockdev_testbed_add_devicev.restype = vp
        u.umockdev_testbed_add_devicev.argtypes = [
            vp,
            cp,
            cp,
            cp,
            ctypes.POINTER(cp),
            ctypes.POINTER(cp),
        ]
        u.umockdev_testbed_add_from_string.restype = ctypes.c_int
        u.umockdev_testbed_add_from_string.argtypes = [vp, cp, ctypes.POINTER(ctypes.c_void_p)]
        for name in ("set_attribute", "set_property", "uevent"):
            fn = getattr(u, f"umockdev_testbed_{name}")
            fn.restype = None
            fn.argtypes = [vp, cp, cp, *([cp] if name != "uevent" else [])]
        u.umockdev_testbed_remove_device.restype = None
        u.umockdev_testbed_remove_device.argtypes = [vp, cp]
        u.umockdev_testbed_get_sys_dir.restype = vp
        u.umockdev_testbed_get_sys_dir.argtypes = [vp]
        u.umockdev_testbed_get_root_dir.restype = vp
        u.umockdev_testbed_get_root_dir.argtypes = [vp]
        self.glib.g_free.restype = None
        self.glib.g_free.argtypes = [vp]
        self.glib.g_error_free.restype = None
        self.glib.g_error_free.argtypes = [vp]
        self.gobject.g_object_unref.restype = None
        self.gobject.g_object_unref.argtypes = [vp]

    def take_string(self, pointer: int | None) -> str | None:
        """Copy a returned owned gchar* into Python and free it."""
        if not pointer:
            return None
        try:
            raw = ctypes.cast(pointer, ctypes.c_char_p).value
        finally:
            self.glib.g_free(pointer)
        return None if raw is None else raw.decode()


def _strv(pairs: Mapping[str, str]) -> ctypes.Array[ctypes.c_char_p]:
    """A NULL-terminated gchar** of alternating names and values."""
    flat = [item.encode() for kv in pairs.items() for item in kv]
    array = (ctypes.c_char_p * (len(flat) + 1))()
    for i, item in enumerate(flat):
        array[i] = item
    array[len(flat)] = None
    return array


class Testbed:
    """One umockdev testbed: a private /sys that libudev (hence pyudev) sees while it exists.

    Creating it sets $UMOCKDEV_DIR in the C environment; `close()` removes the directory and unsets it.
    """

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self._lib = _Lib()
        self._handle: int | None = self._lib.umockdev.umockdev_testbed_new()
        if not self._handle:
            raise RuntimeError("umockdev_testbed_new() returned NULL")

    def _self(self) -> int:
        if self._handle is None:
            raise RuntimeError("testbed already closed")
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._lib.gobject.g_object_unref(self._handle)
            self._handle = None

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sys_dir(self) -> str:
        value = self._lib.take_string(self._lib.umockdev.umockdev_testbed_get_sys_dir(self._self()))
        assert value is not None
        return value

    @property
    def root_dir(self) -> str:
        value = self._lib.take_string(
            self._lib.umockdev.umockdev_testbed_get_root_dir(self._self())
        )
        assert value is not None
        return value

    def add_device(
        self,
        subsystem: str,
        name: str,
        parent: str | None,
        attributes: Mapping[str, str],
        properties: Mapping[str, str],
    ) -> str:
        """Add a device (this emits an "add" uevent) and return its sys path (/sys/devices/...)."""
        path = self._lib.take_string(
            self._lib.umockdev.umockdev_testbed_add_devicev(
                self._self(),
                subsystem.encode(),
                name.encode(),
                None if parent is None else parent.encode(),
                _strv(attributes),
                _strv(properties),
            )
        )
        if path is None:
            raise RuntimeError(f"umockdev could not add {subsystem} device {name!r}")
        return path

    def add_from_string(self, record: str) -> None:
        """Add devices from umockdev-record's text format."""
        error = ctypes.c_void_p()
        ok = self._lib.umockdev.umockdev_testbed_add_from_string(
            self._self(), record.encode(), ctypes.byref(error)
        )
        if not ok or error.value:
            message = "unknown error"
            if error.value:
                raw = ctypes.cast(error, ctypes.POINTER(_GError)).contents.message
                message = raw.decode() if raw else message
                self._lib.glib.g_error_free(error)
            raise ValueError(f"umockdev rejected the device record: {message}")

    def set_attribute(self, sys_path: str, name: str, value: str) -> None:
        self._lib.umockdev.umockdev_testbed_set_attribute(
            self._self(), sys_path.encode(), name.encode(), value.encode()
        )

    def set_property(self, sys_path: str, name: str, value: str) -> None:
        self._lib.umockdev.umockdev_testbed_set_property(
            self._self(), sys_path.encode(), name.encode(), value.encode()
        )

    def uevent(self, sys_path: str, action: str) -> None:
        """Send a uevent ("add", "change", "remove") to every udev monitor in the testbed."""
        self._lib.umockdev.umockdev_testbed_uevent(self._self(), sys_path.encode(), action.encode())

    def remove_device(self, sys_path: str) -> None:
        """Delete the device from the mocked /sys (sends no uevent: call `unplug` for that)."""
        self._lib.umockdev.umockdev_testbed_remove_device(self._self(), sys_path.encode())

    def unplug(self, sys_path: str) -> None:
        """What the kernel does when a device goes: a "remove" uevent, then the /sys entry goes."""
        self.uevent(sys_path, "remove")
        self.remove_device(sys_path)


@dataclass(frozen=True)
class UsbStorage:
    """Sys paths of one mock USB mass-storage device: usb_device -> disk -> partition."""

    usb_device: str
    disk: str
    partition: str
    devnode: str


_next_minor = iter(range(16, 10_000, 16))


def add_usb_storage(
    testbed: Testbed,
    *,
    name: str,
    vendor_id: str,
    model_id: str,
    vendor: str,
    model: str,
    serial: str,
    fs_type: str = "vfat",
    fs_uuid: str = "1234-ABCD",
    disk_name: str = "sdb",
) -> UsbStorage:
    """Plug in a mock USB stick (or recorder) with one partition; udev sees add events for each level.

    `name` is the USB port path (e.g. "1-1"); it and `disk_name` must be unique in the testbed.
    """
    minor = next(_next_minor)
    usb_props = {
        "SUBSYSTEM": "usb",
        "DEVTYPE": "usb_device",
        "ID_VENDOR_ID": vendor_id,
        "ID_MODEL_ID": model_id,
        "ID_VENDOR": vendor,
        "ID_MODEL": model,
        "ID_SERIAL_SHORT": serial,
        "ID_BUS": "usb",
    }
    usb_device = testbed.add_device(
        "usb",
        f"usb1/{name}",
        None,
        {
            "idVendor": vendor_id,
            "idProduct": model_id,
            "manufacturer": vendor,
            "product": model,
            "serial": serial,
        },
        usb_props,
    )
    # What 60-persistent-storage.rules puts on the block devices of a USB stick.
    storage_props = {
        "ID_BUS": "usb",
        "ID_USB_DRIVER": "usb-storage",
        "ID_VENDOR_ID": vendor_id,
        "ID_MODEL_ID": model_id,
        "ID_VENDOR": vendor,
        "ID_MODEL": model,
        "ID_SERIAL_SHORT": serial,
        "ID_SERIAL": f"{vendor}_{model}_{serial}-0:0",
    }
    disk = testbed.add_device(
        "block",
        disk_name,
        usb_device,
        {"dev": f"8:{minor}", "removable": "1", "size": "62333952", "ro": "0"},
        {**storage_props, "DEVNAME": f"/dev/{disk_name}", "DEVTYPE": "disk"},
    )
    devnode = f"/dev/{disk_name}1"
    partition = testbed.add_device(
        "block",
        f"{disk_name}1",
        disk,
        {"dev": f"8:{minor + 1}", "partition": "1", "size": "62331904", "ro": "0"},
        {
            **storage_props,
            "DEVNAME": devnode,
            "DEVTYPE": "partition",
            "ID_FS_TYPE": fs_type,
            "ID_FS_UUID": fs_uuid,
            "ID_FS_USAGE": "filesystem",
            "PARTN": "1",
        },
    )
    return UsbStorage(usb_device=usb_device, disk=disk, partition=partition, devnode=devnode)


def unplug_usb_storage(testbed: Testbed, storage: UsbStorage) -> None:
    """Remove children first, as the kernel does."""
    for sys_path in (storage.partition, storage.disk, storage.usb_device):
        testbed.unplug(sys_path)


@contextmanager
def testbed() -> Iterator[Testbed]:
    bed = Testbed()
    try:
        yield bed
    finally:
        bed.close()
