"""Which docked USB device is which recorder: the registry and the allowlist, as plain values."""

from __future__ import annotations

from evidence_agent.domain.usb_allowlist import AllowlistEntry
from evidence_agent.services.recorders import EnrolledDevice, identity_disagreement, match_device

RECORDER = {"ID_VENDOR_ID": "2a4b", "ID_MODEL_ID": "0c01", "ID_SERIAL_SHORT": "BWC0001"}
STICK = {"ID_VENDOR_ID": "0781", "ID_MODEL_ID": "5567", "ID_SERIAL_SHORT": "4C5300012301"}
ALLOW = (AllowlistEntry(vendor_id="2a4b", model_id="0c01"),)


def test_an_enrolled_usb_serial_names_the_recorder_case_insensitively() -> None:
    match = match_device(RECORDER, [EnrolledDevice("A123456", "bwc0001")], ())
    assert (match.kind, match.recorder_serial, match.is_recorder) == ("enrolled", "A123456", True)


def test_enrolled_usb_ids_must_match_too() -> None:
    enrolled = [EnrolledDevice("A123456", "4C5300012301", "2a4b", "0c01")]
    match = match_device(STICK, enrolled, ALLOW)
    assert match.kind == "unknown"
    assert "enrolled for recorder A123456" in match.reason and "vendor id 0781" in match.reason
    same = match_device(
        {**RECORDER, "ID_VENDOR_ID": "2A4B"}, [EnrolledDevice("A1", "BWC0001", "2a4b", None)], ()
    )
    assert same.kind == "enrolled"


def test_allowlisted_kind_without_enrolment_is_a_recorder_of_unknown_serial() -> None:
    match = match_device(RECORDER, [], ALLOW)
    assert (match.kind, match.recorder_serial) == ("allowlisted", None)


def test_anything_else_is_unknown_and_says_why() -> None:
    match = match_device(STICK, [EnrolledDevice("A123456", "BWC0001")], ALLOW)
    assert not match.is_recorder
    assert "ID_VENDOR_ID=0781" in match.reason and "neither an enrolled recorder" in match.reason
    assert "without USB identity" in match_device({}, [], ALLOW).reason


def test_identity_disagreement() -> None:
    assert identity_disagreement("A123456", "A123456") is None
    assert identity_disagreement(None, "A123456") is None
    assert identity_disagreement("A123456", None) is None
    message = identity_disagreement("C555555", "A123456")
    assert message is not None and "C555555" in message and "A123456" in message
