"""Public notices: due in 7 or 20 working days across the National Day week, withdrawn within 3
working days of a revocation (an adjusted Saturday counting), personal data redacted, minors
never published; the exported site looked at in Chromium."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlmodel import col, select

from evidence_agent.catalog.models import CustodyEntry
from evidence_agent.domain.roles import Role
from evidence_agent.errors import InputError, PermissionDeniedError
from evidence_agent.services.station import Station
from publish.notice_site import export_notices
from publish.notices import (
    NoticeInput,
    add_notice,
    list_notices,
    publish_notice,
    revoke_decision,
    withdraw_notice,
)
from tests.browser import chromium_page
from tests.unit.review.fakes import FixedClock, caller

CLERK = caller(Role.CLERK, user="clerk")
AUDITOR = caller(Role.AUDITOR, user="auditor")

SECRETS = (
    "110101199003071234",
    "13812345678",
    "东直门南大街3号院",
    "6222021234567890123",
    "王五",
    "张三",
)
BODY = (
    "当事人张三（身份证号码110101199003071234，电话13812345678，"
    "住址：北京市东城区东直门南大街3号院2号楼501室）未按规定设置安全标志，"
    "罚款已缴入账户6222021234567890123，证人王五。决定：罚款人民币2000元。"
)


def _on(day: date, clock: FixedClock) -> None:
    clock.time = datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def _notice(station: Station, number: str, kind: str, decided: date, **kw: object) -> dict:  # type: ignore[type-arg]
    return add_notice(
        station,
        CLERK,
        NoticeInput(
            number=number,
            kind=kind,
            title=f"关于张三的{number}决定",
            body=BODY,
            decision_date=decided,
            persons=("张三", "王五"),
            **kw,  # type: ignore[arg-type]
        ),
    )


def _events(station: Station, kind: str) -> list[dict[str, object]]:
    with station.reading() as session:
        rows = session.exec(select(CustodyEntry).order_by(col(CustodyEntry.seq))).all()
    return [d for d in (json.loads(r.entry) for r in rows) if d["type"] == kind]


def test_publication_is_due_in_working_days_over_the_national_day_week(
    station: Station, clock: FixedClock
) -> None:
    _on(date(2026, 9, 25), clock)
    # A penalty decided Friday 25 September (the Mid-Autumn Festival, off): Mon 28 - Wed 30,
    # Oct 1-7 off, Thu 8, Fri 9, Sat 10 (worked in lieu), Mon 12.
    assert _notice(station, "P-1", "penalty", date(2026, 9, 25))["due"] == "2026-10-12"
    # Another decision of Friday 18 September: 20 working days; Sun 20 and Sat 10 worked,
    # Fri 25 and Oct 1-7 off: 20-24 (5), 28-30 (8), Oct 8-10 (11), 12-16 (16), 19-22 (20).
    assert _notice(station, "O-1", "other", date(2026, 9, 18))["due"] == "2026-10-22"
    # A licence of Thursday 5 November: only weekends in the way.
    assert _notice(station, "L-1", "licence", date(2026, 11, 5))["due"] == "2026-11-16"

    _on(date(2026, 10, 12), clock)
    published = publish_notice(station, CLERK, "P-1", "on the platform")
    assert published["publication"] == "on_time"
    event = _events(station, "notice.published")[-1]
    assert event["data"]["redactions"] == {  # type: ignore[index]
        "address": 1,
        "bank_account": 1,
        "id_number": 1,
        "person": 2,
        "phone": 1,
    }
    _on(date(2026, 10, 23), clock)
    overdue = list_notices(station, AUDITOR, overdue=True)
    assert [n["number"] for n in overdue] == ["O-1"]
    assert publish_notice(station, CLERK, "O-1", "late")["publication"] == "late"


def test_a_notice_is_withdrawn_within_3_working_days_of_a_revocation(
    station: Station, clock: FixedClock
) -> None:
    _on(date(2026, 9, 21), clock)
    _notice(station, "P-2", "penalty", date(2026, 9, 21))
    _notice(station, "P-3", "penalty", date(2026, 9, 21))
    publish_notice(station, CLERK, "P-2", "published")
    publish_notice(station, CLERK, "P-3", "published")
    _on(date(2026, 9, 30), clock)
    # Revoked Wednesday 30 September: Oct 1-7 off, Thu 8, Fri 9, Sat 10 (worked in lieu).
    revoked = revoke_decision(station, CLERK, "P-2", None, "revoked on review")
    assert revoked["withdrawal_due"] == "2026-10-10"
    revoke_decision(station, CLERK, "P-3", date(2026, 9, 30), "revoked by the court")
    _on(date(2026, 10, 9), clock)
    assert withdraw_notice(station, CLERK, "P-2", "decision revoked")["withdrawal"] == "on_time"
    assert _events(station, "notice.withdrawn")[-1]["data"]["on_time"] is True  # type: ignore[index]
    _on(date(2026, 10, 10), clock)  # the adjusted Saturday is the last day, not past it
    assert list_notices(station, AUDITOR, overdue=True) == []
    _on(date(2026, 10, 12), clock)
    assert [n["number"] for n in list_notices(station, AUDITOR, overdue=True)] == ["P-3"]
    assert withdraw_notice(station, CLERK, "P-3", "decision revoked")["withdrawal"] == "late"


def test_a_notice_concerning_a_minor_is_never_published(
    station: Station, clock: FixedClock
) -> None:
    _on(date(2026, 11, 5), clock)
    _notice(station, "M-1", "penalty", date(2026, 11, 5), minors=True)
    with pytest.raises(InputError, match="minor"):
        publish_notice(station, CLERK, "M-1", "publish")
    assert _events(station, "access.refused")[-1]["data"]["action"] == "notice_publish"  # type: ignore[index]
    _on(date(2026, 12, 1), clock)
    assert list_notices(station, AUDITOR)[0]["publication"] == "withheld"
    with pytest.raises(PermissionDeniedError):
        publish_notice(station, AUDITOR, "M-1", "publish")


def test_the_exported_site_shows_the_notices_and_no_personal_data(
    station: Station, clock: FixedClock, tmp_path: Path
) -> None:
    _on(date(2026, 11, 2), clock)
    for number in ("P-4", "P-5", "P-6"):
        _notice(station, number, "penalty", date(2026, 11, 2))
        publish_notice(station, CLERK, number, "published")
    _notice(station, "M-2", "penalty", date(2026, 11, 2), minors=True)
    _notice(station, "P-7", "licence", date(2026, 11, 2))  # not published yet
    revoke_decision(station, CLERK, "P-6", None, "revoked")
    withdraw_notice(station, CLERK, "P-6", "revoked")
    result = export_notices(station, CLERK, tmp_path / "site", "weekly publication")
    assert result["notices"] == 2
    exported = _events(station, "notices.exported")[-1]
    assert exported["data"]["notices"] == ["P-4", "P-5"]  # type: ignore[index]
    feed = json.loads((tmp_path / "site" / "feed.json").read_text(encoding="utf-8"))
    assert [n["number"] for n in feed["notices"]] == ["P-4", "P-5"]

    with chromium_page() as page:
        page.goto((tmp_path / "site" / "index.html").as_uri())
        rows = page.locator("#notices tbody tr")
        assert rows.count() == 2
        assert rows.nth(0).locator("td").count() == 5
        for i in range(2):
            box = rows.nth(i).bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0
        text = page.locator("body").inner_text()
    assert "P-4" in text and "P-5" in text
    assert "罚款人民币2000元" in text  # the decision itself is public
    for gone in ("M-2", "P-6", "P-7"):
        assert gone not in text
    for secret in SECRETS:
        assert secret not in text, secret
        assert secret not in json.dumps(feed, ensure_ascii=False), secret
