"""C2SP tlog-checkpoints (c2sp.org/tlog-checkpoint): the signed tree heads of the custody log."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from evidence_agent.custody.merkle import HASH_SIZE
from evidence_agent.custody.signed_note import (
    Ed25519Verifier,
    NoteSigner,
    NoteVerifier,
    open_note,
    sign_note,
    strict_b64decode,
)
from evidence_agent.errors import InputError, IntegrityError

MAX_TREE_SIZE = 2**64 - 1  # tree sizes are uint64 in every other implementation
# ASCII digits only (str.isdigit and int() also take other scripts' digits), no leading zero.
_TREE_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_CONTROL = re.compile(r"[\x00-\x1f]")


def log_origin(station_id: str) -> str:
    """The checkpoint origin line of a station's log: catalog.custody_log's, which signs it."""
    return f"evidence-agent/{station_id}"


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's origin, its number of leaves and its RFC 9162 root hash."""

    origin: str
    size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        if not self.origin or _CONTROL.search(self.origin) or not _is_utf8(self.origin):
            raise InputError(
                "checkpoint origin must be a non-empty line of UTF-8 text",
                remedy="use the log's name, such as example.org/station-7",
            )
        size_is_int = isinstance(self.size, int) and not isinstance(self.size, bool)
        if not size_is_int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise InputError(f"checkpoint tree size {self.size!r} is not in 0..2**64-1")
        if len(self.root_hash) != HASH_SIZE:
            raise InputError(
                f"checkpoint root hash is {len(self.root_hash)} bytes, not {HASH_SIZE} (SHA-256)"
            )

    def to_note_body(self) -> str:
        """Return the note text: origin, decimal size, base64 root hash, each ending in LF."""
        root64 = base64.b64encode(self.root_hash).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root64}\n"

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Parse a checkpoint note text strictly; raise InputError for anything else.

        Extension lines, which the spec allows but does not recommend, are rejected: this log
        never writes them and a verifier cannot audit them.
        """
        if not body.endswith("\n"):
            raise InputError("malformed checkpoint: the text must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) != 3:
            raise InputError(
                f"malformed checkpoint: {len(lines)} lines, expected exactly 3 "
                "(origin, tree size, root hash)"
            )
        origin, size_line, root_line = lines
        if not _TREE_SIZE.fullmatch(size_line):
            raise InputError(
                f"malformed checkpoint: tree size {size_line!r} is not a decimal number "
                "without leading zeros"
            )
        root_hash = strict_b64decode(root_line)
        if root_hash is None:
            raise InputError(f"malformed checkpoint: root hash {root_line!r} is not base64")
        return cls(origin, int(size_line), root_hash)


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """Return the checkpoint as a signed note."""
    return sign_note(checkpoint.to_note_body(), signer)


def open_checkpoint(
    note: str, verifier: str | NoteVerifier, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint with the log's key, then parse it.

    ``verifier`` is a verifier key string or a verifier. When ``origin`` is given, the
    checkpoint must be for that log: a valid checkpoint of another log signed by the same key
    would otherwise pass. Raises IntegrityError for a bad or missing signature or another
    origin, InputError for a malformed note or checkpoint.
    """
    if isinstance(verifier, str):
        verifier = Ed25519Verifier.from_key_string(verifier)
    # The spec says the text means nothing until a trusted signature verifies, so check first.
    opened = open_note(note, [verifier])
    checkpoint = Checkpoint.parse(opened.text)
    if origin is not None and checkpoint.origin != origin:
        raise IntegrityError(
            f"checkpoint is for log {checkpoint.origin!r}, not {origin!r}",
            remedy="check that the checkpoint file belongs to this station's log",
        )
    return checkpoint


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True
