"""End to end: on a station installed as a service, people ingest a volume and identify a dock
under their own accounts (tests/e2e/installed.py). The daemon reads a volume a person
names only through what that person's own process opens and passes to it."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.services.demo_recorder import make_demo_recorder
from tests.e2e.installed import Accounts, Station, installed_station
from tests.integration.test_docking_daemon import anonymous_copy

# The report `ingest --json` prints on the station itself: through the daemon, the same keys.
REPORT_KEYS = {
    "dock_session",
    "volume",
    "recorder",
    "state",
    "clock_skew_seconds",
    "clips",
    "not_ingested",
    "warnings",
    "store",
}


def _home(station: Station, user: str) -> Path:
    """A directory only `user` may enter, as their home would be."""
    home = station.base / f"home-{user}"
    if not home.exists():
        home.mkdir(mode=0o700)
        shutil.chown(home, user, user)
    return home


def _volume(station: Station, user: str, name: str, day: int, serial: str) -> Path:
    """A recorder volume in `user`'s home, theirs, with clips no other test makes."""
    start = datetime(2026, 10, day, 2, 0, tzinfo=UTC)
    demo = make_demo_recorder(_home(station, user) / name, serial=serial, start=start, clips=1)
    _give(demo.root, user)
    return demo.root


def _give(tree: Path, user: str) -> None:
    for path in (tree, *tree.rglob("*")):
        os.chown(path, pwd.getpwnam(user).pw_uid, -1, follow_symlinks=False)


def _tree(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file's bytes, size and modification time: what must not change on a volume."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), *_times(p))
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _times(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


def _events(station: Station, actor: str, *types: str) -> list[dict[str, Any]]:
    args = [a for t in types for a in ("--type", t)]
    return station.access_log("--actor", actor, *args)


def test_a_supervisor_ingests_a_volume_through_the_daemon_under_their_name(
    station: Station,
) -> None:
    supervisor = station.accounts.supervisor
    volume = _volume(station, supervisor, "recorder", 2, "B765432")
    before = _tree(volume)

    done = station.as_user(supervisor, "ingest", str(volume), "--recorder", "B765432", "--json")

    assert done.returncode == 1, done.stderr  # as on the station: the demo's cut-off clip
    report = json.loads(done.stdout)
    assert set(report) == REPORT_KEYS
    assert (report["recorder"], report["state"], report["volume"]) == (
        "B765432",
        "finished",
        str(volume),
    )
    assert {c["outcome"] for c in report["clips"]} == {"new"}
    assert {c["state"] for c in report["clips"]} == {"stored"}
    assert report["store"]["stored"] and not report["store"]["integrity_failures"]
    assert _tree(volume) == before  # read, never changed

    logged = _events(station, supervisor, "dock.started", "clip.ingested", "dock.finished")
    docks = {e["data"]["dock_session"] for e in logged if e["type"].startswith("dock.")}
    assert docks == {report["dock_session"]}
    ingested = {e["subject"]["id"] for e in logged if e["type"] == "clip.ingested"}
    assert ingested == {c["id"] for c in report["clips"]}
    assert {e["actor"] for e in logged} == {f"user:{supervisor}"}

    # The same person's text report, as on the station; docked again, nothing is read twice.
    again = station.as_user(supervisor, "ingest", str(volume), "--recorder", "B765432")
    assert again.returncode == 0, again.stderr
    assert "recorder B765432: 0 new clip(s)" in again.stdout


def test_an_account_without_the_role_is_refused_before_the_volume_is_read(
    station: Station,
) -> None:
    outsider = station.accounts.outsider
    volume = _volume(station, outsider, "recorder", 3, "C765432")

    refused = station.as_user(outsider, "ingest", str(volume), "--recorder", "C765432")

    assert refused.returncode == 5, refused.stderr
    assert "recorder_name" in refused.stderr
    last = station.access_log("--type", "access.refused", "--actor", outsider)[-1]
    assert last["data"]["action"] == "recorder_name"
    assert last["subject"]["id"] == "C765432"
    clips = station.json_as(station.accounts.clerk, "clips", "search", "--recorder", "C765432")
    assert clips == []


def test_a_volume_cannot_lead_the_daemon_into_the_station(station: Station) -> None:
    """Links and hard links into the station's private directory: the daemon reads none of
    them for the person, whose own process cannot open them."""
    supervisor = station.accounts.supervisor
    volume = _volume(station, supervisor, "hostile", 4, "D765432")
    secret = station.data / "private.mp4"
    secret.write_bytes(b"the station's own file " * 1000)
    shutil.chown(secret, station.accounts.service, station.accounts.service)
    secret.chmod(0o600)
    media = volume / "DCIM" / "100MEDIA"
    (media / "LINK0001.MP4").symlink_to(secret)
    (volume / "DCIM" / "200MEDIA").symlink_to(station.data, target_is_directory=True)
    os.link(secret, media / "HARD0001.MP4")  # root may link another's file; the person cannot
    _give(volume, supervisor)
    os.chown(media / "HARD0001.MP4", pwd.getpwnam(station.accounts.service).pw_uid, -1)

    done = station.as_user(supervisor, "ingest", str(volume), "--recorder", "D765432", "--json")

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    skipped = {n["source_path"]: n["reason"] for n in report["not_ingested"]}
    assert skipped["DCIM/100MEDIA/LINK0001.MP4"] == "symlink"
    assert skipped["DCIM/200MEDIA"] == "symlink"
    assert skipped["DCIM/100MEDIA/HARD0001.MP4"] == "unreadable"
    leaked = hashlib.sha256(secret.read_bytes()).hexdigest()
    assert leaked not in {c["sha256"] for c in report["clips"]}
    assert not any("200MEDIA" in c["source_path"] for c in report["clips"])


@pytest.fixture(scope="module")
def station(accounts: Accounts, program: Path) -> Iterator[Station]:
    # The daemon on its own clock: under libfaketime it was not seen to dock a folder's volume.
    with installed_station(accounts, program, docked_at_start=docked_at_start) as made:
        yield made


def docked_at_start(dock: Path) -> None:
    """Volumes no recorder can be named for, in the dock folder when the daemon starts."""
    for name, day in (("unlabelled", 5), ("unmounted", 6)):
        start = datetime(2026, 10, day, 2, 0, tzinfo=UTC)
        demo = make_demo_recorder(dock.parent.parent / f"demo-{name}", start=start, clips=1)
        anonymous_copy(demo, dock / name)


def _unidentified(station: Station, name: str) -> str:
    """The dock the daemon keeps for the volume `name` of `docked_at_start`."""
    volume = str(station.data / "dock" / name)
    deadline = time.monotonic() + 90
    while True:
        waiting = station.json_as(station.accounts.supervisor, "status")["unidentified_docks"]
        found = [d["dock_session"] for d in waiting if d["volume"] == volume]
        if found:
            return found[0]
        assert time.monotonic() < deadline, "the daemon kept no unidentified dock"
        time.sleep(0.5)


def test_a_supervisor_identifies_a_dock_through_the_daemon(station: Station) -> None:
    supervisor, outsider = station.accounts.supervisor, station.accounts.outsider
    dock_id = _unidentified(station, "unlabelled")
    args = ("dock", "identify", dock_id, "--recorder", "E765432")

    refused = station.as_user(outsider, *args, "--reason", "mine now")
    assert refused.returncode == 5, refused.stderr
    done = station.as_user(supervisor, *args, "--reason", "label fell off", "--json")

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == REPORT_KEYS
    assert (report["dock_session"], report["recorder"]) == (dock_id, "E765432")
    assert {c["state"] for c in report["clips"]} == {"stored"}
    (act,) = _events(station, supervisor, "dock.identified")
    assert act["reason"] == "label fell off" and act["data"]["dock_session"] == dock_id
    again = station.as_user(supervisor, *args, "--reason", "twice")
    assert again.returncode == 2 and "not waiting for identification" in again.stderr


def test_a_dock_identified_with_the_volume_where_the_person_has_it(station: Station) -> None:
    """--volume: the volume is read from where the person mounted it, by their process."""
    supervisor = station.accounts.supervisor
    dock_id = _unidentified(station, "unmounted")
    moved = _home(station, supervisor) / "remounted"
    shutil.copytree(station.data / "dock" / "unmounted", moved)
    _give(moved, supervisor)
    shutil.rmtree(station.data / "dock" / "unmounted")

    done = station.as_user(
        supervisor, "dock", "identify", dock_id, "--recorder", "F765432",
        "--reason", "the daemon unmounted it", "--volume", str(moved), "--json",
    )  # fmt: skip

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["dock_session"] == dock_id and report["volume"] == str(moved)
    assert report["clips"] and {c["state"] for c in report["clips"]} == {"stored"}
    identified = _events(station, supervisor, "dock.identified")[-1]
    assert identified["data"]["volume"] == str(moved)
