"""The auditor's own anchors read from files: a checkpoint kept from an earlier audit, a pinned key."""

from __future__ import annotations

from dataclasses import dataclass
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
    return Anchors.read(None, path).verifier()


@dataclass(frozen=True)
class Anchors:
    """The auditor's anchors as text, read by the auditor's own process (through the local API
    the daemon never opens a path a caller chose); `label` names the checkpoint in findings."""

    checkpoint: str | None = None
    key: str | None = None
    label: str = "trusted checkpoint"

    @classmethod
    def read(cls, checkpoint: Path | None, key: Path | None) -> Anchors:
        key_text = None
        if key is not None:
            try:
                key_text = key.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise InputError(f"cannot read the trusted key {key}: {e}") from e
        label = str(checkpoint) if checkpoint else "trusted checkpoint"
        return cls(read_trusted_checkpoint(checkpoint), key_text, label)

    def verifier(self) -> Ed25519Verifier | None:
        return Ed25519Verifier.from_key_string(self.key.strip()) if self.key is not None else None
