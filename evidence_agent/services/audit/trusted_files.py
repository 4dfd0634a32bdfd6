"""The auditor's own anchors read from files: a checkpoint kept from an earlier audit, a pinned key."""

from __future__ import annotations

from pathlib import Path

from evidence_agent.custody import bundle as bundle_format
from evidence_agent.custody.signed_note import Ed25519Verifier
from evidence_agent.errors import InputError


def read_trusted_checkpoint(path: Path | None) -> str | None:
    """The text of the trusted checkpoint file; its signature is checked by step 5."""
    if path is None:
        return None
    try:
        with path.open("rb") as f:
            raw = f.read(bundle_format.MAX_SMALL_FILE + 1)
    except OSError as e:
        raise InputError(f"cannot read the trusted checkpoint {path}: {e.strerror}") from e
    if len(raw) > bundle_format.MAX_SMALL_FILE:
        raise InputError(f"{path} is too large to be a checkpoint")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"the trusted checkpoint {path} is not UTF-8 text") from e


def read_trusted_key(path: Path | None) -> Ed25519Verifier | None:
    """The verifier key the auditor obtained from a channel they trust (station.vkey)."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the trusted key {path}: {e}") from e
    return Ed25519Verifier.from_key_string(text.strip())
