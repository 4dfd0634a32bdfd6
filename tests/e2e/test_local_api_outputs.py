"""End to end: commands that write a directory, and `verify`, through the daemon on an installed station.

Each person's own process makes every file of the output (an audit bundle, a disclosure
package, the notice site, a statistics report) and the daemon writes through the descriptors
it passes: what lands is the person's, and the custody log names them. The station, its
accounts and its daemon are tests/e2e/installed.py's."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.installed import Station

TIMING = ("started_at", "seconds")  # the only parts of a report that differ from run to run


def home(station: Station, user: str, name: str) -> Path:
    """A directory of `user`'s own that nobody else may enter, the daemon's account included."""
    path = station.base / f"{name}-{user}"
    path.mkdir(mode=0o700)
    os.chown(path, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    return path


def owned_by(directory: Path, user: str) -> None:
    uid = pwd.getpwnam(user).pw_uid
    files = [p for p in directory.rglob("*")]
    assert files and all(p.stat().st_uid == uid for p in files)
    assert directory.stat().st_uid == uid


def last_event(station: Station, event_type: str) -> dict[str, Any]:
    rows = station.json_as(station.accounts.auditor, "access-log", "--type", event_type)
    assert rows, f"no {event_type} event"
    last: dict[str, Any] = rows[-1]
    return last


def without_timing(report: dict[str, Any]) -> dict[str, Any]:
    steps = [{k: v for k, v in s.items() if k != "seconds"} for s in report["steps"]]
    return {**{k: v for k, v in report.items() if k not in TIMING}, "steps": steps}


def test_an_auditor_exports_the_bundle_into_their_own_directory(station: Station) -> None:
    auditor = station.accounts.auditor
    bundle = home(station, auditor, "audit") / "bundle"

    summary = station.json_as(auditor, "audit", "export", str(bundle))

    assert summary["path"] == str(bundle) and summary["stations"][0]["entries"] > 0
    owned_by(bundle, auditor)  # made by the auditor's own process, with their rights
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # no staging left
    checked = station.as_user(auditor, "verify", "--bundle", str(bundle), "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    exported = last_event(station, "audit.exported")
    assert exported["actor"] == f"user:{auditor}"
    assert exported["data"]["directory"] == str(bundle)


def test_a_clerk_may_not_export_and_the_refusal_bears_their_name(station: Station) -> None:
    clerk = station.accounts.clerk
    bundle = home(station, clerk, "audit") / "bundle"

    refused = station.as_user(clerk, "audit", "export", str(bundle))

    assert refused.returncode == 5, refused.stderr
    assert not bundle.exists()
    refusal = last_event(station, "access.refused")
    assert refusal["actor"] == f"user:{clerk}" and refusal["data"]["action"] == "audit_export"


def verify_as(station: Station, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    return station.as_user(user, "verify", *args)


def test_station_verify_through_the_daemon_is_the_report_run_on_the_station(
    station: Station,
) -> None:
    auditor, service = station.accounts.auditor, station.accounts.service
    # The service's account opens the station itself (no role asked); the auditor's goes
    # through the daemon.
    here = verify_as(station, service, "--json")
    there = verify_as(station, auditor, "--json")
    assert here.returncode == there.returncode == 0, here.stderr + there.stderr
    assert without_timing(json.loads(there.stdout)) == without_timing(json.loads(here.stdout))
    assert verify_as(station, auditor).stdout == verify_as(station, service).stdout
    refused = verify_as(station, station.accounts.clerk)
    assert refused.returncode == 5, refused.stderr


def test_a_failed_station_verify_comes_back_with_its_report_and_exit_3(station: Station) -> None:
    auditor, service = station.accounts.auditor, station.accounts.service
    sha = station.videos[-1]["sha256"]
    stored = station.data / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    original = stored.read_bytes()
    mode = stored.stat().st_mode
    stored.chmod(0o600)
    try:
        stored.write_bytes(bytes([original[0] ^ 1]) + original[1:])  # one byte flipped
        here = verify_as(station, service)
        there = verify_as(station, auditor)
    finally:
        stored.write_bytes(original)
        stored.chmod(mode & 0o777)
    assert here.returncode == there.returncode == 3, there.stderr
    assert there.stdout == here.stdout and "INTEGRITY FAILURE" in there.stdout
    assert sha in there.stdout


def test_a_clerk_produces_a_disclosure_package_through_the_daemon(station: Station) -> None:
    clerk, supervisor = station.accounts.clerk, station.accounts.supervisor
    clip = station.videos[0]
    requested = station.json_as(
        clerk, "disclose", "request", clip["id"], "--recipient", "People's Court of X",
        "--reason", "court order 2026-201",
    )  # fmt: skip
    station.json_as(supervisor, "disclose", "approve", requested["id"], "--reason", "checked")
    package = home(station, clerk, "disclosure") / "package"

    shown = station.json_as(clerk, "disclose", "produce", requested["id"], "--to", str(package))

    assert shown["state"] == "produced" and shown["package"] == str(package)
    owned_by(package, clerk)
    (item,) = [i for i in shown["items"] if i["kind"] == "clip"]
    assert (package / item["path"]).stat().st_mode & 0o777 == 0o444
    checked = subprocess.run(
        [sys.executable, str(package / "verify_package.py"), str(package)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    produced = last_event(station, "disclosure.produced")
    assert produced["actor"] == f"user:{clerk}" and produced["data"]["package"] == str(package)
    disclosed = last_event(station, "clip.disclosed")
    assert disclosed["actor"] == f"user:{clerk}" and disclosed["subject"]["id"] == clip["id"]


def test_an_unapproved_package_is_refused_and_nothing_is_left(station: Station) -> None:
    clerk = station.accounts.clerk
    requested = station.json_as(
        clerk, "disclose", "request", station.videos[0]["id"], "--recipient", "Review body",
        "--reason", "review 2026-9",
    )  # fmt: skip
    package = home(station, clerk, "early") / "package"
    early = station.as_user(clerk, "disclose", "produce", requested["id"], "--to", str(package))
    assert early.returncode == 2 and "only an approved disclosure" in early.stderr
    assert not package.exists()


@pytest.mark.parametrize("user_role", ["clerk", "supervisor"])
def test_notices_are_exported_into_the_callers_directory(station: Station, user_role: str) -> None:
    user = getattr(station.accounts, user_role)
    site = home(station, user, "site") / "site"
    done = station.json_as(user, "notice", "export", str(site), "--reason", "weekly publication")
    assert done["directory"] == str(site)
    assert {p.name for p in site.iterdir()} == {"index.html", "feed.json"}
    owned_by(site, user)
    exported = last_event(station, "notices.exported")
    assert exported["actor"] == f"user:{user}" and exported["reason"] == "weekly publication"
    refused = station.as_user(station.accounts.auditor, "notice", "export", str(site))
    assert refused.returncode == 5, refused.stderr


def test_the_statistics_report_lands_in_the_callers_directory(station: Station) -> None:
    auditor = station.accounts.auditor
    out = home(station, auditor, "statistics") / "2026"
    done = station.json_as(auditor, "statistics", "report", "--year", "2026", "--out", str(out))
    assert set(done["files"]) == {"statistics.json", "statistics.csv", "statistics.html"}
    owned_by(out, auditor)
    reported = last_event(station, "statistics.reported")
    assert reported["actor"] == f"user:{auditor}"
    assert reported["data"]["files"] == done["files"]
    refused = station.as_user(station.accounts.clerk, "statistics", "report", "--year", "2026",
                              "--out", str(out))  # fmt: skip
    assert refused.returncode == 5, refused.stderr
