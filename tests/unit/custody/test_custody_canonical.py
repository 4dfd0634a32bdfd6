"""Tests of RFC 8785 canonical JSON for custody events."""

from __future__ import annotations

import math
from typing import Any

import pytest

from evidence_agent.custody.canonical import canonical_json
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
