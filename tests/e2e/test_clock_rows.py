"""Legal reviews and notices are acted on as the custody log says, not as their catalog rows were edited."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.e2e.test_clocks import agent, ok


def _sql(data: Path, statement: str, *params: object) -> None:
    with sqlite3.connect(data / "catalog.sqlite3") as db:
        db.execute(statement, params)


def test_a_minors_notice_flipped_in_the_catalog_is_not_published(tmp_path: Path) -> None:
    data = tmp_path / "data"
    text = tmp_path / "decision.txt"
    text.write_text("A decision concerning a minor.", encoding="utf-8")
    ok(
        data, "notice", "add", "N-7", "--kind", "other", "--title", "Decision",
        "--text-file", str(text), "--decided", "2026-11-30", "--minor",
    )  # fmt: skip
    _sql(data, "UPDATE notices SET minors = 0 WHERE number = 'N-7'")

    published = agent(data, "notice", "publish", "N-7", "--reason", "due")
    assert published.returncode == 3, published.stderr
    assert "its minors flag is False in the catalog but True in the custody log" in published.stderr
    refusals = ok(data, "access-log", "--type", "access.refused")
    assert refusals[-1]["subject"] == {"kind": "notice", "id": "N-7"}
    audit = agent(data, "verify")
    assert audit.returncode == 3 and "notice N-7" in audit.stdout, audit.stdout


def test_a_review_clock_moved_in_the_catalog_is_refused_and_verify_names_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    ok(data, "case", "create", "L-9", "--type", "licensing")
    ok(data, "legal-review", "request", "L-9", "--reason", "a major licence")
    assert agent(data, "verify").returncode == 0
    _sql(data, "UPDATE legal_reviews SET due = '2030-01-01'")

    extended = agent(data, "legal-review", "extend", "L-9", "--days", "5", "--reason", "more")
    assert extended.returncode == 3, extended.stderr
    assert "its due is '2030-01-01' in the catalog" in extended.stderr
    audit = agent(data, "verify")
    assert audit.returncode == 3 and "legal review" in audit.stdout, audit.stdout


def test_every_clock_row_as_logged_passes_verify_until_one_is_edited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ok(data, "case", "create", "L-2", "--type", "licensing")
    ok(data, "legal-review", "request", "L-2", "--reason", "a major licence")
    ok(data, "legal-review", "extend", "L-2", "--days", "3", "--reason", "complex")
    ok(data, "legal-review", "opinion", "L-2", "--opinion", "agree", "--reason", "lawful")
    text = tmp_path / "decision.txt"
    text.write_text("Decision: the licence is granted to Li Si.", encoding="utf-8")
    ok(
        data, "notice", "add", "N-2", "--kind", "licence", "--title", "Licence",
        "--text-file", str(text), "--decided", "2026-11-30", "--person", "Li Si",
    )  # fmt: skip
    ok(data, "notice", "publish", "N-2", "--reason", "due")
    ok(data, "notice", "revoke", "N-2", "--reason", "revoked on appeal")
    ok(data, "notice", "withdraw", "N-2", "--reason", "revoked")
    ok(data, "statistics", "report", "--year", "2025", "--out", str(tmp_path / "stats"))
    audit = agent(data, "verify")
    assert audit.returncode == 0, audit.stdout
    assert "disclosure, notice, review, statistics and derivative row(s)" in audit.stdout

    _sql(data, "UPDATE statistics_reports SET year = 2026")  # "this year's report is done"
    audit = agent(data, "verify")
    assert audit.returncode == 3 and "its year is 2026 in the catalog" in audit.stdout
