"""Retention classes and dates from the station's policy, deletion blockers, two-person approval."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from evidence_agent.domain.retention import (
    ClipFacts,
    DeletionApproval,
    Ground,
    RetentionClass,
    RetentionPolicy,
    approval_blocker,
    artefact_retain_until,
    deletion_blockers,
    parse_grounds,
    retention_at_cataloguing,
    retention_for,
    whole_second,
)

END = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DOCKED = END + timedelta(hours=1)
POLICY = RetentionPolicy()
FACTS = ClipFacts(
    recorded_end=END,
    ingested_at=DOCKED,
    important=False,
    linked_cases=0,
    grounds=frozenset(),
    legal_hold=False,
    state="stored",
    kept_class="standard",
    kept_until=DOCKED + timedelta(days=183),
)


def test_standard_footage_is_kept_183_days_from_its_cataloguing_by_default() -> None:
    r = retention_for(FACTS, POLICY)
    assert r.cls is RetentionClass.STANDARD and r.until == DOCKED + timedelta(days=183)


def test_the_configured_period_is_used() -> None:
    policy = RetentionPolicy(standard=timedelta(days=400), important=timedelta(days=1825))
    assert retention_for(FACTS, policy).until == DOCKED + timedelta(days=400)
    important = retention_for(replace(FACTS, important=True), policy)
    assert important.cls is RetentionClass.IMPORTANT
    assert important.until == DOCKED + timedelta(days=1825)


def test_important_footage_is_kept_longer() -> None:
    r = retention_for(replace(FACTS, important=True), POLICY)
    assert r.cls is RetentionClass.IMPORTANT and r.until == DOCKED + timedelta(days=3 * 365)


def test_the_later_of_recording_end_and_cataloguing_counts() -> None:
    # Recorded two years before it was docked (a reset clock, an old card): it is kept for the
    # whole period from its cataloguing, never arriving already expired.
    old = replace(FACTS, recorded_end=DOCKED - timedelta(days=730))
    assert retention_for(old, POLICY).until == DOCKED + timedelta(days=183)
    # A recording that ends after its cataloguing (a recorder clock ahead) counts from its end.
    ahead = replace(FACTS, recorded_end=DOCKED + timedelta(days=2))
    assert retention_for(ahead, POLICY).until == DOCKED + timedelta(days=185)


def test_without_a_recording_time_retention_counts_from_cataloguing() -> None:
    r = retention_for(replace(FACTS, recorded_end=None), POLICY)
    assert r.until == FACTS.ingested_at + timedelta(days=183)


def test_dates_are_whole_seconds_rounded_up() -> None:
    # What an S3 Object Lock keeps (whole seconds) is then exactly the catalog's date.
    docked = DOCKED + timedelta(microseconds=250)
    r = retention_for(replace(FACTS, ingested_at=docked), POLICY)
    assert r.until == DOCKED + timedelta(days=183, seconds=1)
    assert whole_second(DOCKED) == DOCKED


def test_a_new_clip_gets_the_same_date_as_the_rules_give_it_later() -> None:
    at_ingest = retention_at_cataloguing(END, DOCKED, True, POLICY)
    assert at_ingest == retention_for(replace(FACTS, important=True, state="spooled"), POLICY)


def test_artefacts_are_kept_for_the_longest_dated_class() -> None:
    policy = RetentionPolicy(standard=timedelta(days=400), important=timedelta(days=1825))
    assert artefact_retain_until(policy, DOCKED) == DOCKED + timedelta(days=1825)
    assert artefact_retain_until(POLICY, DOCKED) == DOCKED + timedelta(days=1095)


@pytest.mark.parametrize(
    "facts",
    [
        replace(FACTS, linked_cases=1),
        replace(FACTS, grounds=frozenset({Ground.OBSTRUCTION})),
        replace(FACTS, grounds=frozenset({Ground.MAJOR_EMERGENCY}), important=True),
        replace(FACTS, grounds=frozenset({Ground.MASS_INCIDENT})),
        replace(FACTS, grounds=frozenset({Ground.MAJOR_COMPLEX})),
    ],
)
def test_case_evidence_and_the_grounds_of_the_rules_are_permanent(facts: ClipFacts) -> None:
    r = retention_for(facts, POLICY)
    assert r.cls is RetentionClass.PERMANENT and r.until is None


def test_case_evidence_follows_the_links_not_a_stored_ground() -> None:
    # A stale case_evidence ground without links does not keep a clip forever.
    r = retention_for(replace(FACTS, grounds=frozenset({Ground.CASE_EVIDENCE})), POLICY)
    assert r.cls is RetentionClass.STANDARD
    linked = retention_for(replace(FACTS, linked_cases=2), POLICY)
    assert linked.grounds == (Ground.CASE_EVIDENCE,)


def test_policy_refuses_less_than_the_national_minimum() -> None:
    with pytest.raises(ValueError, match="at least 183 days"):
        RetentionPolicy(standard=timedelta(days=90))
    RetentionPolicy(standard=timedelta(days=183))  # the floor itself is allowed
    with pytest.raises(ValueError, match="important"):
        RetentionPolicy(standard=timedelta(days=365), important=timedelta(days=200))


def test_nothing_blocks_a_stored_clip_past_retention() -> None:
    assert deletion_blockers(FACTS, POLICY, END + timedelta(days=184)) == []


def test_blockers_before_retention_ends() -> None:
    blockers = deletion_blockers(FACTS, POLICY, END + timedelta(days=100))
    assert len(blockers) == 1 and "kept until" in blockers[0]


def test_the_catalog_may_keep_a_clip_longer_than_the_rules() -> None:
    kept = replace(FACTS, kept_until=END + timedelta(days=400))
    assert deletion_blockers(kept, POLICY, END + timedelta(days=200))
    assert deletion_blockers(
        replace(FACTS, kept_class="permanent"), POLICY, END + timedelta(days=999)
    )


@pytest.mark.parametrize(
    ("facts", "words"),
    [
        (replace(FACTS, legal_hold=True), "legal hold"),
        (replace(FACTS, linked_cases=1), "permanently (case_evidence)"),
        (replace(FACTS, state="spooled"), "not stored"),
        (replace(FACTS, state="deleted"), "already deleted"),
    ],
)
def test_hold_links_and_state_block_a_deletion(facts: ClipFacts, words: str) -> None:
    blockers = deletion_blockers(facts, POLICY, END + timedelta(days=1000))
    assert any(words in b for b in blockers), blockers


def test_two_person_rule() -> None:
    two = DeletionApproval.TWO_PERSON
    assert approval_blocker(two, "user:clerk", "user:boss") is None
    assert "two-person" in (approval_blocker(two, "user:boss", "user:boss") or "")
    assert "request" in (approval_blocker(two, None, "user:boss") or "")


def test_a_supervisor_alone_where_configured() -> None:
    assert approval_blocker(DeletionApproval.SUPERVISOR, None, "user:boss") is None
    assert approval_blocker(DeletionApproval.SUPERVISOR, "user:boss", "user:boss") is None


def test_grounds_from_the_catalog_ignore_unknown_names() -> None:
    assert parse_grounds(["obstruction", "nonsense"]) == frozenset({Ground.OBSTRUCTION})
