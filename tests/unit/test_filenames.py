"""File-name parsing with the default recorder pattern and with custom vendor patterns."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from evidence_agent.config_keys import DEFAULT_FILENAME_PATTERN
from evidence_agent.domain.filenames import FilenameFacts, compile_patterns, parse_filename

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT = compile_patterns([DEFAULT_FILENAME_PATTERN])


def test_default_pattern_reads_every_field_and_converts_local_time_to_utc() -> None:
    facts = parse_filename("A123456_100231_20261121180005_0007.MP4", DEFAULT, SHANGHAI)
    assert facts.serial == "A123456"
    assert facts.badge == "100231"
    assert facts.start == datetime(2026, 11, 21, 10, 0, 5, tzinfo=UTC)
    assert facts.sequence == 7
    assert facts.important is False
    assert facts.pattern == DEFAULT_FILENAME_PATTERN


def test_important_marker() -> None:
    facts = parse_filename("A123456_100231_20261121180005_12_IMP.mp4", DEFAULT, SHANGHAI)
    assert facts.important is True
    assert facts.sequence == 12


@pytest.mark.parametrize(
    "name",
    [
        "A12345_100231_20261121180005_1.MP4",  # serial too short
        "A123456_10023_20261121180005_1.MP4",  # badge too short
        "A123456_100231_2026112118000_1.MP4",  # 13-digit time
        "A123456_100231_20261121180005_1234567.MP4",  # sequence too long
        "A123456_100231_20261121180005_1_imp.MP4",  # marker is case-sensitive
        "A123456_100231_20261121180005_1",  # no extension
        "LOG.TXT",
        "",
    ],
)
def test_names_that_do_not_match_give_empty_facts(name: str) -> None:
    assert parse_filename(name, DEFAULT, SHANGHAI) == FilenameFacts()


def test_impossible_time_in_a_matching_name_gives_no_start() -> None:
    facts = parse_filename("A123456_100231_20230229250000_1.MP4", DEFAULT, SHANGHAI)
    assert facts.serial == "A123456"
    assert facts.start is None


def test_leap_day_is_a_valid_time() -> None:
    facts = parse_filename("A123456_100231_20240229235959_1.MP4", DEFAULT, UTC)
    assert facts.start == datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)


def test_same_name_gives_a_different_utc_time_in_another_zone() -> None:
    name = "A123456_100231_20261121180005_1.MP4"
    shanghai = parse_filename(name, DEFAULT, SHANGHAI).start
    utc = parse_filename(name, DEFAULT, UTC).start
    assert shanghai is not None and utc is not None
    assert (utc - shanghai).total_seconds() == 8 * 3600


def test_without_a_recorder_zone_the_time_is_still_aware() -> None:
    facts = parse_filename("A123456_100231_20261121180005_1.MP4", DEFAULT, None)
    assert facts.start is not None
    assert facts.start.tzinfo is UTC


def test_first_matching_pattern_wins_and_shorter_times_are_read() -> None:
    vendor = r"^REC_(?P<start>[0-9]{12})_(?P<serial>[A-Z0-9]+)\.AVI$"
    patterns = compile_patterns([vendor, DEFAULT_FILENAME_PATTERN])
    facts = parse_filename("REC_202611211800_X9.AVI", patterns, UTC)
    assert facts.pattern == vendor
    assert facts.serial == "X9"
    assert facts.badge is None
    assert facts.sequence is None
    assert facts.start == datetime(2026, 11, 21, 18, 0, tzinfo=UTC)


def test_date_only_time() -> None:
    patterns = compile_patterns([r"^(?P<start>[0-9]{8})_(?P<seq>[0-9]+)\.wav$"])
    facts = parse_filename("20261121_3.wav", patterns, UTC)
    assert facts.start == datetime(2026, 11, 21, tzinfo=UTC)
    assert facts.sequence == 3


def test_time_of_unsupported_length_is_ignored() -> None:
    patterns = compile_patterns([r"^(?P<serial>[A-Z]+)_(?P<start>[0-9]+)\.mp4$"])
    facts = parse_filename("ABC_2026112118.mp4", patterns, UTC)
    assert facts.serial == "ABC"
    assert facts.start is None


def test_empty_groups_are_none() -> None:
    patterns = compile_patterns([r"^(?P<serial>[A-Z]*)_(?P<badge>[0-9]*)\.mp4$"])
    facts = parse_filename("_.mp4", patterns, UTC)
    assert facts.serial is None
    assert facts.badge is None


def test_non_decimal_digit_sequence_gives_no_sequence() -> None:
    patterns = compile_patterns([r"^(?P<serial>[A-Z0-9]+)_(?P<seq>\w+)\.mp4$"])
    assert parse_filename("A1_².mp4", patterns, UTC).sequence is None
