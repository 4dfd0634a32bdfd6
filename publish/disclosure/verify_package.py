#!/usr/bin/env python3
"""Stand-alone check of an evidence-agent disclosure package: bag, custody proofs and signature.

Needs Python 3.9+ and the `cryptography` package, nothing else of the station's:

    python3 -m venv venv && venv/bin/pip install cryptography
    venv/bin/python verify_package.py PACKAGE_DIR [--trusted-key STATION_PUBLIC_KEY.pem]

Checks, in order, and names the file or event that fails:
  1. the bag (RFC 8493): every payload file against manifest-sha256.txt, none missing or added;
     every tag file against tagmanifest-sha256.txt;
  2. the checkpoint (custody/checkpoint, a C2SP signed note) is signed by the station's
     Ed25519 key (custody/station.pub.pem, or the key given with --trusted-key: get it from the
     station by another way than this package to know the package is the station's);
  3. every custody event in custody/proofs.json is in the log the checkpoint signs (RFC 9162
     inclusion proofs);
  4. each item of disclosure.json is the file its manifest line names, with the SHA-256 that
     its proved ingest (clip), attachment (document) or making (redacted derivative) event
     recorded, and each item's disclosure event is proved; a derivative's lineage: made from
     its original's ingested bytes by the plan given, that plan approved by a second person;
     the disclosure's request and approval are proved, by two different people.
Exit status 0: every check passed; 1: a check failed; 2: the package cannot be read.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

CHUNK = 1 << 20
SIGNATURE_PREFIX = "\u2014 "
ED25519 = b"\x01"


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def fail(self, item: str, why: str) -> None:
        self.failures.append(f"{item}: {why}")
        sys.stdout.write(f"FAIL {item}: {why}\n")

    def ok(self, what: str) -> None:
        sys.stdout.write(f"ok   {what}\n")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def same(a: str | bytes, b: str | bytes) -> bool:
    a = a.encode() if isinstance(a, str) else a
    b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a, b)


def read_manifest(bag: Path, name: str, report: Report) -> dict[str, str]:
    """path -> SHA-256 of a BagIt manifest; percent-encoded CR, LF and % decoded (RFC 8493 2.1.3)."""
    entries: dict[str, str] = {}
    try:
        text = (bag / name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        report.fail(name, f"cannot be read ({e})")
        return entries
    for number, line in enumerate(text.splitlines(), 1):
        digest, _, path = line.partition(" ")
        path = path.lstrip(" ")
        path = path.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")
        parts = Path(path).parts
        if len(digest) != 64 or not path or path.startswith("/") or ".." in parts:
            report.fail(name, f"line {number} is not '<sha256> <relative path>'")
            continue
        entries[path] = digest.lower()
    return entries


def files_under(bag: Path, top: Path) -> set[str]:
    found = set()
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for f in files:
            found.add((Path(root) / f).relative_to(bag).as_posix())
    return found


def check_bag(bag: Path, report: Report) -> dict[str, str]:
    """1: payload and tag files against their manifests; returns the payload manifest."""
    if not (bag / "bagit.txt").is_file():
        report.fail("bagit.txt", "missing: this is not a BagIt bag")
    payload = read_manifest(bag, "manifest-sha256.txt", report)
    tags = read_manifest(bag, "tagmanifest-sha256.txt", report)
    for manifest, entries in (("manifest-sha256.txt", payload), ("tagmanifest-sha256.txt", tags)):
        bad = 0
        for path, digest in sorted(entries.items()):
            file = bag / path
            if not file.is_file():
                report.fail(path, f"missing (listed in {manifest})")
                bad += 1
            elif not same(sha256_file(file), digest):
                report.fail(path, f"its SHA-256 differs from {manifest}: the file was changed")
                bad += 1
        if not bad and entries:
            report.ok(f"{len(entries)} files match {manifest}")
    for path in sorted(files_under(bag, bag / "data") - set(payload)):
        report.fail(path, "not in manifest-sha256.txt: added to the package")
    listed = set(tags) | {"tagmanifest-sha256.txt"}
    for path in sorted(files_under(bag, bag) - set(payload) - listed):
        if not path.startswith("data/"):
            report.fail(path, "not in tagmanifest-sha256.txt: added to the package")
    return payload


def key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key ID: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def load_key(pem_path: Path) -> bytes:
    key = serialization.load_pem_public_key(pem_path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{pem_path} is not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def check_checkpoint(bag: Path, trusted: Path | None, report: Report) -> tuple[int, bytes] | None:
    """2: the checkpoint's signature by the station's key; returns (tree size, root hash)."""
    item = "custody/checkpoint"
    try:
        note = (bag / item).read_text(encoding="utf-8")
        pem = trusted or bag / "custody" / "station.pub.pem"
        public_key = load_key(pem)
        name = (bag / "custody" / "station.vkey").read_text(encoding="utf-8").split("+")[0]
    except (OSError, UnicodeDecodeError, ValueError) as e:
        report.fail(item, f"the checkpoint or the station's key cannot be read ({e})")
        return None
    split = note.rfind("\n\n")
    if split < 0:
        report.fail(item, "not a signed note: no blank line before the signatures")
        return None
    text, block = note[: split + 1], note[split + 2 :]
    wanted = key_id(name, public_key)
    verified = False
    for line in block.splitlines():
        if not line.startswith(SIGNATURE_PREFIX):
            report.fail(item, "a signature line does not start with '— '")
            return None
        signer, _, sig64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(sig64, validate=True)
        except ValueError:
            report.fail(item, "a signature is not base64")
            return None
        if signer != name or not same(raw[:4], wanted):
            continue  # another key's signature (a witness): not the station's
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], text.encode())
        except InvalidSignature:
            report.fail(item, "the signature does not verify with the station's key: altered")
            return None
        verified = True
    if not verified:
        report.fail(item, f"not signed by the station's key {name}+{wanted.hex()} ({pem})")
        return None
    lines = text.splitlines()
    if len(lines) != 3 or not lines[1].isdigit():
        report.fail(item, "the signed text is not a checkpoint (origin, size, root hash)")
        return None
    size, root = int(lines[1]), base64.b64decode(lines[2])
    fingerprint = hashlib.sha256(public_key).hexdigest()
    report.ok(f"checkpoint {lines[0]} size {size} signed by {name}+{wanted.hex()} "
              f"(SHA-256 of the key: {fingerprint})")  # fmt: skip
    return size, root


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2: the root an inclusion proof leads to, or None for a malformed proof."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def check_proofs(bag: Path, tree: tuple[int, bytes], report: Report) -> list[dict[str, Any]]:
    """3: each event's entry hashes to its leaf and its proof leads to the signed root."""
    size, root = tree
    try:
        doc = json.loads((bag / "custody" / "proofs.json").read_text(encoding="utf-8"))
        events = doc["events"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        report.fail("custody/proofs.json", f"cannot be read ({e})")
        return []
    if doc.get("tree_size") != size or doc.get("root_hash") != root.hex():
        report.fail("custody/proofs.json", "its tree is not the one the checkpoint signs")
    proved = []
    for event in events:
        try:
            seq, entry = event["seq"], event["entry"]
            what = f"custody/proofs.json event {seq} ({event['type']})"
            leaf = hashlib.sha256(b"\x00" + entry.encode("utf-8")).digest()
            path = [bytes.fromhex(h) for h in event["inclusion_proof"]]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            report.fail("custody/proofs.json", f"an event is malformed ({e})")
            continue
        if not same(leaf.hex(), event.get("leaf_hash", "")):
            report.fail(what, "the entry does not hash to its leaf hash: the entry was changed")
            continue
        reached = root_from_inclusion(leaf, seq, size, path)
        if reached is None or not same(reached, root):
            report.fail(what, "its inclusion proof does not lead to the checkpoint's root")
            continue
        proved.append(json.loads(entry))
    if len(proved) == len(events):
        report.ok(f"{len(proved)} custody events proved in the signed log")
    return proved


def about(events: list[dict[str, Any]], kind: str, sid: str, type_: str) -> list[dict[str, Any]]:
    return [
        e for e in events
        if e.get("type") == type_ and e.get("subject") == {"kind": kind, "id": sid}
    ]  # fmt: skip


def derivative_problem(item: dict[str, Any], events: list[dict[str, Any]], disclosure: str) -> str:
    """Lineage of a redacted derivative: made by a proved event from its original's ingested
    bytes, by the plan given, approved by another person than who asked, and disclosed here."""
    clip, sha, derivative = item.get("clip", ""), item.get("sha256", ""), item.get("derivative")
    ingested = about(events, "clip", clip, "clip.ingested")
    made = [
        e for e in about(events, "clip", clip, "clip.derivative_made")
        if e["data"].get("derivative") == derivative
    ]  # fmt: skip
    if not ingested or not made:
        return "no proved ingest of its original or making of the derivative"
    data = made[0]["data"]
    if not same(made[0].get("sha256") or "", sha):
        return "the proved clip.derivative_made event records another SHA-256"
    if not same(data.get("parent_sha256") or "", ingested[0].get("sha256") or ""):
        return "the derivative was not made from the original's ingested bytes"
    if data.get("plan") != item.get("plan"):
        return "the plan differs from the one the proved event records"
    asked = [e for e in about(events, "clip", clip, "derivative.requested")
             if e["data"].get("derivative") == derivative]  # fmt: skip
    approved = [e for e in about(events, "clip", clip, "derivative.approved")
                if e["data"].get("derivative") == derivative]  # fmt: skip
    if not asked or not approved or asked[0]["actor"] == approved[0]["actor"]:
        return "its plan was not proved requested and approved by two different people"
    disclosed = [
        e for e in about(events, "clip", clip, "clip.disclosed")
        if e["data"].get("derivative") == derivative and e["data"].get("disclosure") == disclosure
    ]  # fmt: skip
    if not disclosed or not same(disclosed[0].get("sha256") or "", sha):
        return "no proved clip.disclosed event of this disclosure"
    return ""


def check_items(
    bag: Path, payload: dict[str, str], events: list[dict[str, Any]], report: Report
) -> None:
    """4: the items are the manifest's files, with the hashes their proved events recorded."""
    try:
        d = json.loads((bag / "disclosure.json").read_text(encoding="utf-8"))
        items, disclosure = d["items"], d["disclosure"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        report.fail("disclosure.json", f"cannot be read ({e})")
        return
    requested = about(events, "disclosure", disclosure, "disclosure.requested")
    approved = about(events, "disclosure", disclosure, "disclosure.approved")
    if not requested or not approved:
        report.fail("disclosure.json", "the disclosure's request or approval is not proved")
    elif requested[0]["actor"] == approved[0]["actor"]:
        report.fail("disclosure.json", "the disclosure was approved by the person who asked")
    for item in items:
        path, sha = item.get("path", "?"), item.get("sha256", "")
        if not same(payload.get(path, ""), sha):
            report.fail(path, "not in manifest-sha256.txt with the item's SHA-256")
            continue
        if item.get("kind") == "clip":
            ingested = about(events, "clip", item["clip"], "clip.ingested")
            disclosed = [
                e for e in about(events, "clip", item["clip"], "clip.disclosed")
                if e["data"].get("disclosure") == disclosure
            ]  # fmt: skip
            if not ingested or not same(ingested[0].get("sha256") or "", sha):
                report.fail(path, "no proved ingest event records this SHA-256")
            elif not disclosed or not same(disclosed[0].get("sha256") or "", sha):
                report.fail(path, "no proved clip.disclosed event of this disclosure")
        elif item.get("kind") == "derivative":
            problem = derivative_problem(item, events, disclosure)
            if problem:
                report.fail(path, problem)
        elif item.get("kind") == "document":
            added = [
                e for e in about(events, "case", item.get("case"), "case.document_added")
                if e["data"].get("document") == item.get("document")
            ]  # fmt: skip
            if not added or not same(added[0].get("sha256") or "", sha):
                report.fail(path, "no proved case.document_added event records this SHA-256")
        else:
            report.fail(path, f"unknown kind of item {item.get('kind')!r}")
    listed = {item.get("path") for item in items}
    for path in sorted(set(payload) - listed):
        report.fail(path, "in the manifest but not an item of disclosure.json")
    if not report.failures:
        report.ok(f"{len(items)} items match their proved custody events")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("package", type=Path, help="the package directory (a BagIt bag)")
    parser.add_argument(
        "--trusted-key",
        type=Path,
        help="the station's public key (PEM) obtained apart from the package",
    )
    args = parser.parse_args(argv)
    bag: Path = args.package
    if not bag.is_dir():
        sys.stderr.write(f"{bag} is not a directory\n")
        return 2
    report = Report()
    payload = check_bag(bag, report)
    tree = check_checkpoint(bag, args.trusted_key, report)
    events = check_proofs(bag, tree, report) if tree else []
    if tree:
        check_items(bag, payload, events, report)
    if report.failures:
        sys.stdout.write(f"NOT VERIFIED: {len(report.failures)} check(s) failed\n")
        return 1
    sys.stdout.write("VERIFIED: the package is complete, unchanged and proved by the station\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
