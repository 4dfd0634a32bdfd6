#!/usr/bin/env bash
# The checkpoint's signature checked with OpenSSL 3 alone (bash, coreutils, sed, openssl):
# no Python and no evidence-agent code. Run it from the package directory:
#     bash verify-signature-openssl.sh
# The signed message is the note's text up to and including the newline before the blank line;
# the signature line's base64 decodes to a 4-byte key ID followed by the 64-byte Ed25519
# signature. It writes nothing into the package.
set -euo pipefail
CP=custody/checkpoint
PEM=${1:-custody/station.pub.pem}                   # or the station's key obtained apart
T=$(mktemp -d)                                       # scratch files, outside the package
trap 'rm -rf "$T"' EXIT
sed '/^$/,$d' "$CP" > "$T/msg"                       # the signed text: every line before the blank line
sed -n '/^$/,$p' "$CP" | sed -n '2p' | cut -d' ' -f3 | base64 -d > "$T/sigline"
head -c 4 "$T/sigline" | od -An -tx1                 # the key ID: the 8 hex digits in custody/station.vkey
tail -c 64 "$T/sigline" > "$T/sig"                   # the Ed25519 signature
openssl pkeyutl -verify -pubin -inkey "$PEM" -rawin -in "$T/msg" -sigfile "$T/sig"
sed -n '2p;3p' "$CP"                                 # the tree size and root hash it signs
