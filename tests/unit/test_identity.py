"""The recorder identity document: valid forms, every invalid field named, hostile input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from evidence_agent.domain.identity import MAX_IDENTITY_BYTES, RecorderIdentity, parse_identity
from evidence_agent.errors import EvidenceError, InputError

FULL = {
    "serial": "A123456",
    "badge": "100231",
    "officer_name": "张伟",
    "unit_code": "330100000000",
    "unit_name": "杭州市公安局示范派出所",
    "vendor": "DemoVision",
    "model": "DSJ-D1",
    "device_time": "2026-11-21T18:00:00+08:00",
}


def _doc(**changes: Any) -> bytes:
    doc = {**FULL, **changes}
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def test_full_document() -> None:
    assert parse_identity(_doc()) == RecorderIdentity(
        serial="A123456",
        badge="100231",
        officer_name="张伟",
        unit_code="330100000000",
        unit_name="杭州市公安局示范派出所",
        device_time=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
        utc_offset=timedelta(hours=8),
        vendor="DemoVision",
        model="DSJ-D1",
    )


def test_serial_alone_is_enough() -> None:
    assert parse_identity(b'{"serial": "A123456"}') == RecorderIdentity(serial="A123456")


def test_utf8_bom_and_z_suffix_are_accepted() -> None:
    data = b"\xef\xbb\xbf" + _doc(device_time="2026-11-21T10:00:00Z")
    identity = parse_identity(data)
    assert identity.device_time == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert identity.device_time.tzinfo is UTC
    assert identity.utc_offset == timedelta(0)


def test_null_optional_fields_are_absent() -> None:
    identity = parse_identity(_doc(badge=None, officer_name=None, device_time=None))
    assert identity.badge is None
    assert identity.officer_name is None
    assert identity.device_time is None
    assert identity.utc_offset is None


def test_unknown_keys_are_ignored() -> None:
    assert parse_identity(_doc(firmware="1.2.3")).serial == "A123456"


def _problem(data: bytes) -> str:
    with pytest.raises(InputError) as info:
        parse_identity(data)
    return info.value.message


def test_missing_serial_is_named() -> None:
    assert "'serial' is missing" in _problem(_doc(serial=...))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("serial", ""),
        ("serial", "A12 3456"),
        ("serial", "A" * 65),
        ("serial", 1234567),
        ("badge", "10-0231"),
        ("badge", 100231),
        ("unit_code", "3301 0000"),
        ("unit_code", ["330100000000"]),
        ("officer_name", 7),
        ("unit_name", {"zh": "x"}),
        ("vendor", True),
        ("model", 1.5),
    ],
)
def test_each_invalid_field_is_named(key: str, value: Any) -> None:
    assert f"'{key}' has an invalid value" in _problem(_doc(**{key: value}))


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00+08:00", "21/11/2026"])
def test_device_time_not_iso(value: str) -> None:
    assert "'device_time' is not an ISO 8601 time" in _problem(_doc(device_time=value))


def test_device_time_without_offset() -> None:
    assert "'device_time' needs a UTC offset" in _problem(_doc(device_time="2026-11-21T18:00:00"))


def test_every_problem_in_one_message_with_a_remedy() -> None:
    with pytest.raises(InputError) as info:
        parse_identity(_doc(serial=..., badge="?", unit_code="!", device_time="2026-11-21"))
    assert info.value.remedy
    message = info.value.message
    for part in ("'serial' is missing", "'badge'", "'unit_code'", "'device_time' needs"):
        assert part in message


@pytest.mark.parametrize(
    "data",
    [b"", b"serial=A123456", b"{'serial': 'A123456'}", b'{"serial": "A1"', b"\xff\xfe\x00"],
)
def test_not_json(data: bytes) -> None:
    assert "not UTF-8 JSON" in _problem(data)


@pytest.mark.parametrize("data", [b"[]", b'"A123456"', b"null", b"42"])
def test_json_that_is_not_an_object(data: bytes) -> None:
    assert "JSON object" in _problem(data)


def test_huge_file_is_refused_before_parsing() -> None:
    data = b'{"serial": "A123456", "pad": "' + b"x" * MAX_IDENTITY_BYTES + b'"}'
    assert "more than" in _problem(data)


def test_largest_allowed_file_is_read() -> None:
    head = b'{"serial": "A123456", "pad": "'
    data = head + b"x" * (MAX_IDENTITY_BYTES - len(head) - 2) + b'"}'
    assert len(data) == MAX_IDENTITY_BYTES
    assert parse_identity(data).serial == "A123456"


def test_deeply_nested_json_is_an_input_error() -> None:
    with pytest.raises(EvidenceError):
        parse_identity(b"[" * 50_000)


def test_huge_number_is_an_input_error() -> None:
    with pytest.raises(EvidenceError):
        parse_identity(b'{"serial": ' + b"1" * 5000 + b"}")


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00"])
def test_a_device_time_no_clock_can_be_compared_with_is_a_named_problem(when: str) -> None:
    with pytest.raises(InputError, match=r"'device_time'.*not between 1970 and 2200"):
        parse_identity(_doc(device_time=when))


@pytest.mark.parametrize("value", ["\ud800", "a\nb", "a\x00", "\x1b[31m", "a\x85b"])
def test_text_fields_hold_text_only(value: str) -> None:
    data = json.dumps({**FULL, "officer_name": value}).encode()
    with pytest.raises(InputError, match="'officer_name' holds control characters"):
        parse_identity(data)


def test_check_serial_names_the_rule_and_shortens_what_it_echoes() -> None:
    from evidence_agent.domain.identity import check_serial

    assert check_serial("A123456") == "A123456"
    with pytest.raises(InputError, match="not a serial") as caught:
        check_serial("A" * 5000)
    assert len(caught.value.message) < 200
