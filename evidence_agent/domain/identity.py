"""The recorder identity file on a volume: the national SDK's fields, as a small JSON document."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from evidence_agent.domain.text import is_plain_text, shown
from evidence_agent.errors import InputError

MAX_IDENTITY_BYTES = 64 * 1024

SERIAL_PATTERN = re.compile(r"[A-Za-z0-9-]{1,64}")
_BADGE = re.compile(r"[A-Za-z0-9]{1,32}")
_UNIT = re.compile(r"[A-Za-z0-9]{1,32}")


EARLIEST_DEVICE_TIME = datetime(1970, 1, 2, tzinfo=UTC)
LATEST_DEVICE_TIME = datetime(2200, 1, 1, tzinfo=UTC)


def check_serial(serial: str, *, what: str = "recorder serial") -> str:
    """A recorder serial as the registry keeps it, or an InputError naming the rule."""
    if not SERIAL_PATTERN.fullmatch(serial):
        part = serial if len(serial) <= 80 else serial[:80] + "..."
        raise InputError(
            f"{what} {shown(part)!r} is not a serial: 1-64 letters, digits or '-'",
            remedy="give the serial printed on the recorder, e.g. --recorder A123456",
        )
    return serial


@dataclass(frozen=True)
class RecorderIdentity:
    serial: str
    badge: str | None = None
    officer_name: str | None = None
    unit_code: str | None = None
    unit_name: str | None = None
    device_time: datetime | None = None  # the recorder's clock when it wrote the file at docking
    utc_offset: timedelta | None = None  # the recorder's zone, from device_time's offset
    vendor: str | None = None
    model: str | None = None


def parse_identity(data: bytes) -> RecorderIdentity:
    """Parse and check the identity document; every problem is named in one InputError."""
    if len(data) > MAX_IDENTITY_BYTES:
        raise InputError(f"identity file is {len(data)} bytes, more than {MAX_IDENTITY_BYTES}")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise InputError(
            f"identity file is not UTF-8 JSON: {e}",
            remedy="see docs/recorder-identity.md for the format, or pass --recorder SERIAL",
        ) from e
    if not isinstance(doc, dict):
        raise InputError("identity file must hold a JSON object")
    problems: list[str] = []

    def text(key: str, pattern: re.Pattern[str] | None, required: bool = False) -> str | None:
        value = doc.get(key)
        if value is None:
            if required:
                problems.append(f"'{key}' is missing")
            return None
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            problems.append(f"'{key}' has an invalid value {value!r}")
            return None
        if not is_plain_text(value):
            problems.append(
                f"'{key}' holds control characters or unpaired surrogates: {shown(value)}"
            )
            return None
        return value

    serial = text("serial", SERIAL_PATTERN, required=True)
    badge = text("badge", _BADGE)
    officer_name = text("officer_name", None)
    unit_code = text("unit_code", _UNIT)
    unit_name = text("unit_name", None)
    vendor = text("vendor", None)
    model = text("model", None)
    device_time = None
    utc_offset = None
    raw_time = text("device_time", None)
    if raw_time is not None:
        try:
            device_time = datetime.fromisoformat(raw_time.replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"'device_time' is not an ISO 8601 time: {raw_time!r}")
        else:
            if device_time.tzinfo is None:
                problems.append("'device_time' needs a UTC offset, e.g. 2026-11-21T18:00:00+08:00")
                device_time = None
            elif not EARLIEST_DEVICE_TIME <= device_time <= LATEST_DEVICE_TIME:
                # A recorder whose clock was never set can say year 1 or 9999; times that far
                # out cannot be compared with the dock's clock (they overflow), so say so here.
                problems.append(
                    f"'device_time' {raw_time!r} is not between "
                    f"{EARLIEST_DEVICE_TIME.year} and {LATEST_DEVICE_TIME.year}"
                )
                device_time = None
            else:
                utc_offset = device_time.utcoffset()
                device_time = device_time.astimezone(UTC)
    if problems or serial is None:
        raise InputError(
            "identity file: " + "; ".join(problems),
            remedy="see docs/recorder-identity.md, or pass --recorder SERIAL",
        )
    return RecorderIdentity(
        serial=serial,
        badge=badge,
        officer_name=officer_name,
        unit_code=unit_code,
        unit_name=unit_name,
        device_time=device_time,
        utc_offset=utc_offset,
        vendor=vendor,
        model=model,
    )
