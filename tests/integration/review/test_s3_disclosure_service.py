"""Disclosure at the service level, two people and a station on SeaweedFS: request, approval, package."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bagit
import pytest
from sqlmodel import col, select

from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.catalog.models import CustodyEntry
from evidence_agent.domain.roles import Caller, Identity, Role
from evidence_agent.errors import InputError, PermissionDeniedError
from evidence_agent.services.station import Station
from publish.disclosure.package import produce
from publish.disclosure.requests import (
    DisclosureRequest,
    decide_disclosure,
    request_disclosure,
)
from tests.integration.review.conftest import add_stored_clip

pytestmark = pytest.mark.s3

CLERK = Caller(Identity("clerk", 1001, frozenset()), frozenset({Role.CLERK}), None)
BOSS = Caller(Identity("boss", 1002, frozenset()), frozenset({Role.SUPERVISOR}), None)
OTHER_BOSS = Caller(Identity("chief", 1003, frozenset()), frozenset({Role.SUPERVISOR}), None)


def logged_types(station: Station, subject: str) -> list[str]:
    with station.reading() as session:
        rows = session.exec(select(CustodyEntry).order_by(col(CustodyEntry.seq))).all()
    return [
        json.loads(r.entry)["type"] for r in rows if json.loads(r.entry)["subject"]["id"] == subject
    ]


def test_two_people_and_a_package_from_the_s3_store(
    station: Station, store: S3ObjectStore, tmp_path: Path
) -> None:
    lock = datetime.now(UTC) + timedelta(days=183)
    clips = [add_stored_clip(station, store, tmp_path, lock, days_ago=d) for d in (3, 2)]
    asked = request_disclosure(
        station,
        CLERK,
        DisclosureRequest("Review board", "complaint 88", None, [c.id for c in clips]),
    )
    with pytest.raises(PermissionDeniedError, match="disclose_approve needs the role supervisor"):
        decide_disclosure(station, CLERK, asked["id"], "fine", approve=True)
    # A supervisor's own request needs another supervisor.
    own = request_disclosure(
        station, BOSS, DisclosureRequest("Review board", "complaint 89", None, [clips[0].id])
    )
    with pytest.raises(PermissionDeniedError, match="two-person"):
        decide_disclosure(station, BOSS, own["id"], "fine", approve=True)
    assert decide_disclosure(station, OTHER_BOSS, own["id"], "ok", approve=True)["state"] == (
        "approved"
    )
    with pytest.raises(InputError, match="only an approved disclosure"):
        produce(station, CLERK, asked["id"], tmp_path / "too-early")

    approved = decide_disclosure(station, BOSS, asked["id"], "complaint checked", approve=True)
    assert approved["decided_by"] == "user:boss" and approved["requested_by"] == "user:clerk"
    bag = tmp_path / "package"
    result = produce(station, CLERK, asked["id"], bag)

    bagit.Bag(str(bag)).validate()  # every payload and tag file re-hashed
    for clip in clips:
        (item,) = [i for i in result["items"] if i["clip"] == clip.id]
        assert hashlib.sha256((bag / item["path"]).read_bytes()).hexdigest() == clip.sha256
    assert (
        result["package_sha256"]
        == hashlib.sha256((bag / "tagmanifest-sha256.txt").read_bytes()).hexdigest()
    )
    assert logged_types(station, asked["id"]) == [
        "disclosure.requested",
        "access.refused",
        "access.refused",
        "disclosure.approved",
        "disclosure.produced",
    ]
    assert "clip.disclosed" in logged_types(station, clips[0].id)
    # The second request to the same recipient named the first.
    assert own["earlier"] == [asked["id"]]
