"""End to end: legal review, public notices and redaction under people's own OS accounts.

On a station installed as a service (tests/e2e/installed.py), a clerk, a supervisor
and a legal reviewer run the ordinary commands, which go through the daemon's local API: each
act is in the custody log under the account that did it, and an account without the role is
refused (exit 5) with the refusal logged once, under its name. The files a command reads (a
decision's text, a redaction plan) lie where only their owner may read them: the caller's own
process opens them."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.installed import Station, daemon_today
from tests.support import service_missing


@pytest.fixture(autouse=True, scope="module")
def tools() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} is not installed: scripts/setup.sh installs it")


def private_file(station: Station, owner: str, name: str, text: str) -> Path:
    """A file only `owner` may read: the station's service account cannot."""
    home = station.base / f"private-{owner}"
    home.mkdir(mode=0o700, exist_ok=True)
    shutil.chown(home, owner, owner)
    path = home / name
    path.write_text(text, encoding="utf-8")
    shutil.chown(path, owner, owner)
    path.chmod(0o600)
    return path


def events(station: Station, *types: str) -> list[dict[str, Any]]:
    args = [a for t in types for a in ("--type", t)]
    return station.access_log(*args)


def refusals_of(station: Station, user: str) -> list[dict[str, Any]]:
    return station.access_log("--type", "access.refused", "--actor", user)


def refused_once(station: Station, user: str, action: str, *args: str) -> None:
    """`args` run as `user` exits 5, and exactly one refusal of `action` is logged, theirs."""
    before = len(refusals_of(station, user))
    done = station.as_user(user, *args)
    assert done.returncode == 5, done.stderr
    added = refusals_of(station, user)[before:]
    assert [(e["actor"], e["data"]["action"]) for e in added] == [(f"user:{user}", action)]


def test_a_legal_review_is_requested_and_answered_under_each_persons_name(
    station: Station,
) -> None:
    clerk, reviewer = station.accounts.clerk, station.accounts.reviewer
    outsider = station.accounts.outsider
    case = "LR-" + uuid.uuid4().hex[:6]
    station.json_as(clerk, "case", "create", case, "--type", "licensing", "--reason", "a licence")

    refused_once(
        station, outsider, "legal_review_request",
        "legal-review", "request", case, "--reason", "not mine to send",
    )  # fmt: skip
    sent = station.json_as(clerk, "legal-review", "request", case, "--reason", "a major licence")
    assert sent["requested_by"] == f"user:{clerk}" and sent["working_days"] == 7
    # The opinion is the legal department's alone, not the clerk's who sent the case.
    refused_once(
        station, clerk, "legal_review_opinion",
        "legal-review", "opinion", case, "--opinion", "agree", "--reason", "fine",
    )  # fmt: skip
    extended = station.json_as(
        reviewer, "legal-review", "extend", case, "--days", "2", "--reason", "expert opinion"
    )
    assert extended["working_days"] == 9
    given = station.json_as(
        reviewer, "legal-review", "opinion", case, "--opinion", "agree", "--reason", "lawful"
    )
    assert given["opinion"] == "agree" and given["reviewer"] == f"user:{reviewer}"
    listed = station.as_user(reviewer, "legal-review", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"case {case}: agree on {given['given_on']}" in listed.stdout  # the same text

    logged = [
        (e["type"], e["actor"])
        for e in events(
            station, "legal_review.requested", "legal_review.extended", "legal_review.opinion"
        )
        if e["subject"]["id"] == case
    ]
    assert logged == [
        ("legal_review.requested", f"user:{clerk}"),
        ("legal_review.extended", f"user:{reviewer}"),
        ("legal_review.opinion", f"user:{reviewer}"),
    ]


def test_a_notice_is_added_from_the_clerks_own_file_and_published(station: Station) -> None:
    clerk, outsider = station.accounts.clerk, station.accounts.outsider
    number = "N-" + uuid.uuid4().hex[:6]
    decided = (daemon_today() - timedelta(days=3)).date().isoformat()

    def add(who: str) -> list[str]:
        decision = "当事人张三，电话13812345678，决定：责令改正。"
        text = private_file(station, who, "decision.txt", decision)
        return [
            "notice", "add", number, "--kind", "other", "--title", "责令改正决定",
            "--text-file", str(text), "--decided", decided, "--person", "张三",
        ]  # fmt: skip

    refused_once(station, outsider, "notice_write", *add(outsider), "--reason", "not mine")
    added = station.json_as(clerk, *add(clerk), "--reason", "decision recorded")
    assert added["number"] == number and added["decision_date"] == decided
    published = station.json_as(clerk, "notice", "publish", number, "--reason", "on time")
    assert published["published_on"]
    refused_once(station, outsider, "clocks_read", "notice", "list")
    listed = station.json_as(station.accounts.reviewer, "notice", "list")
    assert number in {n["number"] for n in listed}

    logged = [
        e for e in events(station, "notice.recorded", "notice.published")
        if e["subject"]["id"] == number
    ]  # fmt: skip
    assert [(e["type"], e["actor"]) for e in logged] == [
        ("notice.recorded", f"user:{clerk}"),
        ("notice.published", f"user:{clerk}"),
    ]
    # The decision's text came from the clerk's file, which the service account cannot open:
    # its personal data was found and taken out.
    assert logged[-1]["data"]["redactions"]


def test_a_redaction_is_requested_approved_by_another_person_and_made(station: Station) -> None:
    clerk, supervisor = station.accounts.clerk, station.accounts.supervisor
    outsider = station.accounts.outsider
    clip = station.videos[0]
    plan = {"blur": [{"start": 0.0, "end": 1.0, "x": 0, "y": 0, "w": 16, "h": 16}]}

    def request(who: str) -> list[str]:
        plan_file = private_file(station, who, "plan.json", json.dumps(plan))
        return ["redact", "request", clip["id"], "--plan", str(plan_file)]

    refused_once(station, outsider, "disclose_request", *request(outsider), "--reason", "curious")
    asked = station.json_as(clerk, *request(clerk), "--reason", "faces of bystanders")
    assert asked["requested_by"] == f"user:{clerk}" and asked["plan"]["blur"]
    derivative = asked["id"]
    refused_once(
        station, clerk, "disclose_approve", "redact", "approve", derivative, "--reason", "mine"
    )
    approved = station.json_as(
        supervisor, "redact", "approve", derivative, "--reason", "bystanders only"
    )
    assert approved["state"] == "approved" and approved["decided_by"] == f"user:{supervisor}"
    refused_once(station, outsider, "disclose_request", "redact", "make", derivative)
    made = station.json_as(clerk, "redact", "make", derivative)
    assert made["state"] == "made" and made["made_by"] == f"user:{clerk}"
    assert made["sha256"] and made["sha256"] != clip["sha256"]

    logged = [
        (e["type"], e["actor"])
        for e in events(
            station, "derivative.requested", "derivative.approved", "clip.derivative_made"
        )
        if e["data"].get("derivative") == derivative
    ]
    assert logged == [
        ("derivative.requested", f"user:{clerk}"),
        ("derivative.approved", f"user:{supervisor}"),
        ("clip.derivative_made", f"user:{clerk}"),
    ]
