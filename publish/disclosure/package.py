"""The disclosure package: a BagIt bag of verified originals, documents, custody proofs and receipts.

Steps, once a disclosure is approved:
  1. the bag's directory is made (it must not exist, or be empty) with room for the payload;
  2. each clip is copied out of the store once and checked against its ingest hash on the way
     (services/copy_out.py), its `clip.disclosed` event logged, then it is given its name in
     data/clips/; the case's documents likewise, checked against their recorded SHA-256;
  3. a checkpoint is signed over the log, and the events of every item and of the disclosure
     itself are written with their inclusion proofs against it (custody/);
  4. the tag files: bag-info.txt, the checkpoint, the public key, the README, the verifier,
     the OpenSSL route, the receipts, SHA256SUMS, then the two manifests; the bag's structure
     and completeness are checked: the directory holds exactly the files written, each of the
     size written;
  5. the manifests and the hash of the tag manifest (which commits to every file of the bag)
     are kept in the catalog with a `disclosure.produced` event.

The payload's manifest holds the ingest SHA-256 of each original: the bytes written are those
ingested, because the hash of the bytes written (BLAKE3, taken in the same pass) equals the
ingest's. Nothing in the bag is read a second time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlmodel import Session

from evidence_agent.catalog.models import (
    Case,
    CaseDocument,
    Clip,
    Derivative,
    Disclosure,
    Officer,
    Recorder,
)
from evidence_agent.catalog.models import Unit as UnitRow
from evidence_agent.custody.events import format_time
from evidence_agent.custody.vocabulary import EventType, Subject
from evidence_agent.domain.roles import Action, Caller
from evidence_agent.errors import EvidenceError, InputError, IntegrityError
from evidence_agent.services.audit.logged_rows import check_disclosure
from evidence_agent.services.audit.proofs import prove_subjects
from evidence_agent.services.copy_out import CHUNK_BYTES, copy_verified, ingest_hash
from evidence_agent.services.guard import record_refusal, require, role_names
from evidence_agent.services.output_directory import (
    FILE,
    FULL,
    LocalDirectory,
    OutputDirectory,
    write_whole,
)
from evidence_agent.services.station import Station
from publish.disclosure.receipt import receipt_html, receipt_pdf
from publish.disclosure.requests import APPROVED, PRODUCED, disclosure_json, get_disclosure
from review.lookup import json_list
from review.retrieval import clip_file_name, document_file_name

log = logging.getLogger(__name__)

DESCRIPTION_FORMAT = "evidence-agent/disclosure"
_TAG_ROOM = 64 << 20  # proofs, receipts and manifests beside the payload
_VERIFIER = "verify_package.py"
_OPENSSL = "verify-signature-openssl.sh"
# Characters a manifest or SHA256SUMS line would have to escape: such a name becomes the id.
_ESCAPED = frozenset("%\\\r\n")
# Tag files read again once written: the manifests kept in the catalog, the description.
_KEPT = frozenset({"manifest-sha256.txt", "tagmanifest-sha256.txt", "disclosure.json"})


@dataclass
class _Package:
    disclosure: Disclosure
    case: str | None
    out: OutputDirectory  # the bag's directory, written by the caller's process or this one
    bag: Path
    items: list[dict[str, Any]] = field(default_factory=list)
    tag_hashes: dict[str, str] = field(default_factory=dict)  # bag path -> SHA-256
    tags: dict[str, bytes] = field(default_factory=dict)  # those of _KEPT, as written
    sizes: dict[str, int] = field(default_factory=dict)  # bag path -> bytes written

    def write_tag(self, name: str, data: bytes) -> None:
        parent = name.rpartition("/")[0]
        if parent:
            self.out.make(parent)
        # Read-only, like every handed-over copy; replaced whole, never seen half-written.
        self.tag_hashes[name] = write_whole(self.out, name, data, mode=0o444)
        self.sizes[name] = len(data)
        if name in _KEPT:
            self.tags[name] = data


def produce(
    station: Station,
    caller: Caller,
    ref: str,
    bag: Path,
    *,
    chunk_bytes: int | None = None,
    output: OutputDirectory | None = None,
) -> dict[str, Any]:
    """Write the approved disclosure `ref` as a BagIt bag at `bag`; return the disclosure.
    `output`: the bag's directory, by default written by this process; the local API passes
    one the caller's own process writes."""
    out = output or LocalDirectory(bag)
    action = Action.DISCLOSE_REQUEST
    require(station, caller, action, subject_kind=Subject.DISCLOSURE, subject_id=ref[:64])
    try:
        with station.reading() as session:
            row = get_disclosure(session, ref)
            check_disclosure(session, row)  # approved, and what for whom, as the log says
            _producible(row)
            case = session.get(Case, row.case_id) if row.case_id is not None else None
            clips = [_clip(session, clip_id) for clip_id in json_list(row.clips)]
            documents = [session.get(CaseDocument, int(d)) for d in json_list(row.documents)]
            derivatives = [_derivative(session, d) for d in json_list(row.derivatives)]
        _empty_directory(out)
    except EvidenceError as e:
        record_refusal(station, caller, action.value, e.message, subject_kind=Subject.DISCLOSURE,
                       subject_id=ref[:64], data={"target": str(bag)})  # fmt: skip
        raise
    try:
        package = _Package(row, case.number if case else None, out, out.make(""))
        _write_payload(station, caller, package, clips, [d for d in documents if d], chunk_bytes)
        _write_derivatives(station, caller, package, derivatives, chunk_bytes)
        proofs, note = prove_subjects(station, _subjects(package))
        _write_tags(station, caller, package, proofs, note)
    except BaseException as e:
        _remove(out)
        if isinstance(e, EvidenceError):
            # A copy that failed its hash, a full disk: nothing was handed over, and why is logged.
            record_refusal(station, caller, action.value, e.message,
                           subject_kind=Subject.DISCLOSURE, subject_id=row.id,
                           reason=row.reason, data={"target": str(bag)})  # fmt: skip
        raise
    return _record(station, caller, package)


def _producible(row: Disclosure) -> None:
    if row.state == PRODUCED:
        raise InputError(
            f"disclosure {row.id} was produced on {_t(row.produced_at)} "
            f"(package {row.package_sha256})",
            remedy="request a new disclosure to hand the evidence over again",
        )
    if row.state != APPROVED:
        raise InputError(
            f"disclosure {row.id} is {row.state}: only an approved disclosure is produced",
            remedy="a supervisor other than the requester approves it with "
            "`evidence-agent disclose approve`",
        )


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _clip(session: Session, clip_id: str) -> tuple[Clip, dict[str, str | None]]:
    clip = session.get(Clip, clip_id)
    if clip is None:
        raise IntegrityError(f"clip {clip_id} of the disclosure is not in the catalog")
    officer = session.get(Officer, clip.officer_id) if clip.officer_id else None
    recorder = session.get(Recorder, clip.recorder_id) if clip.recorder_id else None
    unit = session.get(UnitRow, clip.unit_id) if clip.unit_id else None
    return clip, {
        "officer": officer.badge if officer else None,
        "recorder": recorder.serial if recorder else None,
        "unit": unit.code if unit else None,
    }


def _derivative(session: Session, derivative_id: str) -> tuple[Derivative, Clip]:
    row = session.get(Derivative, derivative_id)
    clip = session.get(Clip, row.clip_id) if row is not None else None
    if row is None or clip is None or row.sha256 is None or row.size is None:
        raise IntegrityError(f"derivative {derivative_id} of the disclosure is not in the catalog")
    return row, clip


def _write_derivatives(
    station: Station,
    caller: Caller,
    package: _Package,
    derivatives: list[tuple[Derivative, Clip]],
    chunk_bytes: int | None,
) -> None:
    """Each redacted derivative copied out, checked against the SHA-256 its making recorded,
    logged as disclosed (about its original, which stays at the station), then named."""
    if not derivatives:
        return
    target = package.out.target("data/derivatives")
    target.prepare(sum(d.size or 0 for d, _ in derivatives), 0)
    d = package.disclosure
    for row, clip in derivatives:
        sha, size = row.sha256 or "", row.size or 0
        tmp = copy_verified(station, sha, size, ("sha256", sha), target,
                            chunk_bytes or CHUNK_BYTES, f"derivative {row.id}")  # fmt: skip
        stem = clip_file_name(clip).rsplit(".", 1)[0]
        name = _file_name(f"{stem}-redacted-{row.id[:8]}.mp4", f"{row.id}.mp4")
        try:
            with station.transaction() as session:
                station.record(
                    session,
                    EventType.CLIP_DISCLOSED.event(
                        clip.id,
                        actor=caller.actor,
                        reason=d.reason,
                        sha256=sha,
                        data={
                            "disclosure": d.id,
                            "recipient": d.recipient,
                            "file": name,
                            "size": size,
                            "verified": "sha256 of the bytes written equals the derivative's",
                            "store": station.store.describe(),
                            "derivative": row.id,
                        },
                    ),
                )
            final = target.place(tmp, name, f"{row.id}.mp4")
        finally:
            target.discard(tmp)
        package.items.append(
            {
                "path": f"data/derivatives/{final.name}",
                "kind": "derivative",
                "derivative": row.id,
                "clip": clip.id,
                "parent_sha256": clip.sha256,
                "plan": json.loads(row.plan),
                "tool": row.tool,
                "sha256": sha,
                "size": size,
                "duration_seconds": row.duration_seconds,
            }
        )


def _empty_directory(out: OutputDirectory) -> None:
    if out.state("") in (FULL, FILE):
        raise InputError(
            f"{out.path} exists and is not an empty directory: a package is written into a new one",
            remedy="give --to a path that does not exist yet",
        )


def _remove(out: OutputDirectory) -> None:
    """The bag made here, gone; a caller that went away keeps what it has, with no manifest."""
    try:
        out.remove("")
    except (OSError, EvidenceError) as e:
        log.warning("the unfinished package at %s was not removed: %s", out.path, e)


def _file_name(name: str, fallback: str) -> str:
    return fallback if _ESCAPED & set(name) else name


def _write_payload(
    station: Station,
    caller: Caller,
    package: _Package,
    clips: list[tuple[Clip, dict[str, str | None]]],
    documents: list[CaseDocument],
    chunk_bytes: int | None,
) -> None:
    """1 and 2: every original and document copied once, verified, logged, then named."""
    chunk = chunk_bytes or CHUNK_BYTES
    needed = sum(c.size for c, _ in clips) + sum(d.size for d in documents)
    clips_dir = package.out.target("data/clips")
    clips_dir.prepare(needed, _TAG_ROOM)
    docs_dir = package.out.target("data/documents")
    docs_dir.prepare(0, 0)
    d = package.disclosure
    for clip, attribution in clips:
        check = ingest_hash(station, clip)
        tmp = copy_verified(station, clip.sha256, clip.size, check, clips_dir, chunk,
                            f"clip {clip.id}")  # fmt: skip
        name = _file_name(clip_file_name(clip), clip.id)
        try:
            with station.transaction() as session:
                station.record(
                    session,
                    EventType.CLIP_DISCLOSED.event(
                        clip.id,
                        actor=caller.actor,
                        reason=d.reason,
                        sha256=clip.sha256,
                        data={
                            "disclosure": d.id,
                            "recipient": d.recipient,
                            "file": name,
                            "size": clip.size,
                            "verified": f"{check[0]} of the bytes written equals the ingest hash",
                            "store": station.store.describe(),
                        },
                    ),
                )
            final = clips_dir.place(tmp, name, clip.id)
        finally:
            clips_dir.discard(tmp)
        package.items.append(
            {
                "path": f"data/clips/{final.name}",
                "kind": "clip",
                "clip": clip.id,
                "sha256": clip.sha256,
                "size": clip.size,
                "media_kind": clip.media_kind,
                "duration_seconds": clip.duration_seconds,
                "recorded_start": format_time(clip.recorded_start) if clip.recorded_start else None,
                "recorded_end": format_time(clip.recorded_end) if clip.recorded_end else None,
                **attribution,
            }
        )
    for document in documents:
        what = f"document {document.id} ({document.name}) of case {package.case}"
        check = ("sha256", document.sha256)
        tmp = copy_verified(station, document.sha256, document.size, check, docs_dir, chunk, what)
        try:
            name = _file_name(document_file_name(document), f"document-{document.id}")
            final = docs_dir.place(tmp, name, f"document-{document.id}")
        finally:
            docs_dir.discard(tmp)
        package.items.append(
            {
                "path": f"data/documents/{final.name}",
                "kind": "document",
                "document": document.id,
                "case": package.case,
                "name": document.name,
                "sha256": document.sha256,
                "size": document.size,
            }
        )


def _subjects(package: _Package) -> dict[tuple[str, str], Any]:
    """3: whose events go in the package: each clip's, the case's adding of each document,
    and the disclosure's own (its request and approval)."""
    subjects: dict[tuple[str, str], Any] = {
        (Subject.DISCLOSURE.value, package.disclosure.id): lambda _doc: True
    }
    for item in package.items:
        if item["kind"] in ("clip", "derivative"):
            subjects[(Subject.CLIP.value, item["clip"])] = lambda _doc: True
    documents = {item["document"] for item in package.items if item["kind"] == "document"}
    if documents and package.case:
        subjects[(Subject.CASE.value, package.case)] = lambda doc: (
            doc.get("type") == EventType.CASE_DOCUMENT_ADDED
            and doc.get("data", {}).get("document") in documents
        )
    return subjects


def _description(station: Station, caller: Caller, package: _Package) -> dict[str, Any]:
    d = package.disclosure
    return {
        "format": DESCRIPTION_FORMAT,
        "version": 1,
        "disclosure": d.id,
        "station": station.settings.station_id,
        "case": package.case,
        "recipient": d.recipient,
        "reason": d.reason,
        "requested_by": d.requested_by,
        "requested_at": format_time(d.requested_at),
        "approved_by": d.decided_by,
        "approved_at": format_time(d.decided_at) if d.decided_at else None,
        "approval_reason": d.decision_reason,
        "produced_by": caller.actor,
        "produced_at": format_time(station.clock.now()),
        "earlier": json_list(d.earlier),
        "items": package.items,
    }


def _write_tags(
    station: Station, caller: Caller, package: _Package, proofs: dict[str, Any], note: str
) -> None:
    """4: every tag file, SHA256SUMS, the manifests last; then the bag's completeness."""
    description = _description(station, caller, package)
    description["checkpoint"] = {"size": proofs["tree_size"], "root_hash": proofs["root_hash"]}
    verifier = station.custody.signer.verifier
    package.write_tag("custody/checkpoint", note.encode())
    package.write_tag("custody/station.pub.pem", verifier.public_key_pem().encode())
    package.write_tag("custody/station.vkey", (verifier.key_string() + "\n").encode())
    package.write_tag("custody/proofs.json", _json(proofs))
    package.write_tag("disclosure.json", _json(description))
    here = resources.files("publish.disclosure")
    package.write_tag(_VERIFIER, here.joinpath(_VERIFIER).read_bytes())
    package.write_tag(_OPENSSL, here.joinpath(_OPENSSL).read_bytes())
    readme = here.joinpath("recipient_readme.txt").read_text(encoding="utf-8")
    package.write_tag("README.txt", _readme(readme, description, verifier.key_string()).encode())
    package.write_tag("receipt.html", receipt_html(description).encode())
    package.write_tag("receipt.pdf", receipt_pdf(description))
    payload = {item["path"]: item["sha256"] for item in package.items}
    oxum = f"{sum(item['size'] for item in package.items)}.{len(package.items)}"
    package.write_tag("bagit.txt", b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    package.write_tag("bag-info.txt", _bag_info(description, oxum).encode())
    package.write_tag("manifest-sha256.txt", _lines(payload).encode())
    sums = {**payload, **package.tag_hashes}
    package.write_tag("SHA256SUMS", _lines(sums).encode())
    tags = {k: v for k, v in package.tag_hashes.items() if k != "manifest-sha256.txt"}
    tags["manifest-sha256.txt"] = package.tag_hashes["manifest-sha256.txt"]
    tag_manifest = _lines(tags).encode()
    package.write_tag("tagmanifest-sha256.txt", tag_manifest)
    _check_complete(package)


def _check_complete(package: _Package) -> None:
    """The bag holds exactly what was written: every payload and tag file, of the size written
    (a payload file's, the one its manifest line and the Payload-Oxum count), nothing else."""
    written = {**package.sizes, **{item["path"]: item["size"] for item in package.items}}
    found = package.out.files()
    wrong = sorted(
        name for name in set(written) | set(found) if found.get(name) != written.get(name)
    )
    if wrong:
        raise IntegrityError(
            f"the package {package.bag} is not the bag written: "
            + ", ".join(
                f"{name} (found {found.get(name, 'none')}, written {written.get(name, 'none')})"
                for name in wrong[:5]
            )
        )


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


def _lines(hashes: dict[str, str]) -> str:
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(hashes.items()))


def _bag_info(description: dict[str, Any], oxum: str) -> str:
    fields = [
        ("Source-Organization", f"evidence-agent station {description['station']}"),
        ("External-Identifier", f"disclosure {description['disclosure']}"),
        ("Bagging-Date", description["produced_at"][:10]),
        ("Payload-Oxum", oxum),
        ("Case", description["case"] or "(none: chosen clips)"),
        ("Recipient", description["recipient"]),
        ("Reason", description["reason"]),
        ("Requested-By", f"{description['requested_by']} at {description['requested_at']}"),
        ("Approved-By", f"{description['approved_by']} at {description['approved_at']}"),
        ("Produced-By", f"{description['produced_by']} at {description['produced_at']}"),
        ("Station", description["station"]),
        ("Checkpoint-Size", str(description["checkpoint"]["size"])),
        ("Checkpoint-Root-Hash", description["checkpoint"]["root_hash"]),
    ]
    fields += [("Earlier-Disclosure", earlier) for earlier in description["earlier"]]
    return "".join(f"{label}: {value}\n" for label, value in fields)


def _readme(template: str, description: dict[str, Any], key: str) -> str:
    earlier = ", ".join(description["earlier"]) or "none"
    return template.format(
        disclosure=description["disclosure"],
        station=description["station"],
        case=description["case"] or "(chosen clips)",
        recipient=description["recipient"],
        items=len(description["items"]),
        earlier=earlier,
        key=key,
    )


def _record(station: Station, caller: Caller, package: _Package) -> dict[str, Any]:
    """5: the package's manifests and the hash of its tag manifest kept, and logged."""
    manifest = package.tags["manifest-sha256.txt"].decode("utf-8")
    tag_manifest = package.tags["tagmanifest-sha256.txt"].decode("utf-8")
    package_sha256 = package.tag_hashes["tagmanifest-sha256.txt"]
    with station.transaction() as session:
        row = session.get(Disclosure, package.disclosure.id)
        assert row is not None
        if row.state != APPROVED:
            raise InputError(f"disclosure {row.id} was {row.state} meanwhile")
        row.state = PRODUCED
        row.produced_by = caller.actor
        row.produced_at = station.clock.now()
        row.package = str(package.bag)
        row.package_sha256 = package_sha256
        row.manifest = manifest
        row.tag_manifest = tag_manifest
        session.add(row)
        station.record(
            session,
            EventType.DISCLOSURE_PRODUCED.event(
                row.id,
                actor=caller.actor,
                reason=row.reason,
                sha256=package_sha256,
                data={
                    "recipient": row.recipient,
                    "package": str(package.bag),
                    "package_sha256": package_sha256,
                    "manifest_sha256": package.tag_hashes["manifest-sha256.txt"],
                    "payload_bytes": sum(item["size"] for item in package.items),
                    "clips": json_list(row.clips),
                    "documents": [int(x) for x in json_list(row.documents)],
                    "checkpoint_size": _checkpoint_size(package),
                    "earlier": json_list(row.earlier),
                    "roles": role_names(caller),
                    **(
                        {"derivatives": json_list(row.derivatives)}
                        if json_list(row.derivatives)
                        else {}
                    ),
                },
            ),
        )
        shown = disclosure_json(session, row)
    log.info("disclosure %s produced at %s", shown["id"], package.bag)
    shown["items"] = package.items
    return shown


def _checkpoint_size(package: _Package) -> int:
    description = json.loads(package.tags["disclosure.json"])
    size: int = description["checkpoint"]["size"]
    return size
