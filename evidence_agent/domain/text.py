"""Text people typed or recorders wrote: what may be stored, and how it is shown safely."""

from __future__ import annotations

import re

from evidence_agent.errors import InputError

# C0 and C1 controls, DEL, and lone surrogates (JSON allows them; no UTF-8 store can hold them).
# A newline in a reason forges a row in a printed log; an escape sequence hides one.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def is_plain_text(value: str) -> bool:
    """Whether `value` is free of control characters and lone surrogates."""
    return _UNPRINTABLE.search(value) is None


def check_plain_text(value: str, what: str) -> str:
    """`value` when it is plain text, else an InputError naming the field."""
    if not is_plain_text(value):
        raise InputError(
            f"{what} holds control characters (a newline, tab or escape): {shown(value)}",
            remedy=f"give the {what} on one line, as plain text",
        )
    return value


def shown(value: object) -> str:
    """`value` as text that cannot act on a terminal or forge a line: every control character
    and lone surrogate is written as an escape (\\n, \\x1b, \\ud800)."""
    text = str(value)
    if is_plain_text(text):
        return text
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )
