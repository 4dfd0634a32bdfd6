"""Clip states, dock states and ingest outcomes: the catalog's and the JSON output's words for them."""

from __future__ import annotations

from enum import StrEnum


class ClipState(StrEnum):
    """Where a catalogued clip's content is (the catalog's `clips.state`)."""

    SPOOLED = "spooled"  # only in the spool: the store step is still owed
    STORED = "stored"  # written once to the object store and verified there
    DELETED = "deleted"  # removed by an approved deletion; the row and its hash stay


class DockState(StrEnum):
    """How a dock session stands or ended (the catalog's `dock_sessions.state`)."""

    RUNNING = "running"
    FINISHED = "finished"  # every file was read or reported as not ingested
    FAILED = "failed"  # an error ended it, or the volume could not be mounted
    INTERRUPTED = "interrupted"  # unplugged, or the agent stopped: the next dock resumes
    REFUSED = "refused"  # USB storage that is not a known recorder: never read
    # No recorder could be named (no identity file, no serial in the file names, not enrolled):
    # nothing read yet; it waits for an identity file or an operator (`dock identify`).
    UNIDENTIFIED = "unidentified"


class ClipOutcome(StrEnum):
    """What the ingest of a volume did with one media file (`outcome` in `ingest --json`)."""

    NEW = "new"  # a new clip was catalogued
    DUPLICATE = "duplicate"  # its content was already catalogued: no second clip
    ALREADY_INGESTED = "already_ingested"  # this recorder's earlier dock took this very file
