"""Tests of C2SP signed notes against the vectors of golang.org/x/mod/sumdb/note."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from evidence_agent.custody.signed_note import (
    Ed25519Signer,
    Ed25519Verifier,
    NoteSignature,
    is_valid_key_name,
    key_id,
    open_note,
    public_key_pem,
    sign_note,
    strict_b64decode,
    verifier_key,
)
from evidence_agent.errors import InputError, IntegrityError

# From golang.org/x/mod, sumdb/note/note_test.go (TestNewVerifier, TestNewSigner, TestSign,
# TestOpen): keys, text and signature lines copied exactly.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngo"
    "tpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLo"
    "x33WWd1RvMc+QQ=\n"
)
PETER_SIGNATURE = base64.b64decode(
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)[4:]

# The example of c2sp.org/signed-note: its key is not published, so it can only be parsed.
SPEC_EXAMPLE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed \u00e8 subito sera.\n"
    "\n"
    "\u2014 quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMo"
    "uFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)


@pytest.fixture
def peter() -> Ed25519Verifier:
    return Ed25519Verifier.from_key_string(PETER_VKEY)


@pytest.fixture
def enoch() -> Ed25519Verifier:
    return Ed25519Verifier.from_key_string(ENOCH_VKEY)


def test_sign_reproduces_the_go_signature() -> None:
    signer = Ed25519Signer.from_key_string(PETER_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_id == 0xC74F20A3
    assert signer.verifier.key_string() == PETER_VKEY
    assert signer.key_string() == PETER_SKEY
    assert sign_note(TEXT, signer) == TEXT + "\n" + PETER_SIG


def test_key_helpers_agree_with_the_go_keys(peter: Ed25519Verifier) -> None:
    assert key_id("PeterNeumann", peter.public_key) == 0xC74F20A3
    assert verifier_key("PeterNeumann", peter.public_key) == PETER_VKEY
    assert peter.key_string() == PETER_VKEY
    pem = public_key_pem(peter.public_key)
    assert pem == peter.public_key_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    loaded = load_pem_public_key(pem.encode("ascii"))
    assert isinstance(loaded, Ed25519PublicKey)
    assert loaded.public_bytes_raw() == peter.public_key
    with pytest.raises(InputError):
        public_key_pem(peter.public_key[:-1])
    with pytest.raises(InputError):
        verifier_key("PeterNeumann", peter.public_key[:-1])


def test_open_one_verified_one_unknown(peter: Ed25519Verifier) -> None:
    opened = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter])
    assert opened.text == TEXT
    assert opened.signatures == (NoteSignature("PeterNeumann", 0xC74F20A3, PETER_SIGNATURE),)
    text, signatures = opened  # also a plain (text, signatures) pair
    assert text == TEXT
    assert len(signatures) == 1


def test_open_both_verified(peter: Ed25519Verifier, enoch: Ed25519Verifier) -> None:
    opened = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter, enoch])
    assert [(s.name, s.key_id) for s in opened.signatures] == [
        ("PeterNeumann", 0xC74F20A3),
        ("EnochRoot", 0xAF0CFE78),
    ]


def test_open_with_only_unknown_signatures_fails(peter: Ed25519Verifier) -> None:
    with pytest.raises(IntegrityError, match="no signature from a trusted key"):
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    with pytest.raises(IntegrityError, match="no signature from a trusted key"):
        open_note(SPEC_EXAMPLE, [peter])


def test_open_duplicated_signatures(peter: Ed25519Verifier) -> None:
    enoch_altered = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    note = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_altered
    opened = open_note(note, [peter])
    assert len(opened.signatures) == 1


def test_open_rejects_too_many_signatures(peter: Ed25519Verifier) -> None:
    with pytest.raises(InputError, match="more than 100"):
        open_note(TEXT + "\n" + PETER_SIG * 101, [peter])
    with pytest.raises(InputError, match="more than 100"):
        open_note(TEXT + "\n" + PETER_SIG * 101, [])
    assert open_note(TEXT + "\n" + PETER_SIG * 16, [peter]).text == TEXT


def test_open_rejects_an_invalid_signature(peter: Ed25519Verifier) -> None:
    with pytest.raises(IntegrityError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], [peter])


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        "\ud800" + TEXT + "\n" + PETER_SIG,  # not encodable as UTF-8 (Go's test uses 0xff)
        TEXT
        + "\n"
        + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvq"
        "fqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        # Beyond the Go list: non-canonical base64, too-short signature, tab, CR.
        TEXT + "\n" + PETER_SIG.replace("AM=", "AN="),
        TEXT + "\n" + "\u2014 PeterNeumann AAAA\n",
        TEXT + "\n" + PETER_SIG.replace(" x08", "\tx08"),
        TEXT.replace("\n", "\r\n", 1) + "\n" + PETER_SIG,
        "",
    ],
)
def test_open_rejects_malformed_notes(note: str, peter: Ed25519Verifier) -> None:
    with pytest.raises(InputError, match="malformed note"):
        open_note(note, [peter])


def test_tampered_text_fails(peter: Ed25519Verifier) -> None:
    note = TEXT + "\n" + PETER_SIG
    for i, char in enumerate(TEXT):
        if char == "\n":
            continue
        altered = note[:i] + chr(ord(char) ^ 1) + note[i + 1 :]
        with pytest.raises(IntegrityError):
            open_note(altered, [peter])


def test_swapped_key_fails(peter: Ed25519Verifier) -> None:
    note = TEXT + "\n" + PETER_SIG
    # Another key under another name: the signature is unknown, so nothing verifies.
    with pytest.raises(IntegrityError, match="no signature from a trusted key"):
        open_note(note, [Ed25519Signer.generate("PeterNeumann").verifier])

    # A forger who copies Peter's name and key ID but holds another key.
    class Impostor:
        def __init__(self) -> None:
            self._signer = Ed25519Signer.generate("PeterNeumann")

        @property
        def name(self) -> str:
            return "PeterNeumann"

        @property
        def key_id(self) -> int:
            return peter.key_id

        def sign(self, message: bytes) -> bytes:
            return self._signer.sign(message)

    with pytest.raises(IntegrityError, match="invalid signature"):
        open_note(sign_note(TEXT, Impostor()), [peter])


def test_new_verifier_rejects_every_mangling() -> None:
    # TestNewVerifier: every proper substring and every single-byte increment must fail.
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(InputError):
                    Ed25519Verifier.from_key_string(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(InputError):
            Ed25519Verifier.from_key_string(mangled)
    # Wrong-length key and unknown algorithm, each with a key ID adjusted to match.
    with pytest.raises(InputError):
        Ed25519Verifier.from_key_string(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(InputError, match="signature type"):
        Ed25519Verifier.from_key_string(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
    with pytest.raises(InputError):  # upper-case key ID: not how any tool writes it
        Ed25519Verifier.from_key_string(PETER_VKEY.replace("c74f20a3", "C74F20A3"))


def test_new_signer_rejects_every_mangling() -> None:
    # TestNewSigner: every proper substring and every single-byte increment must fail.
    for i in range(len(PETER_SKEY) + 1):
        for j in range(i + 1, len(PETER_SKEY) + 1):
            if (i, j) != (0, len(PETER_SKEY)):
                with pytest.raises(InputError):
                    Ed25519Signer.from_key_string(PETER_SKEY[i:j])
    for i in range(len(PETER_SKEY)):
        mangled = PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1 :]
        with pytest.raises(InputError):
            Ed25519Signer.from_key_string(mangled)


def test_signer_errors_and_repr_never_show_the_private_key() -> None:
    signer = Ed25519Signer.from_key_string(PETER_SKEY)
    secret = PETER_SKEY.rsplit("+", 1)[1]
    assert secret not in repr(signer)
    mangled = PETER_SKEY.replace("c74f20a3", "c74f20a4")
    with pytest.raises(InputError) as caught:
        Ed25519Signer.from_key_string(mangled)
    assert secret not in str(caught.value)


def test_generated_keys_round_trip() -> None:
    signer = Ed25519Signer.generate("example.org/station-7")
    again = Ed25519Signer.from_key_string(signer.key_string())
    assert again.verifier == signer.verifier
    verifier = Ed25519Verifier.from_key_string(signer.verifier.key_string())
    note = sign_note("hello\n\nworld\n\n", signer)  # blank lines inside and at the end of text
    assert open_note(note, [verifier]).text == "hello\n\nworld\n\n"


def test_sign_rejects_bad_text_and_names() -> None:
    signer = Ed25519Signer.from_key_string(PETER_SKEY)
    for text in ["abc", "", "a\x01b\n", "a\rb\n", "\ud800\n"]:
        with pytest.raises(InputError):
            sign_note(text, signer)
    with pytest.raises(InputError, match="key name"):
        Ed25519Signer.generate("bad name")
    with pytest.raises(InputError, match="key name"):
        Ed25519Signer.generate("a+b")


def test_ambiguous_verifiers_are_rejected(peter: Ed25519Verifier) -> None:
    class Twin:
        name = peter.name
        key_id = peter.key_id

        def verify(self, message: bytes, signature: bytes) -> bool:
            return True

    with pytest.raises(InputError, match="ambiguous"):
        open_note(TEXT + "\n" + PETER_SIG, [peter, Twin()])
    # The same key twice is not ambiguous.
    assert open_note(TEXT + "\n" + PETER_SIG, [peter, peter]).text == TEXT


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("PeterNeumann", True),
        ("example.org/station-7", True),
        ("caf\u00e9", True),
        ("", False),
        ("a b", False),
        ("a+b", False),
        ("a\u00a0b", False),  # no-break space
        ("a\u2003b", False),  # em space
        ("a\u3000b", False),  # ideographic space
        ("a\nb", False),
        ("\ud800", False),
    ],
)
def test_key_name_rules(name: str, valid: bool) -> None:
    assert is_valid_key_name(name) is valid


def test_strict_base64() -> None:
    assert strict_b64decode("AAEC") == b"\x00\x01\x02"
    assert strict_b64decode("") == b""
    assert strict_b64decode("AAE=") == b"\x00\x01"
    for bad in ["AAE", "AAF=", "AA==AA==", "AA E", "AA\u00e9=", "AA-_"]:
        assert strict_b64decode(bad) is None, bad
