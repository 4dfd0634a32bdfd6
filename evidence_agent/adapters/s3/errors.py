"""Errors of the S3 store that callers branch on; importing them loads neither boto3 nor botocore."""

from __future__ import annotations

from evidence_agent.errors import StorageError


class StoreUnavailableError(StorageError):
    """The store could not be reached, or dropped the connection, even after retries.

    Transient by nature: the upload queue keeps the clip in the spool and tries again later;
    an interrupted multipart upload resumes from its state file."""


class ObjectLockedError(StorageError):
    """The store keeps an object under Object Lock (a retention date not yet passed, or a legal
    hold): it was not deleted, and nothing else under its key was either."""
