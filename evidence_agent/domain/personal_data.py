"""Personal data taken out of a notice before publication: ID numbers, phones, addresses, accounts, persons."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# Digits next to CJK text have no \b between them (both are \w): digit runs are bounded by
# look-arounds instead, so that a number inside a longer one is never half taken out.
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")
_BANK_ACCOUNT = re.compile(r"(?<!\d)(?:\d{16,19}|\d{4}(?:[ -]\d{4}){3}(?:[ -]\d{1,4})?)(?!\d)")
_PHONE = re.compile(
    r"(?<!\d)(?:(?:\+?86[- ]?)?1[3-9]\d(?:[- ]?\d{4}){2}|0\d{2,3}-\d{7,8}(?:-\d{1,6})?)(?!\d)"
)
# An address after its label (住址, 地址, Address, with or without a colon) up to the end of
# the clause; full-width punctuation is written as escapes.
_LABELLED_ADDRESS = re.compile(
    r"((?:家庭住址|住址|地址|住所|居住地|经常居住地|address)\s*[:\uff1a]?\s*)"
    r"[^\uff0c,\u3002\uff1b;\n)\uff09]+",
    re.IGNORECASE,
)
# An address written without a label: a road, street or village followed by a house number.
_STREET_ADDRESS = re.compile(
    r"[\u4e00-\u9fa5A-Za-z0-9]{0,24}?(?:路|街|巷|弄|大道|村)\d+号"
    r"(?:[\u4e00-\u9fa5\d]{0,12}?(?:室|栋|幢|楼|单元))?"
)

REDACTED = "\uff0a"  # a full-width asterisk, as wide as the CJK text it stands for


@dataclass(frozen=True)
class Redacted:
    text: str
    counts: dict[str, int]  # pieces taken out, by kind


def masked_name(name: str) -> str:
    """A natural person's name as notices show it: the surname and 某 (张三 -> 张某)."""
    return f"{name[0]}某" if name else name


def redact(text: str, persons: Iterable[str] = ()) -> Redacted:
    """The text with every piece of personal data replaced; persons named are masked.

    The order matters: an 18-digit ID number also looks like a bank account, and a phone
    number may sit inside an address."""
    counts: Counter[str] = Counter()

    def sub(pattern: re.Pattern[str], kind: str, value: str, keep_group: bool = False) -> str:
        def replace(match: re.Match[str]) -> str:
            counts[kind] += 1
            return (match.group(1) if keep_group else "") + REDACTED * 3

        return pattern.sub(replace, value)

    out = sub(_ID_NUMBER, "id_number", text)
    out = sub(_BANK_ACCOUNT, "bank_account", out)
    out = sub(_PHONE, "phone", out)
    out = sub(_LABELLED_ADDRESS, "address", out, keep_group=True)
    out = sub(_STREET_ADDRESS, "address", out)
    # Longest names first: 张三丰 must not be left as 张某丰 by masking 张三 before it.
    for name in sorted({p.strip() for p in persons if p.strip()}, key=len, reverse=True):
        found = out.count(name)
        if found:
            counts["person"] += found
            out = out.replace(name, masked_name(name))
    return Redacted(out, dict(sorted(counts.items())))


def personal_data_left(text: str, persons: Iterable[str] = ()) -> list[str]:
    """What in `text` still looks like personal data (none in a redacted text)."""
    left = [
        m.group(0)
        for pattern in (_ID_NUMBER, _BANK_ACCOUNT, _PHONE, _STREET_ADDRESS)
        for m in pattern.finditer(text)
    ]
    left += [name for name in persons if len(name) > 1 and name in text]
    return left
