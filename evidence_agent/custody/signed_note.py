"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys: key strings, signing and opening."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence_agent.errors import InputError, IntegrityError

ED25519_ALGORITHM = 0x01  # signature type byte assigned by the signed-note spec
ED25519_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
# The spec requires accepting at least 16; golang.org/x/mod/sumdb/note stops at 100, and so do we
# so that a hostile note cannot make a verifier parse without end.
MAX_SIGNATURES = 100

_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # every ASCII control except newline


def is_valid_key_name(name: str) -> bool:
    """Report whether ``name`` is a key name: non-empty UTF-8 with no Unicode space and no '+'."""
    if not name or "+" in name or not _is_utf8(name):
        return False
    return not any(c.isspace() or c < " " for c in name)


def key_id(name: str, public_key: bytes) -> int:
    """Return the key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4] as a big-endian uint32."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ED25519_ALGORITHM]) + public_key
    ).digest()
    return int.from_bytes(digest[:4], "big")


def verifier_key(name: str, public_key: bytes) -> str:
    """Return the verifier key string ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
    return Ed25519Verifier(name, public_key).key_string()


def public_key_pem(public_key: bytes) -> str:
    """Return a raw 32-byte Ed25519 public key as PEM (SubjectPublicKeyInfo), for OpenSSL users."""
    if len(public_key) != ED25519_KEY_SIZE:
        raise InputError(
            f"an Ed25519 public key is {ED25519_KEY_SIZE} bytes, not {len(public_key)}"
        )
    return _pem(Ed25519PublicKey.from_public_bytes(public_key))


def strict_b64decode(value: str) -> bytes | None:
    """Decode standard base64 (RFC 4648 section 4), or None unless ``value`` is its canonical form.

    Canonical only (padding present, unused bits zero) so each value has one spelling.
    """
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == value else None


class NoteSigner(Protocol):
    """Anything that signs note text under a key name and key ID (a file key, an HSM, a KMS)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def sign(self, message: bytes) -> bytes: ...


class NoteVerifier(Protocol):
    """Anything that checks signatures made under a key name and key ID."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, message: bytes, signature: bytes) -> bool: ...


@dataclass(frozen=True)
class Ed25519Verifier:
    """An Ed25519 public key under a key name, as in a verifier key string."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise InputError(
                f"invalid key name {self.name!r}",
                remedy="use a non-empty name without spaces or '+', such as example.org/station-7",
            )
        if len(self.public_key) != ED25519_KEY_SIZE:
            raise InputError(
                f"an Ed25519 public key is {ED25519_KEY_SIZE} bytes, not {len(self.public_key)}"
            )
        object.__setattr__(self, "key_id", key_id(self.name, self.public_key))
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public_key))

    @classmethod
    def from_key_string(cls, vkey: str) -> Ed25519Verifier:
        """Parse ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        name, _, rest = vkey.partition("+")
        id_hex, _, key64 = rest.partition("+")
        key = strict_b64decode(key64)
        if not is_valid_key_name(name) or not _KEY_ID_HEX.fullmatch(id_hex) or not key:
            raise InputError(
                "malformed verifier key",
                remedy="expected <name>+<8 hex digits>+<base64 key>, as printed by the key command",
            )
        if key[0] != ED25519_ALGORITHM:
            raise InputError(f"verifier key {name} uses signature type {key[0]}, not Ed25519 (1)")
        if len(key) != 1 + ED25519_KEY_SIZE:
            raise InputError(f"verifier key {name} does not hold a 32-byte Ed25519 public key")
        verifier = cls(name, key[1:])
        if verifier.key_id != int(id_hex, 16):
            raise InputError(
                f"verifier key {name}: key ID {id_hex} does not match the name and key "
                f"(expected {verifier.key_id:08x})",
                remedy="the key string was altered; copy it again from its source",
            )
        return verifier

    def key_string(self) -> str:
        """Return the verifier key string."""
        key64 = base64.b64encode(bytes([ED25519_ALGORITHM]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id:08x}+{key64}"

    def public_key_pem(self) -> str:
        """Return the public key as PEM (SubjectPublicKeyInfo)."""
        return _pem(self._key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Report whether ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != ED25519_SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Ed25519Signer:
    """An Ed25519 private key under a key name; its key string is a secret."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, name: str, seed: bytes) -> None:
        if len(seed) != ED25519_KEY_SIZE:
            raise InputError(f"an Ed25519 private key seed is {ED25519_KEY_SIZE} bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._verifier = Ed25519Verifier(name, self._key.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, name: str) -> Ed25519Signer:
        """Return a new random key under ``name``."""
        return cls(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_key_string(cls, skey: str) -> Ed25519Signer:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``."""
        # Messages never echo the string: it is the private key.
        malformed = InputError(
            "malformed signer key",
            remedy="expected PRIVATE+KEY+<name>+<8 hex digits>+<base64 key>",
        )
        if not skey.startswith(_PRIVATE_KEY_PREFIX):
            raise malformed
        name, _, rest = skey[len(_PRIVATE_KEY_PREFIX) :].partition("+")
        id_hex, _, key64 = rest.partition("+")
        key = strict_b64decode(key64)
        if not is_valid_key_name(name) or not _KEY_ID_HEX.fullmatch(id_hex) or not key:
            raise malformed
        if key[0] != ED25519_ALGORITHM:
            raise InputError(f"signer key {name} uses signature type {key[0]}, not Ed25519 (1)")
        if len(key) != 1 + ED25519_KEY_SIZE:
            raise InputError(f"signer key {name} does not hold a 32-byte Ed25519 seed")
        signer = cls(name, key[1:])
        # The ID names the public key, so it can only be checked after deriving that key.
        if signer.key_id != int(id_hex, 16):
            raise InputError(
                f"signer key {name}: key ID {id_hex} does not match the name and key",
                remedy="the key string was altered; restore it from its backup",
            )
        return signer

    @property
    def name(self) -> str:
        """The key name."""
        return self._verifier.name

    @property
    def key_id(self) -> int:
        """The key ID, shared with the verifier."""
        return self._verifier.key_id

    @property
    def verifier(self) -> Ed25519Verifier:
        """The matching public key."""
        return self._verifier

    def key_string(self) -> str:
        """Return the secret signer key string."""
        seed = self._key.private_bytes_raw()
        key64 = base64.b64encode(bytes([ED25519_ALGORITHM]) + seed).decode("ascii")
        return f"{_PRIVATE_KEY_PREFIX}{self.name}+{self.key_id:08x}+{key64}"

    def sign(self, message: bytes) -> bytes:
        """Return the Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"Ed25519Signer(name={self.name!r}, key_id={self.key_id:08x})"


@dataclass(frozen=True)
class NoteSignature:
    """One verified signature line of a note."""

    name: str
    key_id: int
    signature: bytes  # the algorithm's signature, without the 4-byte key ID


class OpenedNote(NamedTuple):
    """The text of a note whose signatures were checked, with the signatures that verified."""

    text: str
    signatures: tuple[NoteSignature, ...]


def sign_note(text: str, signer: NoteSigner) -> str:
    """Return ``text`` signed by ``signer`` as a signed note."""
    if not text.endswith("\n") or not _is_utf8(text) or _FORBIDDEN_CONTROL.search(text):
        raise InputError(
            "note text must be UTF-8 ending in a newline, without control characters other "
            "than newline"
        )
    if not is_valid_key_name(signer.name):
        raise InputError(f"signer has an invalid key name {signer.name!r}")
    signature = signer.sign(text.encode("utf-8"))
    payload = signer.key_id.to_bytes(4, "big") + signature
    line = f"{_SIGNATURE_PREFIX}{signer.name} {base64.b64encode(payload).decode('ascii')}\n"
    return f"{text}\n{line}"


def open_note(note: str, verifiers: Iterable[NoteVerifier]) -> OpenedNote:
    """Check a signed note against trusted keys; return its text and the signatures that verified.

    Signatures from unknown keys are ignored, as the spec requires. Raises InputError for a
    malformed note and IntegrityError if a known key's signature fails or none verifies.
    """
    known = _index_verifiers(verifiers)
    # 1. The whole note must be UTF-8 without control characters other than newline.
    if not _is_utf8(note) or _FORBIDDEN_CONTROL.search(note):
        raise InputError("malformed note: not UTF-8, or contains control characters")
    # 2. The text is everything up to the last blank line; the signature block follows it.
    split = note.rfind("\n\n")
    if split < 0:
        raise InputError("malformed note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise InputError("malformed note: no signature lines, or the last one lacks a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise InputError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    message = text.encode("utf-8")

    # 3. Parse every line; verify every signature whose name and key ID are known.
    verified: dict[tuple[str, int], NoteSignature] = {}
    for number, line in enumerate(lines, start=1):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise InputError(f"malformed note: signature line {number} does not start with '— '")
        name, _, sig64 = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        raw = strict_b64decode(sig64)
        if not is_valid_key_name(name) or raw is None or len(raw) < 5:
            raise InputError(f"malformed note: signature line {number} is not '— <name> <base64>'")
        key = (name, int.from_bytes(raw[:4], "big"))
        verifier = known.get(key)
        if verifier is None:
            continue  # the spec requires ignoring unknown keys (rotation, witnesses)
        if not verifier.verify(message, raw[4:]):
            raise IntegrityError(
                f"invalid signature for key {name}+{key[1]:08x}: the note was altered "
                "or signed by another key"
            )
        verified.setdefault(key, NoteSignature(name, key[1], raw[4:]))

    # 4. At least one trusted key must have signed.
    if not verified:
        wanted = ", ".join(f"{n}+{i:08x}" for n, i in known) or "none given"
        raise IntegrityError(
            "note has no signature from a trusted key",
            remedy=f"trusted keys: {wanted}; check that the right verifier key is configured",
        )
    return OpenedNote(text, tuple(verified.values()))


def _index_verifiers(verifiers: Iterable[NoteVerifier]) -> dict[tuple[str, int], NoteVerifier]:
    known: dict[tuple[str, int], NoteVerifier] = {}
    for verifier in verifiers:
        key = (verifier.name, verifier.key_id)
        existing = known.setdefault(key, verifier)
        # Two different keys under one name and ID would make a signature ambiguous.
        if existing is not verifier and existing != verifier:
            raise InputError(f"ambiguous verifier keys: two keys are named {key[0]}+{key[1]:08x}")
    return known


def _pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True
