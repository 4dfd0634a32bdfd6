"""Retention services and `evidence-agent retention` on SeaweedFS: case links and holds keep the
bucket's Object Lock in step, and a deletion happens in the catalog only when the store did it."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlmodel import col, select

from evidence_agent.adapters.s3.locks import PERMANENT_RETAIN_UNTIL
from evidence_agent.adapters.s3.store import S3ObjectStore
from evidence_agent.catalog.models import Clip, CustodyEntry, RetentionRequest
from evidence_agent.domain.roles import Caller, Identity, Role
from evidence_agent.errors import StorageError
from evidence_agent.services.station import Station
from review.cases import CaseInput, create_case, link_clips, unlink_clips
from review.retention import approve_deletion, request_deletion, set_hold
from review.settings import ReviewSettings
from tests.integration.review.conftest import add_stored_clip
from tests.services.seaweedfs import SeaweedFS

pytestmark = pytest.mark.s3

REVIEW = ReviewSettings()
CLERK = Caller(Identity("clerk", 1001, frozenset()), frozenset({Role.CLERK}), None)
BOSS = Caller(Identity("boss", 1002, frozenset()), frozenset({Role.SUPERVISOR}), None)
SHORT = timedelta(seconds=4)
AGENT = Path(sys.executable).with_name("evidence-agent")
USER = pwd.getpwuid(os.getuid()).pw_name


def events(station: Station, clip_id: str) -> list[tuple[str, dict[str, Any]]]:
    with station.reading() as session:
        rows = session.exec(
            select(CustodyEntry)
            .where(CustodyEntry.subject_id == clip_id)
            .order_by(col(CustodyEntry.seq))
        ).all()
    return [(r.event_type, json.loads(r.entry)["data"]) for r in rows]


def clip_state(station: Station, clip_id: str) -> str:
    with station.reading() as session:
        row = session.get(Clip, clip_id)
        assert row is not None
        return row.state


def lock_of(s3_admin: Any, bucket: str, key: str) -> tuple[datetime, str]:
    until = s3_admin.get_object_retention(Bucket=bucket, Key=key)["Retention"]["RetainUntilDate"]
    try:
        hold = s3_admin.get_object_legal_hold(Bucket=bucket, Key=key)["LegalHold"]["Status"]
    except ClientError:
        hold = "none"
    return until, hold


def versions(s3_admin: Any, bucket: str, key: str) -> int:
    listing = s3_admin.list_object_versions(Bucket=bucket, Prefix=key)
    return len([v for v in listing.get("Versions", []) if v["Key"] == key])


def wait_past(when: datetime) -> None:
    time.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()) + 1.5)


def test_a_case_link_locks_the_object_for_good_and_a_hold_is_an_s3_legal_hold(
    station: Station, store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    first_lock = datetime.now(UTC) + timedelta(days=183)
    clip = add_stored_clip(station, store, tmp_path, first_lock, days_ago=1)
    key = store.key_for(clip.sha256)
    start, end = clip.recorded_start, clip.recorded_end
    case = CaseInput("C-9", "t", ["李四"], "cause", "seizure", None, ["100231"], start, end)
    create_case(station, CLERK, case, None)

    link_clips(station, CLERK, "C-9", [clip.id], "evidence")
    assert lock_of(s3_admin, evidence_bucket, key) == (PERMANENT_RETAIN_UNTIL, "none")
    changed = [d for t, d in events(station, clip.id) if t == "clip.retention_changed"]
    assert changed[-1]["to"]["class"] == "permanent"
    assert changed[-1]["store_lock"] == "kept indefinitely"

    [held] = set_hold(station, BOSS, [clip.id], None, "litigation")
    assert held["store_lock"] == "legal hold set"
    assert lock_of(s3_admin, evidence_bucket, key) == (PERMANENT_RETAIN_UNTIL, "ON")
    [lifted] = set_hold(station, BOSS, [clip.id], None, "litigation over", release=True)
    assert lifted["store_lock"] == "legal hold lifted"
    assert lock_of(s3_admin, evidence_bucket, key) == (PERMANENT_RETAIN_UNTIL, "OFF")

    # Unlinked, the clip is back to its class in the catalog; the store's lock is never cut.
    unlink_clips(station, CLERK, "C-9", [clip.id], "linked by mistake")
    changed = [d for t, d in events(station, clip.id) if t == "clip.retention_changed"]
    assert changed[-1]["to"]["class"] == "standard"
    assert changed[-1]["store_lock"] == "unchanged: locks are only extended"
    assert lock_of(s3_admin, evidence_bucket, key)[0] == PERMANENT_RETAIN_UNTIL


def test_a_deletion_the_store_refuses_changes_nothing_then_goes_once_the_lock_passes(
    station: Station, store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    until = datetime.now(UTC) + SHORT
    clip = add_stored_clip(station, store, tmp_path, until, days_ago=200)  # past 183 days
    key = store.key_for(clip.sha256)
    request_deletion(station, CLERK, clip.id, "past retention, no case")

    with pytest.raises(StorageError) as refused:
        approve_deletion(station, BOSS, REVIEW, clip.id, "approved")

    assert "COMPLIANCE retention until" in refused.value.message
    assert clip_state(station, clip.id) == "stored"
    assert versions(s3_admin, evidence_bucket, key) == 1
    with station.reading() as session:
        [pending] = session.exec(
            select(RetentionRequest).where(RetentionRequest.clip_id == clip.id)
        ).all()
    assert pending.state == "pending" and pending.decided_by is None
    kinds = [t for t, _ in events(station, clip.id)]
    assert "clip.deleted" not in kinds and "clip.object_removed" not in kinds
    last_type, last = events(station, clip.id)[-1]
    assert last_type == "access.refused" and last["action"] == "retention_approve"
    assert "COMPLIANCE retention until" in last["cause"]

    wait_past(until)
    result = approve_deletion(station, BOSS, REVIEW, clip.id, "approved")

    assert result.store == "removed" and result.warnings == []
    assert result.request["state"] == "approved" and result.request["requested_by"] == "user:clerk"
    assert clip_state(station, clip.id) == "deleted"
    assert [t for t, _ in events(station, clip.id)][-2:] == ["clip.deleted", "clip.object_removed"]
    assert versions(s3_admin, evidence_bucket, key) == 0


def test_retention_delete_on_s3_from_the_command_line(
    station: Station,
    store: S3ObjectStore,
    s3_admin: Any,
    evidence_bucket: str,
    seaweedfs: SeaweedFS,
    tmp_path: Path,
) -> None:
    locked = add_stored_clip(
        station, store, tmp_path, datetime.now(UTC) + timedelta(days=1), days_ago=200
    )
    soon = datetime.now(UTC) + SHORT
    expiring = add_stored_clip(station, store, tmp_path, soon, days_ago=200)
    roles_file = station.settings.data_dir / "roles.toml"
    env = {
        **os.environ,
        "EVIDENCE_AGENT_DATA_DIR": str(station.settings.data_dir),
        "EVIDENCE_AGENT__STATION__ID": station.settings.station_id,
        "EVIDENCE_AGENT__STORE__BACKEND": "s3",
        "EVIDENCE_AGENT__STORE__BUCKET": evidence_bucket,
        "EVIDENCE_AGENT__STORE__ENDPOINT": seaweedfs.endpoint,
        "AWS_ACCESS_KEY_ID": seaweedfs.identity.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.identity.secret_key,
    }
    env.pop("EVIDENCE_AGENT_CONFIG", None)

    def run(*args: str, role: str) -> subprocess.CompletedProcess[str]:
        roles_file.write_text(
            f'[roles.users]\n{USER} = ["{role}"]\n[review]\ndeletion_approval = "supervisor"\n'
        )
        roles_file.chmod(0o644)
        return subprocess.run(
            [str(AGENT), "retention", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    due = run("due", "--json", role="supervisor")
    assert due.returncode == 0, due.stderr
    assert {c["id"] for c in json.loads(due.stdout)} == {locked.id, expiring.id}
    for clip in (locked, expiring):
        asked = run("request", clip.id, "--reason", "past retention, no case", role="clerk")
        assert asked.returncode == 0, asked.stderr

    refused = run("delete", locked.id, "--reason", "approved", role="supervisor")
    assert refused.returncode == 2, refused.stderr
    assert "COMPLIANCE retention until" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert clip_state(station, locked.id) == "stored"
    assert versions(s3_admin, evidence_bucket, store.key_for(locked.sha256)) == 1

    wait_past(soon)
    done = run("delete", expiring.id, "--reason", "approved", "--json", role="supervisor")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["store"] == "removed"
    assert clip_state(station, expiring.id) == "deleted"
    assert versions(s3_admin, evidence_bucket, store.key_for(expiring.sha256)) == 0


def test_a_clip_tombstoned_before_its_object_went_is_finished_by_the_same_command(
    station: Station, store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    """What an earlier version of the agent left when the store refused: deleted in the catalog,
    object still in the bucket. `retention delete` removes it and logs the removal once."""
    until = datetime.now(UTC) + SHORT
    clip = add_stored_clip(station, store, tmp_path, until, days_ago=200)
    with station.transaction() as session:
        row = session.get(Clip, clip.id)
        assert row is not None
        row.state = "deleted"
        session.add(row)

    with pytest.raises(StorageError, match="COMPLIANCE retention until"):
        approve_deletion(station, BOSS, REVIEW, clip.id, "finish")
    assert "clip.object_removed" not in [t for t, _ in events(station, clip.id)]

    wait_past(until)
    assert approve_deletion(station, BOSS, REVIEW, clip.id, "finish").store == "removed"
    assert approve_deletion(station, BOSS, REVIEW, clip.id, "again").store == "removed"

    assert versions(s3_admin, evidence_bucket, store.key_for(clip.sha256)) == 0
    assert [t for t, _ in events(station, clip.id)].count("clip.object_removed") == 1


def test_a_clip_linked_and_held_while_spooled_is_locked_for_good_when_uploaded(
    station: Station, store: S3ObjectStore, s3_admin: Any, evidence_bucket: str, tmp_path: Path
) -> None:
    from evidence_agent.services.storing import store_pending

    clip = add_stored_clip(station, store, tmp_path, datetime.now(UTC) + SHORT, days_ago=1)
    # Make it a clip still waiting in the spool: a copy there, no object in the bucket yet.
    data = os.urandom(8192)
    sha = hashlib.sha256(data).hexdigest()
    station.spool.prepare()
    station.spool.path_of(sha).write_bytes(data)
    with station.transaction() as session:
        row = session.get(Clip, clip.id)
        assert row is not None
        row.sha256, row.size, row.state, row.stored_at = sha, len(data), "spooled", None
        session.add(row)
    case = CaseInput(
        "C-10", "t", ["李四"], "cause", "seizure", None, ["100231"], clip.recorded_start, None
    )
    create_case(station, CLERK, case, None)
    link_clips(station, CLERK, "C-10", [clip.id], "evidence")
    set_hold(station, BOSS, [clip.id], None, "litigation")

    report = store_pending(station)

    assert clip.id in report.stored
    assert lock_of(s3_admin, evidence_bucket, store.key_for(sha)) == (PERMANENT_RETAIN_UNTIL, "ON")
    [stored] = [d for t, d in events(station, clip.id) if t == "clip.stored"]
    assert stored["lock"] == ["kept for good", "legal hold set"]
