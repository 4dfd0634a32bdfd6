"""Tests of RFC 8785 canonical JSON for custody events."""

from __future__ import annotations

import collections
import enum
import functools
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import rfc8785

from evidence_agent.custody.canonical import canonical_json
from evidence_agent.custody.events import CustodyEvent, encode_entries, entry_document
from evidence_agent.errors import InputError


def test_rfc8785_examples() -> None:
    # RFC 8785 section 3.2.2 (sample input with literals, numbers and strings) and section
    # 3.2.3 (property sorting by UTF-16 code units).
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    assert canonical_json(value) == (
        b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    sorting = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = [
        "\r",
        "1",
        "\u0080",
        "\u00f6",
        "\u20ac",
        "\U0001f600",
        "\ufb33",
    ]
    expected = "{" + ",".join(f'"{k}":"{sorting[k]}"' for k in keys) + "}"
    assert canonical_json(sorting) == expected.replace("\r", "\\r").encode("utf-8")


def test_event_is_stable_whatever_the_key_order() -> None:
    a = {"action": "ingest", "clip": "c1", "officer": "4711", "seq": 1}
    b = {"seq": 1, "officer": "4711", "clip": "c1", "action": "ingest"}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == b'{"action":"ingest","clip":"c1","officer":"4711","seq":1}'


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        {"x": -math.inf},
        {1: "non-string key"},
        {"big": 2**53},
        "\ud800",
        b"bytes",
        {"when": object()},
    ],
)
def test_values_json_cannot_carry_exactly_are_rejected(value: Any) -> None:
    with pytest.raises(InputError, match="canonicalis"):
        canonical_json(value)


def test_deep_nesting_is_rejected() -> None:
    value: Any = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(InputError, match="nested"):
        canonical_json(value)


# --- the fast encoder against the reference implementation (the rfc8785 package) -------------


class Colour(enum.IntEnum):
    RED = 1


class Kind(enum.StrEnum):
    CLIP = "clip"


def _random_string(rng: random.Random) -> str:
    pools = (
        "abcxyz019 -_/.:",
        '"\\/\b\f\n\r\t\x00\x01\x1f\x7f',
        "\u00e9\u00f6\u0080\u2028\u2029\u20ac\ufeff\ue000\uffff\ufb33\u674e",
        "\U0001f600\U00010000\U0010ffff",
    )
    out = []
    for _ in range(rng.randrange(0, 8)):
        pool = rng.choice(pools)
        out.append(rng.choice(pool))
    if rng.random() < 0.02:
        out.append(chr(rng.randrange(0xD800, 0xE000)))  # a lone surrogate
    return "".join(out)


def _random_float(rng: random.Random) -> float:
    return rng.choice(
        [
            0.0,
            -0.0,
            600.0,
            600.033,
            -1.5,
            1e21,
            1e20,
            1e-7,
            1e-6,
            123456789012345680.0,
            5e-324,
            1.7976931348623157e308,
            rng.uniform(-1e6, 1e6),
            rng.random() * 10.0 ** rng.randrange(-30, 30),
            math.nan,
            math.inf,
        ]
    )


def _random_scalar(rng: random.Random) -> Any:
    kind = rng.randrange(12)
    if kind < 4:
        return _random_string(rng)
    if kind < 6:
        return rng.choice([0, 1, -1, 600, 2**53 - 1, -(2**53) + 1, 2**53, -(2**53), 10**30])
    if kind == 6:
        return _random_float(rng)
    if kind == 7:
        return rng.choice([True, False, None])
    if kind == 8:
        return rng.choice([Colour.RED, Kind.CLIP])
    if kind == 9:
        return rng.randrange(-(10**12), 10**12)
    if kind == 10:
        return rng.choice([b"bytes", object(), {1, 2}])
    return ""


def _random_key(rng: random.Random) -> Any:
    if rng.random() < 0.02:
        return rng.choice([1, None, 2.5, True, b"k"])
    return _random_string(rng)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10)
    if depth > 4 or kind < 5:
        return _random_scalar(rng)
    if kind < 7:
        items = [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
        return tuple(items) if rng.random() < 0.2 else items
    mapping = {_random_key(rng): _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))}
    return collections.OrderedDict(mapping) if rng.random() < 0.05 else mapping


def _outcome(encode: Callable[[Any], bytes], value: Any) -> bytes | str:
    try:
        return encode(value)
    except (InputError, rfc8785.CanonicalizationError, RecursionError, UnicodeEncodeError) as e:
        return f"raises {type(e).__name__}"


def test_fast_encoder_gives_the_reference_bytes_for_random_values() -> None:
    rng = random.Random(8785)
    for _ in range(20_000):
        value = _random_value(rng)
        expected = _outcome(rfc8785.dumps, value)
        got = _outcome(canonical_json, value)
        if isinstance(expected, bytes):
            assert got == expected, value
        else:
            assert isinstance(got, str), value  # the reference rejects it: so must we


def test_fast_encoder_escapes_every_code_point_as_the_reference_does() -> None:
    for start in range(0, 0x110000, 0x1000):
        text = "".join(chr(c) for c in range(start, start + 0x1000) if not 0xD800 <= c <= 0xDFFF)
        assert canonical_json(text) == rfc8785.dumps(text)
        assert canonical_json({text: [text]}) == rfc8785.dumps({text: [text]})


def test_keys_sort_by_utf16_code_units_on_the_fast_path() -> None:
    keys = ["\ufb33", "\U0001f600", "\uffff", "\ue000", "\u20ac", "a", "\U00010000", "z"]
    value = {k: i for i, k in enumerate(keys)}
    assert canonical_json(value) == rfc8785.dumps(value)


def test_event_shapes_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # A regression guard for speed: custody events without floats never reach the reference.
    def reference(value: Any) -> bytes:
        raise AssertionError("the reference implementation was used")

    document = {
        "v": 1,
        "station": "station-1",
        "seq": 41,
        "subject": {"kind": "clip", "id": "1da9e1cc"},
        "data": {"flags": [], "probe_error": None, "important": True, "path": "DCIM/\u674e.MP4"},
    }
    expected = canonical_json(document)
    monkeypatch.setattr(rfc8785, "dumps", reference)
    assert canonical_json(document) == expected


def _random_event(rng: random.Random) -> CustodyEvent:
    def text() -> Any:
        return _random_string(rng) if rng.random() < 0.97 else rng.choice([Kind.CLIP, 7, None])

    data = _random_value(rng)
    return CustodyEvent(
        type=text(),
        subject_kind=text(),
        subject_id=text(),
        actor=text(),
        reason=text(),
        sha256=rng.choice([None, "ab" * 32, text()]),
        data=data if isinstance(data, dict) and rng.random() < 0.9 else {"value": data},
    )


def _first_entry(event: CustodyEvent, *, station: str, seq: int, time: datetime) -> bytes:
    return encode_entries([event], station_id=station, first_seq=seq, time=time)[0]


def test_entries_are_the_canonical_json_of_their_documents() -> None:
    # encode_entries writes the envelope's keys in order instead of sorting them: the bytes,
    # and the errors, must be those of canonical_json of the entry's document.
    rng = random.Random(9162)
    when = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    for i in range(5_000):
        event = _random_event(rng)
        station = rng.choice(["station-1", _random_string(rng)])
        expected = _outcome(
            canonical_json, entry_document(event, station_id=station, seq=i, time=when)
        )
        got = _outcome(functools.partial(_first_entry, station=station, seq=i, time=when), event)
        assert got == expected, event
