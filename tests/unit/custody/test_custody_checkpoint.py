"""Tests of C2SP tlog-checkpoints: other implementations' vectors, strict parsing, signatures."""

from __future__ import annotations

import base64

import pytest

from evidence_agent.custody.checkpoint import (
    Checkpoint,
    open_checkpoint,
    sign_checkpoint,
)
from evidence_agent.custody.merkle import (
    MerkleAccumulator,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from evidence_agent.custody.signed_note import Ed25519Signer, sign_note
from evidence_agent.errors import InputError, IntegrityError

# A checkpoint signed by Tessera's published test log key. The keys are in
# transparency-dev/tessera (cmd/conformance/posix/README.md, testdata/build_log.sh); the
# signed checkpoint is copied from warpfork/spicytool spicy/parse_test.go.
TESSERA_SKEY = (
    "PRIVATE+KEY+example.com/log/testdata+33d7b496+AeymY/SZAX0jZcJ8enZ5FY1Dz+wTML2yWSkK+9DSF3eg"
)
TESSERA_VKEY = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx"
TESSERA_BODY = "example.com/log/testdata\n100270\nGRV1O0dCqmjjPvYi7CtOT79zb/fPwLNsMFWsynwU8Ac=\n"
TESSERA_NOTE = (
    TESSERA_BODY
    + "\n\u2014 example.com/log/testdata M9e0lkcvy5bAe7rrC8tCyAP+my+CLzswA91zOpBNWVU7qCojkUOHnfdQz"
    "DImoYeYH8G8PJSwOqsx0RkSa261OmKVwwM=\n"
)

# From golang.org/x/mod, sumdb/tlog/note_test.go (TestFormatTree): a tree of size 123456789012
# whose hash is RecordHash("hello world"), i.e. the RFC 6962 leaf hash of "hello world".
GO_TREE_BODY = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"

# The example of c2sp.org/tlog-checkpoint (its key is not published).
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_NOTE = (
    SPEC_BODY
    + "\n\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN"
    "7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)


def test_open_a_checkpoint_signed_by_tessera() -> None:
    checkpoint = open_checkpoint(TESSERA_NOTE, TESSERA_VKEY, origin="example.com/log/testdata")
    assert checkpoint.origin == "example.com/log/testdata"
    assert checkpoint.size == 100270
    assert checkpoint.root_hash == base64.b64decode("GRV1O0dCqmjjPvYi7CtOT79zb/fPwLNsMFWsynwU8Ac=")
    assert checkpoint.to_note_body() == TESSERA_BODY


def test_signing_reproduces_tesseras_signature() -> None:
    signer = Ed25519Signer.from_key_string(TESSERA_SKEY)
    assert sign_checkpoint(Checkpoint.parse(TESSERA_BODY), signer) == TESSERA_NOTE


def test_format_matches_the_go_tree_vector() -> None:
    checkpoint = Checkpoint("go.sum database tree", 123456789012, leaf_hash(b"hello world"))
    assert checkpoint.to_note_body() == GO_TREE_BODY
    assert Checkpoint.parse(GO_TREE_BODY) == checkpoint


def test_spec_example_parses_but_its_unknown_key_is_not_trusted() -> None:
    assert Checkpoint.parse(SPEC_BODY).size == 20852163
    with pytest.raises(IntegrityError, match="no signature from a trusted key"):
        open_checkpoint(SPEC_NOTE, TESSERA_VKEY)


def test_wrong_origin_fails() -> None:
    with pytest.raises(IntegrityError, match=r"not 'example\.org/station-7'"):
        open_checkpoint(TESSERA_NOTE, TESSERA_VKEY, origin="example.org/station-7")


def test_swapped_key_fails() -> None:
    other = Ed25519Signer.generate("example.com/log/testdata")
    with pytest.raises(IntegrityError):
        open_checkpoint(TESSERA_NOTE, other.verifier)


def test_every_altered_character_fails() -> None:
    for i, char in enumerate(TESSERA_BODY):
        if char == "\n":
            continue
        altered = TESSERA_NOTE[:i] + chr(ord(char) ^ 1) + TESSERA_NOTE[i + 1 :]
        # A signature over the original text never verifies over altered text.
        with pytest.raises(IntegrityError):
            open_checkpoint(altered, TESSERA_VKEY)


def test_a_signed_note_that_is_not_a_checkpoint_is_rejected() -> None:
    # A validly signed note whose text is not a checkpoint is malformed input.
    signer = Ed25519Signer.generate("example.org/station-7")
    note = sign_note("example.org/station-7\n01\n" + "A" * 43 + "=\n", signer)
    with pytest.raises(InputError, match="leading zeros"):
        open_checkpoint(note, signer.verifier)


ROOT64 = "GRV1O0dCqmjjPvYi7CtOT79zb/fPwLNsMFWsynwU8Ac="


@pytest.mark.parametrize(
    "body",
    [
        "",
        "\n",
        "example.com/log\n5\n" + ROOT64,  # no final newline
        "example.com/log\n5\n",  # missing root line
        "example.com/log\n5\n" + ROOT64 + "\nextension\n",  # extension line
        "example.com/log\n5\n" + ROOT64 + "\n\n",  # empty extra line
        "\n5\n" + ROOT64 + "\n",  # empty origin
        "example.com/log\n05\n" + ROOT64 + "\n",  # leading zero
        "example.com/log\n00\n" + ROOT64 + "\n",
        "example.com/log\n+5\n" + ROOT64 + "\n",
        "example.com/log\n-5\n" + ROOT64 + "\n",
        "example.com/log\n 5\n" + ROOT64 + "\n",
        "example.com/log\n1_000\n" + ROOT64 + "\n",
        "example.com/log\n0xabcdef\n" + ROOT64 + "\n",  # from Go's TestParseTree
        "example.com/log\n\u0665\n" + ROOT64 + "\n",  # an Arabic-Indic digit
        "example.com/log\n18446744073709551616\n" + ROOT64 + "\n",  # 2**64
        "example.com/log\n" + "9" * 5000 + "\n" + ROOT64 + "\n",
        "example.com/log\n5\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n",  # from Go
        "example.com/log\n5\nGRV1O0dCqmjjPvYi7CtOT79zb/fPwLNsMFWsynwU8Ac\n",  # no padding
        "example.com/log\n5\nGRV1O0dCqmjjPvYi7CtOT79zb/fPwLNsMFWsynwU8Ad=\n",  # non-canonical
        "example.com/log\n5\nAAAA\n",  # 3-byte hash
        "example.com/log\n5\n" + base64.b64encode(bytes(48)).decode() + "\n",  # SHA-384 size
        "example.com/log\n5\n" + ROOT64 + " \n",
        "example.com/log\r\n5\n" + ROOT64 + "\n",
    ],
)
def test_parse_rejects_malformed_checkpoints(body: str) -> None:
    with pytest.raises(InputError, match="checkpoint"):
        Checkpoint.parse(body)


def test_parse_accepts_the_bounds() -> None:
    root = bytes(32)
    assert Checkpoint.parse("o\n0\n" + base64.b64encode(root).decode() + "\n").size == 0
    big = Checkpoint.parse("o\n18446744073709551615\n" + base64.b64encode(root).decode() + "\n")
    assert big.size == 2**64 - 1


def test_constructor_validates() -> None:
    with pytest.raises(InputError):
        Checkpoint("", 1, bytes(32))
    with pytest.raises(InputError):
        Checkpoint("a\nb", 1, bytes(32))
    with pytest.raises(InputError):
        Checkpoint("log", -1, bytes(32))
    with pytest.raises(InputError):
        Checkpoint("log", 2**64, bytes(32))
    with pytest.raises(InputError):
        Checkpoint("log", True, bytes(32))
    with pytest.raises(InputError):
        Checkpoint("log", 5.0, bytes(32))  # type: ignore[arg-type]
    with pytest.raises(InputError):
        Checkpoint("log", 1, bytes(31))


def test_a_station_log_round_trip() -> None:
    # Sign checkpoints while the log grows, then check them as an auditor would.
    signer = Ed25519Signer.generate("example.org/station-7")
    vkey = signer.verifier.key_string()
    entries = [f'{{"seq":{i}}}'.encode() for i in range(25)]
    hashes = [leaf_hash(e) for e in entries]
    acc = MerkleAccumulator()
    notes = []
    for start in range(0, 25, 10):
        acc.extend_entries(entries[start : start + 10])
        checkpoint = Checkpoint("example.org/station-7", acc.size, acc.root())
        notes.append(sign_checkpoint(checkpoint, signer))

    old = open_checkpoint(notes[0], vkey, origin="example.org/station-7")
    new = open_checkpoint(notes[-1], vkey, origin="example.org/station-7")
    assert (old.size, new.size) == (10, 25)
    verify_consistency(
        old.size, new.size, old.root_hash, new.root_hash, consistency_proof(hashes, old.size)
    )
    verify_inclusion(hashes[17], 17, new.size, inclusion_proof(hashes, 17), new.root_hash)
    # A rollback to the older checkpoint is caught.
    with pytest.raises(IntegrityError, match="rolled back"):
        verify_consistency(new.size, old.size, new.root_hash, old.root_hash, [])
