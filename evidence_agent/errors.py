"""The one error family of the agent: every expected failure, with a user message, a remedy and an exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes are an API: scripts and systemd act on them (documented in the README)."""

    OK = 0
    WARNING = (
        1  # finished, but something needs a person's attention (a flagged clip, a skipped file)
    )
    ERROR = 2  # could not do what was asked: bad input, bad configuration, a service away
    INTEGRITY = 3  # evidence or its custody chain failed verification: never a warning
    CONFIG = 4  # the configuration is invalid
    PERMISSION = 5  # the caller's role does not allow the action
    INCOMPLETE = 6  # a completeness check found gaps (case check)


class EvidenceError(Exception):
    """Base of every expected failure; the CLI turns it into a message and an exit code."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, remedy: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy

    def __str__(self) -> str:
        return self.message if self.remedy is None else f"{self.message} ({self.remedy})"


class InputError(EvidenceError):
    """Input that cannot be used as given: a path, an argument, a malformed file."""


class ConfigError(EvidenceError):
    """The configuration has one or more bad keys; the message names every one."""

    exit_code = ExitCode.CONFIG


class StorageError(EvidenceError):
    """The spool, the object store or the catalog could not do what was asked."""


class IntegrityError(EvidenceError):
    """Evidence or custody data does not match what was recorded: tampering or corruption."""

    exit_code = ExitCode.INTEGRITY


class NotFoundError(EvidenceError):
    """A clip, case, recorder or officer that the catalog does not know."""


class PermissionDeniedError(EvidenceError):
    """The caller's role does not allow the action; the refusal itself is a custody event."""

    exit_code = ExitCode.PERMISSION


class IncompleteError(EvidenceError):
    """A completeness check found gaps that a legal reviewer must see."""

    exit_code = ExitCode.INCOMPLETE
