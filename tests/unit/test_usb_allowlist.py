"""classify_device and the allowlist: plain values in, "recorder" or "unknown" out."""

from __future__ import annotations

import pytest

from evidence_agent.domain.usb_allowlist import AllowlistEntry, classify_device, parse_allowlist
from evidence_agent.errors import ConfigError

RECORDER = {
    "ID_VENDOR_ID": "2A4B",
    "ID_MODEL_ID": "0c01",
    "ID_SERIAL_SHORT": "BWC1234567",
    "ID_FS_TYPE": "exfat",
}
STICK = {"ID_VENDOR_ID": "0781", "ID_MODEL_ID": "5567", "ID_SERIAL_SHORT": "4C5300012301"}


def test_vendor_and_model_entry_matches_case_insensitively() -> None:
    allowlist = (AllowlistEntry(vendor_id="2a4b", model_id="0C01"),)
    assert classify_device(RECORDER, (), allowlist) == "recorder"
    assert classify_device(STICK, (), allowlist) == "unknown"


def test_every_set_field_of_an_entry_must_match() -> None:
    entry = AllowlistEntry(vendor_id="2a4b", model_id="ffff")
    assert classify_device(RECORDER, (), (entry,)) == "unknown"


def test_serial_pattern_must_match_the_whole_serial() -> None:
    assert classify_device(RECORDER, (), (AllowlistEntry(serial_pattern=r"BWC[0-9]{7}"),)) == (
        "recorder"
    )
    assert classify_device(RECORDER, (), (AllowlistEntry(serial_pattern=r"BWC[0-9]{3}"),)) == (
        "unknown"
    )


def test_enrolled_usb_serial_is_a_recorder_without_allowlist() -> None:
    assert classify_device(RECORDER, {"bwc1234567"}, ()) == "recorder"
    assert classify_device(STICK, {"BWC1234567"}, ()) == "unknown"


def test_missing_attributes_never_match() -> None:
    allowlist = (AllowlistEntry(vendor_id="2a4b"), AllowlistEntry(serial_pattern=".*"))
    assert classify_device({}, {""}, allowlist) == "unknown"


def test_an_empty_entry_is_refused_because_it_would_match_every_stick() -> None:
    with pytest.raises(ConfigError, match="match every USB stick"):
        AllowlistEntry()


def test_parse_allowlist_names_every_bad_entry() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_allowlist(
            [
                {"vendor_id": "2a4b"},
                {"vendor_id": "xyz"},
                {"serial_pattern": "("},
                {"colour": "red"},
                {},
            ]
        )
    message = caught.value.message
    assert message.startswith("4 bad USB allowlist entries")
    for part in ("entry 1", "entry 2", "entry 3", "entry 4"):
        assert part in message
    assert "entry 0" not in message


def test_parse_allowlist_builds_normalised_entries() -> None:
    entries = parse_allowlist([{"vendor_id": "2A4B", "serial_pattern": "BWC.*"}])
    assert entries == (AllowlistEntry(vendor_id="2a4b", serial_pattern="BWC.*"),)
    assert classify_device(RECORDER, (), entries) == "recorder"
