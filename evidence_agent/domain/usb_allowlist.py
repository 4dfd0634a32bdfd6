"""Which USB storage is a recorder: enrolled USB serials and an allowlist of vendor, model and serial patterns."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from evidence_agent.errors import ConfigError

Classification = Literal["recorder", "unknown"]

_USB_ID = re.compile(r"[0-9a-fA-F]{4}")
_ENTRY_KEYS = ("vendor_id", "model_id", "serial_pattern")


def normalize_usb_id(value: str) -> str:
    """USB vendor/product ids as udev writes them: four lower-case hex digits."""
    return value.strip().lower()


def normalize_serial(value: str) -> str:
    """Serials compare case-insensitively: some hosts report them upper-cased, some as written."""
    return value.strip().casefold()


@dataclass(frozen=True)
class AllowlistEntry:
    """One allowed kind of recorder; every field that is set must match, unset fields match anything.

    `serial_pattern` is a regular expression that must match the whole USB serial (ID_SERIAL_SHORT).
    """

    vendor_id: str | None = None
    model_id: str | None = None
    serial_pattern: str | None = None
    _serial_re: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = _entry_problems(self.vendor_id, self.model_id, self.serial_pattern)
        if problems:
            raise ConfigError(
                f"bad USB allowlist entry {self.describe()}: " + "; ".join(problems),
                remedy="give vendor_id and/or model_id as 4 hex digits and/or a serial_pattern regex",
            )
        if self.vendor_id is not None:
            object.__setattr__(self, "vendor_id", normalize_usb_id(self.vendor_id))
        if self.model_id is not None:
            object.__setattr__(self, "model_id", normalize_usb_id(self.model_id))
        if self.serial_pattern is not None:
            object.__setattr__(self, "_serial_re", re.compile(self.serial_pattern))

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        if self.vendor_id is not None and _usb_id(attributes, "ID_VENDOR_ID") != self.vendor_id:
            return False
        if self.model_id is not None and _usb_id(attributes, "ID_MODEL_ID") != self.model_id:
            return False
        if self._serial_re is not None:
            serial = _text(attributes, "ID_SERIAL_SHORT")
            if serial is None or self._serial_re.fullmatch(serial) is None:
                return False
        return True

    def describe(self) -> str:
        parts = [
            f"{key}={value!r}"
            for key, value in (
                ("vendor_id", self.vendor_id),
                ("model_id", self.model_id),
                ("serial_pattern", self.serial_pattern),
            )
            if value is not None
        ]
        return "{" + ", ".join(parts) + "}"


def _entry_problems(vendor_id: object, model_id: object, serial_pattern: object) -> list[str]:
    problems: list[str] = []
    if vendor_id is None and model_id is None and serial_pattern is None:
        problems.append("an empty entry would match every USB stick")
    for key, value in (("vendor_id", vendor_id), ("model_id", model_id)):
        if value is not None and (
            not isinstance(value, str) or not _USB_ID.fullmatch(value.strip())
        ):
            problems.append(f"{key} {value!r} is not 4 hex digits")
    if serial_pattern is not None:
        if not isinstance(serial_pattern, str) or not serial_pattern:
            problems.append(f"serial_pattern {serial_pattern!r} must be a non-empty string")
        else:
            try:
                re.compile(serial_pattern)
            except re.error as e:
                problems.append(f"serial_pattern {serial_pattern!r} is not a valid regex: {e}")
    return problems


def parse_allowlist(items: Iterable[Mapping[str, Any]]) -> tuple[AllowlistEntry, ...]:
    """Build the allowlist from configuration tables; one ConfigError names every bad entry.

    Example (TOML): `usb_allowlist = [{vendor_id = "2a4b", model_id = "0c01"},
    {serial_pattern = "BWC[0-9]{7}"}]`.
    """
    entries: list[AllowlistEntry] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            problems.append(f"entry {index}: expected a table, got {type(item).__name__}")
            continue
        unknown = sorted(set(item) - set(_ENTRY_KEYS))
        if unknown:
            problems.append(f"entry {index}: unknown key(s) {', '.join(map(str, unknown))}")
            continue
        found = _entry_problems(
            item.get("vendor_id"), item.get("model_id"), item.get("serial_pattern")
        )
        if found:
            problems.extend(f"entry {index}: {p}" for p in found)
            continue
        entries.append(
            AllowlistEntry(
                vendor_id=item.get("vendor_id"),
                model_id=item.get("model_id"),
                serial_pattern=item.get("serial_pattern"),
            )
        )
    if problems:
        raise ConfigError(
            f"{len(problems)} bad USB allowlist entr{'y' if len(problems) == 1 else 'ies'}: "
            + "; ".join(problems),
            remedy="each entry takes vendor_id, model_id (4 hex digits) and serial_pattern (regex)",
        )
    return tuple(entries)


def classify_device(
    attributes: Mapping[str, Any],
    enrolled_usb_serials: Collection[str],
    allowlist: Iterable[AllowlistEntry],
) -> Classification:
    """Say "recorder" when the USB serial is enrolled or an allowlist entry matches, else "unknown".

    `attributes` are a dock event's udev attributes (ID_VENDOR_ID, ID_MODEL_ID, ID_SERIAL_SHORT...).
    Unknown storage is never ingested automatically: the caller reports it and waits for a supervisor.
    """
    serial = _text(attributes, "ID_SERIAL_SHORT")
    if serial is not None:
        wanted = normalize_serial(serial)
        if any(normalize_serial(s) == wanted for s in enrolled_usb_serials):
            return "recorder"
    if any(entry.matches(attributes) for entry in allowlist):
        return "recorder"
    return "unknown"


def _text(attributes: Mapping[str, Any], key: str) -> str | None:
    value = attributes.get(key)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _usb_id(attributes: Mapping[str, Any], key: str) -> str | None:
    value = _text(attributes, key)
    return None if value is None else normalize_usb_id(value)
