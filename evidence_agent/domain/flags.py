"""Names of the flags a clip or a skipped file can carry; they are part of the JSON output."""

from __future__ import annotations

from enum import StrEnum


class Flag(StrEnum):
    UNREADABLE_MEDIA = "unreadable_media"  # ffprobe could not read it; preserved as evidence anyway
    CHANGED_DURING_COPY = "changed_during_copy"  # size or mtime moved while it was read
    OFFICER_MISMATCH = "officer_mismatch"  # the file name's badge disagrees with the registry
    RECORDER_MISMATCH = "recorder_mismatch"  # the file name's serial disagrees with the recorder
    NO_OFFICER = "no_officer"  # no assignment and no badge: a supervisor must attribute it
    NO_RECORDING_TIME = "no_recording_time"  # neither the name nor the container gave a time
    TIME_FROM_FILE_MTIME = "time_from_file_mtime"  # only the file's mtime gave a time
    FUTURE_TIMESTAMP = (
        "future_timestamp"  # recorded after it was docked: the recorder clock is ahead
    )
    CLOCK_SKEW = "clock_skew"  # the recorder clock was off by more than the threshold
    LATE = "late"  # catalogued more than the limit after the recording ended
    NAME_MISMATCH = "name_mismatch"  # name and container times disagree by more than a minute


class SkipReason(StrEnum):
    SYMLINK = "symlink"
    SPECIAL_FILE = "special_file"  # FIFO, device, socket
    OTHER_FILESYSTEM = "other_filesystem"
    NOT_MEDIA = "not_media"
    EMPTY = "empty"
    UNREADABLE = "unreadable"
    VANISHED = "vanished"
    IDENTITY_FILE = "identity_file"
    TOO_DEEP = "too_deep"  # a directory nested deeper than any recorder writes, not entered
