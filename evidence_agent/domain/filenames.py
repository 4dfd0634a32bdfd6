"""File-name metadata: recorder serial, badge, start time, sequence and the important marker."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo


@dataclass(frozen=True)
class FilenameFacts:
    serial: str | None = None
    badge: str | None = None
    start: datetime | None = None  # aware, UTC
    sequence: int | None = None
    important: bool = False
    pattern: str | None = None


_TIME_FORMATS = {14: "%Y%m%d%H%M%S", 12: "%Y%m%d%H%M", 8: "%Y%m%d"}


def compile_patterns(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


def parse_filename(
    name: str, patterns: Sequence[re.Pattern[str]], recorder_tz: tzinfo | None
) -> FilenameFacts:
    """First pattern that matches wins; a time in the name is in the recorder's local zone."""
    for pattern in patterns:
        match = pattern.match(name)
        if match is None:
            continue
        groups = match.groupdict()
        start = _parse_time(groups.get("start"), recorder_tz)
        seq_text = groups.get("seq")
        return FilenameFacts(
            serial=groups.get("serial") or None,
            badge=groups.get("badge") or None,
            start=start,
            sequence=int(seq_text)
            if seq_text and seq_text.isdecimal() and seq_text.isascii()
            else None,
            important=bool(groups.get("important")),
            pattern=pattern.pattern,
        )
    return FilenameFacts()


def _parse_time(text: str | None, recorder_tz: tzinfo | None) -> datetime | None:
    if not text or len(text) not in _TIME_FORMATS:
        return None
    try:
        naive = datetime.strptime(text, _TIME_FORMATS[len(text)])  # noqa: DTZ007 (zone set next)
    except ValueError:
        return None
    local = naive.replace(tzinfo=recorder_tz) if recorder_tz else naive.astimezone()
    return local.astimezone(UTC)
