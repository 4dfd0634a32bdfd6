"""End to end: a case disclosed to a recipient as a package they verify on their own, with a record kept.

A demo recorder is docked once per module; a clerk makes a case, links its footage, attaches a
document and requests the disclosure at the command line. A station's data directory serves one
OS account, so the second person, the supervisor who approves, acts at the service level (a
second Caller on the same station), and the command line shows that the requester's own
approval is refused. The package is then produced by `evidence-agent disclose produce`."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence_agent.config import build_settings
from evidence_agent.domain.roles import Caller, Identity, Role
from evidence_agent.errors import PermissionDeniedError
from evidence_agent.services.station import open_station
from publish.disclosure.requests import decide_disclosure
from tests.browser import chromium_page
from tests.e2e.test_review import Station, access_log, sha256_of
from tests.support import service_missing

BAGIT = Path(sys.executable).with_name("bagit.py")
BOSS = Caller(Identity("boss", 1002, frozenset()), frozenset({Role.SUPERVISOR}), None)
RECIPIENT = "District Court of Xihu, 2nd chamber"


@pytest.fixture(autouse=True, scope="module")
def tools() -> None:
    for tool in ("ffmpeg", "sha256sum", "openssl", "pdftoppm", "pdftotext"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} is not installed: scripts/setup.sh --dev installs it")


def approve_as_another_person(data: Path, disclosure: str, reason: str) -> dict[str, Any]:
    settings = build_settings({}, {"EVIDENCE_AGENT_DATA_DIR": str(data)})
    station = open_station(settings, actor=BOSS.actor, create=False)
    try:
        return decide_disclosure(station, BOSS, disclosure, reason, approve=True)
    finally:
        station.close()


@dataclass(frozen=True)
class Produced:
    station: Station
    package: Path
    disclosure: dict[str, Any]
    videos: list[dict[str, Any]]
    document: Path


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Produced:
    root = tmp_path_factory.mktemp("disclosure")
    station = Station(root / "data")
    assert station.run("demo-recorder", str(root / "volume")).returncode == 0
    ingested = station.run("ingest", str(root / "volume"), "--json")
    assert ingested.returncode in (0, 1), ingested.stderr
    clips = station.json("clips", "search", "--officer", "100231")
    videos = sorted(
        (c for c in clips if c["media_kind"] == "video" and c["duration_seconds"]),
        key=lambda c: c["recorded_start"],
    )
    station.json("case", "create", "2026-0117", "--type", "seizure", "--title", "Seizure")
    station.json("case", "link", "2026-0117", *[v["id"] for v in videos], "--reason", "footage")
    document = root / "decision.pdf"
    document.write_bytes(b"%PDF-1.4 the decision of 2026-12-01\n")
    station.json("case", "attach", "2026-0117", str(document), "--reason", "the decision")

    requested = station.json(
        "disclose", "request", "--case", "2026-0117", "--recipient", RECIPIENT,
        "--reason", "court order 2026-117",
    )  # fmt: skip
    assert requested["state"] == "requested" and requested["earlier"] == []
    # The requester may not approve their own request, even holding the supervisor role...
    own = station.run(
        "disclose", "approve", requested["id"], "--reason", "ok", roles=["clerk", "supervisor"]
    )
    assert own.returncode == 5 and "two-person" in own.stderr
    # ... nor may a clerk approve at all, and nothing is produced before an approval.
    clerk = station.run("disclose", "approve", requested["id"], "--reason", "ok")
    assert clerk.returncode == 5 and "disclose_approve needs the role supervisor" in clerk.stderr
    early = station.run("disclose", "produce", requested["id"], "--to", str(root / "early"))
    assert early.returncode == 2 and "only an approved disclosure" in early.stderr
    assert not (root / "early").exists()

    approved = approve_as_another_person(station.data, requested["id"], "court order checked")
    assert approved["state"] == "approved" and approved["decided_by"] == BOSS.actor
    package = root / "package"
    disclosure = station.json("disclose", "produce", requested["id"][:8], "--to", str(package))
    assert disclosure["state"] == "produced"
    return Produced(station, package, disclosure, videos, document)


def test_the_package_is_a_valid_bag_and_sha256sum_accepts_it(produced: Produced) -> None:
    package = produced.package
    bagit = subprocess.run(
        [sys.executable, str(BAGIT), "--validate", str(package)], capture_output=True, text=True
    )
    assert bagit.returncode == 0, bagit.stderr
    assert "is valid" in bagit.stderr
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=package, capture_output=True)
    assert sums.returncode == 0, sums.stdout

    items = {i["path"]: i for i in produced.disclosure["items"]}
    for video in produced.videos:
        (path,) = [p for p, i in items.items() if i.get("clip") == video["id"]]
        assert sha256_of(package / path) == video["sha256"]
    assert (package / "data/documents/decision.pdf").read_bytes() == produced.document.read_bytes()
    info = (package / "bag-info.txt").read_text()
    for line in (
        f"Recipient: {RECIPIENT}",
        "Case: 2026-0117",
        "Reason: court order 2026-117",
        f"Approved-By: {BOSS.actor} at",
    ):
        assert line in info


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv of the system's Python with only `cryptography`, as a recipient makes one."""
    venv = tmp_path_factory.mktemp("recipient") / "venv"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "cryptography"], capture_output=True, text=True
    )
    if pip.returncode != 0:
        service_missing(f"pip could not install cryptography: {pip.stderr[-500:]}")
    return venv / "bin" / "python"


def verify(python: Path, package: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(python), str(package / "verify_package.py"), str(package), *args],
        cwd=package.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_bundled_verifier_passes_without_the_project(
    produced: Produced, fresh_venv: Path
) -> None:
    alone = subprocess.run(
        [str(fresh_venv), "-c", "import evidence_agent"], capture_output=True, cwd="/"
    )
    assert alone.returncode != 0  # the project is not there
    trusted = produced.station.data / "keys" / "station.pub.pem"
    result = verify(fresh_venv, produced.package, "--trusted-key", str(trusted))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED" in result.stdout
    assert f"{len(produced.disclosure['items'])} items match" in result.stdout


def _retag(package: Path, name: str) -> None:
    """A forger's touch: the tag manifest made to agree with the changed file `name`."""
    manifest = package / "tagmanifest-sha256.txt"
    lines = manifest.read_text().splitlines()
    digest = sha256_of(package / name)
    fixed = [f"{digest}  {name}" if line.endswith(f"  {name}") else line for line in lines]
    manifest.chmod(0o644)
    manifest.write_text("\n".join(fixed) + "\n")


def _writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def flip_a_byte(package: Path) -> str:
    clip = sorted((package / "data" / "clips").iterdir())[0]
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0x01
    _writable(clip).write_bytes(bytes(data))
    return f"FAIL data/clips/{clip.name}: its SHA-256 differs"


def remove_a_file(package: Path) -> str:
    (package / "data" / "documents" / "decision.pdf").unlink()
    return "FAIL data/documents/decision.pdf: missing"


def forge_a_proof(package: Path) -> str:
    proofs_file = package / "custody" / "proofs.json"
    proofs = json.loads(proofs_file.read_text())
    event = next(e for e in proofs["events"] if e["type"] == "clip.ingested")
    event["inclusion_proof"][0] = hashlib.sha256(b"forged").hexdigest()
    _writable(proofs_file).write_text(json.dumps(proofs))
    _retag(package, "custody/proofs.json")
    return f"FAIL custody/proofs.json event {event['seq']} (clip.ingested): its inclusion proof"


def sign_with_another_key(package: Path) -> str:
    checkpoint = package / "custody" / "checkpoint"
    note = checkpoint.read_text()
    text = note[: note.rfind("\n\n") + 1]
    name = (package / "custody" / "station.vkey").read_text().split("+")[0]
    other = Ed25519PrivateKey.generate()
    public = other.public_key().public_bytes_raw()
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
    signature = base64.b64encode(key_id + other.sign(text.encode())).decode()
    _writable(checkpoint).write_text(f"{text}\n\u2014 {name} {signature}\n")
    _retag(package, "custody/checkpoint")
    return "FAIL custody/checkpoint: not signed by the station's key"


@pytest.mark.parametrize(
    "tamper", [flip_a_byte, remove_a_file, forge_a_proof, sign_with_another_key]
)
def test_the_verifier_names_what_was_tampered_with(
    produced: Produced, fresh_venv: Path, tmp_path: Path, tamper: Callable[[Path], str]
) -> None:
    package = tmp_path / "package"
    shutil.copytree(produced.package, package)
    expected = tamper(package)
    result = verify(fresh_venv, package)
    assert result.returncode == 1, result.stdout
    assert expected in result.stdout, result.stdout
    assert "NOT VERIFIED" in result.stdout


def test_a_checkpoint_and_key_both_replaced_fail_against_the_trusted_key(
    produced: Produced, fresh_venv: Path, tmp_path: Path
) -> None:
    """A consistent forgery (another key's checkpoint and that key beside it) is caught by the
    station's key obtained apart from the package."""
    package = tmp_path / "package"
    shutil.copytree(produced.package, package)
    sign_with_another_key(package)
    result = verify(fresh_venv, package, "--trusted-key", str(produced.station.data / "keys" /
                                                              "station.pub.pem"))  # fmt: skip
    assert result.returncode == 1 and "FAIL custody/checkpoint" in result.stdout


def test_the_openssl_route_verifies_the_signature(produced: Produced) -> None:
    result = subprocess.run(
        ["bash", "verify-signature-openssl.sh"], cwd=produced.package, capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Signature Verified Successfully" in result.stdout
    checkpoint = (produced.package / "custody" / "checkpoint").read_text().splitlines()
    assert checkpoint[1] in result.stdout and checkpoint[2] in result.stdout


def test_the_receipt_lists_every_item_in_a_browser_and_the_pdf_renders(
    produced: Produced, tmp_path: Path
) -> None:
    items = produced.disclosure["items"]
    with chromium_page(width=1024, height=768) as page:
        page.goto((produced.package / "receipt.html").as_uri())
        rows = page.locator("tr.item")
        assert rows.count() == len(items)
        width = page.evaluate("window.innerWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        for number, item in enumerate(items):
            row = rows.nth(number)
            text = row.inner_text()
            assert item["path"] in text and item["sha256"] in text
            for cell in row.locator("td").all():
                box = cell.bounding_box()
                assert box is not None and box["width"] > 0 and box["height"] > 0
                assert box["x"] >= 0 and box["x"] + box["width"] <= width
        body = page.locator("body").inner_text()
        assert RECIPIENT in body and BOSS.actor in body

    pdf = produced.package / "receipt.pdf"
    rendered = subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(pdf), str(tmp_path / "page")], capture_output=True
    )
    assert rendered.returncode == 0, rendered.stderr
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages and all(p.stat().st_size > 1000 for p in pages)
    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = "".join(text.split())
    for item in items:
        assert item["sha256"] in flat and "".join(item["path"].split()) in flat


def test_the_record_is_kept_and_a_second_disclosure_names_the_first(
    produced: Produced, tmp_path: Path
) -> None:
    station = produced.station
    first = produced.disclosure
    shown = station.json("disclose", "show", first["id"], roles=["auditor"])
    package = produced.package
    assert shown["package_sha256"] == sha256_of(package / "tagmanifest-sha256.txt")
    assert shown["manifest"] == (package / "manifest-sha256.txt").read_text()
    assert shown["tag_manifest"] == (package / "tagmanifest-sha256.txt").read_text()
    logged = access_log(station, "--type", "disclosure.produced")
    assert [e["sha256"] for e in logged] == [shown["package_sha256"]]
    disclosed = access_log(station, "--type", "clip.disclosed")
    assert {e["subject"]["id"] for e in disclosed} == {v["id"] for v in produced.videos}

    again = station.json(
        "disclose", "request", produced.videos[0]["id"], "--recipient", RECIPIENT.upper(),
        "--reason", "appeal",
    )  # fmt: skip
    assert again["earlier"] == [first["id"]]
    approve_as_another_person(station.data, again["id"], "appeal court order checked")
    second = station.json("disclose", "produce", again["id"], "--to", str(tmp_path / "second"))
    assert (
        f"Earlier-Disclosure: {first['id']}" in (tmp_path / "second" / "bag-info.txt").read_text()
    )
    assert second["earlier"] == [first["id"]]
    listed = station.json("disclose", "list", "--recipient", RECIPIENT, roles=["auditor"])
    assert [d["id"] for d in listed] == [first["id"], again["id"]]
    # Produced once: producing it again is refused, naming the package kept.
    twice = station.run("disclose", "produce", first["id"], "--to", str(tmp_path / "third"))
    assert twice.returncode == 2 and shown["package_sha256"] in twice.stderr


def test_a_refused_disclosure_is_never_produced(produced: Produced, tmp_path: Path) -> None:
    station = produced.station
    asked = station.json(
        "disclose", "request", produced.videos[1]["id"], "--recipient", "Press office",
        "--reason", "press enquiry",
    )  # fmt: skip
    settings = build_settings({}, {"EVIDENCE_AGENT_DATA_DIR": str(station.data)})
    st = open_station(settings, actor=BOSS.actor, create=False)
    try:
        refused = decide_disclosure(st, BOSS, asked["id"], "not a lawful recipient", approve=False)
        with pytest.raises(PermissionDeniedError):
            decide_disclosure(st, BOSS.__class__(
                Identity("clerk", 1001, frozenset()), frozenset({Role.CLERK}), None
            ), asked["id"], "approve", approve=True)  # fmt: skip
    finally:
        st.close()
    assert refused["state"] == "refused"
    result = station.run("disclose", "produce", asked["id"], "--to", str(tmp_path / "p"))
    assert result.returncode == 2 and "refused" in result.stderr


def test_a_corrupted_stored_copy_leaves_no_package(produced: Produced, tmp_path: Path) -> None:
    station = Station(tmp_path / "data")
    shutil.copytree(produced.station.data, station.data)
    clip = produced.videos[0]
    stored = station.object_path(clip["sha256"])
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[len(data) // 3] ^= 0x01
    stored.write_bytes(bytes(data))

    asked = station.json(
        "disclose", "request", clip["id"], "--recipient", "Prosecutor", "--reason", "charge",
    )  # fmt: skip
    approve_as_another_person(station.data, asked["id"], "charge checked")
    target = tmp_path / "package"
    result = station.run("disclose", "produce", asked["id"], "--to", str(target))
    assert result.returncode == 3, result.stderr
    assert f"stored copy of clip {clip['id']}" in result.stderr
    assert not target.exists()  # nothing unverified is handed over
    (refusal,) = [
        e
        for e in access_log(station, "--type", "access.refused")
        if e["subject"] == {"kind": "disclosure", "id": asked["id"]}
    ]
    assert "stored copy" in refusal["data"]["cause"]
    assert station.json("disclose", "show", asked["id"])["state"] == "approved"


def _refusals_of(station: Station, subject: dict[str, str]) -> list[dict[str, Any]]:
    return [e for e in access_log(station, "--type", "access.refused") if e["subject"] == subject]


def test_a_disclosure_row_edited_behind_the_logs_back_is_not_acted_on(
    produced: Produced, tmp_path: Path
) -> None:
    """What leaves the station, to whom and with whose approval is what the custody log says,
    not what the catalog was edited to say afterwards."""
    station = Station(tmp_path / "data")
    shutil.copytree(produced.station.data, station.data)
    first, second = (v["id"] for v in produced.videos[:2])
    asked = station.json(
        "disclose", "request", first, "--recipient", "Prosecutor", "--reason", "charge",
    )  # fmt: skip
    approve_as_another_person(station.data, asked["id"], "charge checked")
    # One more clip slipped into the approved disclosure.
    station.sql("UPDATE disclosures SET clips = ? WHERE id = ?", json.dumps([first, second]),
                asked["id"])  # fmt: skip
    target = tmp_path / "package"
    result = station.run("disclose", "produce", asked["id"], "--to", str(target))
    assert result.returncode == 3, result.stderr
    assert "its clips is" in result.stderr and "behind the custody log's back" in result.stderr
    assert not target.exists()
    (refusal,) = _refusals_of(station, {"kind": "disclosure", "id": asked["id"]})
    assert "in the custody log" in refusal["data"]["cause"]
    audit = station.run("verify")  # and the auditor's verify names it too
    assert audit.returncode == 3 and f"disclosure {asked['id']}" in audit.stdout, audit.stdout

    # A request whose requester was rewritten cannot then be approved by its real requester.
    mine = station.json(
        "disclose", "request", first, "--recipient", "Press", "--reason", "enquiry",
    )  # fmt: skip
    station.sql(
        "UPDATE disclosures SET requested_by = 'user:someone-else' WHERE id = ?", mine["id"]
    )
    own = station.run("disclose", "approve", mine["id"], "--reason", "ok", roles=["supervisor"])
    assert own.returncode == 3 and "its requester is 'user:someone-else'" in own.stderr


def test_a_derivative_plan_edited_after_its_approval_is_not_made(
    produced: Produced, tmp_path: Path
) -> None:
    from tests.e2e.test_redaction import PLAN, approve_derivative

    station = Station(tmp_path / "data")
    shutil.copytree(produced.station.data, station.data)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(PLAN))
    asked = station.json(
        "redact", "request", produced.videos[0]["id"], "--plan", str(plan_file),
        "--reason", "bystanders",
    )  # fmt: skip
    approve_derivative(station.data, asked["id"])
    station.sql("UPDATE derivatives SET plan = ? WHERE id = ?", json.dumps({"trim": PLAN["trim"]}),
                asked["id"])  # fmt: skip
    made = station.run("redact", "make", asked["id"])
    assert made.returncode == 3, made.stderr
    assert "its plan is" in made.stderr
    assert _refusals_of(station, {"kind": "clip", "id": asked["id"]})
