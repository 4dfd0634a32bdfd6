"""The station's Ed25519 signing key: made at first start, private file mode 0600, never logged."""

from __future__ import annotations

from pathlib import Path

from evidence_agent.custody.signed_note import Ed25519Signer
from evidence_agent.errors import IntegrityError, StorageError
from evidence_agent.io.atomic import write_atomically

PRIVATE_KEY_FILE = "station.key"  # C2SP note signer key string (secret)
VERIFIER_KEY_FILE = "station.vkey"  # C2SP note verifier key string (public)
PUBLIC_PEM_FILE = "station.pub.pem"  # the same public key as SubjectPublicKeyInfo PEM


def station_exists(key_dir: Path) -> bool:
    """Whether a station was started with this key directory (its signing key was made)."""
    return (key_dir / PRIVATE_KEY_FILE).exists()


def load_or_create_signer(key_dir: Path, name: str) -> tuple[Ed25519Signer, bool]:
    """The station's signer, and whether it was just made."""
    private = key_dir / PRIVATE_KEY_FILE
    created = False
    try:
        key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not private.exists():
            signer = Ed25519Signer.generate(name)
            # Linked into place whole: a crash never leaves a cut key, and never a second one.
            write_atomically(
                private, signer.key_string().encode() + b"\n", mode=0o600, replace=False
            )
            created = True
        text = private.read_text(encoding="ascii").strip()
    except FileExistsError:
        text = private.read_text(encoding="ascii").strip()  # another process made it first
    except OSError as e:
        raise StorageError(
            f"cannot read or create the station key in {key_dir}: {e.strerror}",
            remedy="set paths.key_dir (or paths.data_dir) to a directory only the agent can write",
        ) from e
    mode = private.stat().st_mode & 0o777
    if mode & 0o077:
        raise StorageError(
            f"station key {private} is readable by others (mode {mode:o})",
            remedy=f"chmod 600 {private}",
        )
    signer = Ed25519Signer.from_key_string(text)
    if signer.name != name:
        raise IntegrityError(
            f"station key {private} is for log {signer.name!r}, not {name!r}",
            remedy="a data directory belongs to one station id; check station.id",
        )
    _write_public(key_dir, signer)
    return signer, created


def _write_public(key_dir: Path, signer: Ed25519Signer) -> None:
    for file, text in (
        (VERIFIER_KEY_FILE, signer.verifier.key_string() + "\n"),
        (PUBLIC_PEM_FILE, signer.verifier.public_key_pem()),
    ):
        path = key_dir / file
        if not path.exists() or path.read_text(encoding="ascii") != text:
            write_atomically(path, text.encode(), mode=0o644)
