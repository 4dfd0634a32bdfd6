"""The custody log's vocabulary: every event type, the kind of subject it names and its data fields."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from evidence_agent.custody.events import CustodyEvent


class Subject(StrEnum):
    """What an event is about: `subject.kind` in the entry, with `subject.id` naming it."""

    CLIP = "clip"  # the clip's id
    CASE = "case"  # the case number
    RECORDER = "recorder"  # the recorder's serial
    DOCK = "dock"  # the dock session's id
    DEVICE = "device"  # USB storage not read: its USB serial, else its device node
    STATION = "station"  # the station's id
    NOTICE = "notice"  # the public notice's number
    DISCLOSURE = "disclosure"  # the disclosure's id


# The fields of a clip.ingested event; `verify` cross-checks the catalog's clip rows against
# all but `probe_error`, and a bundle's clips.jsonl carries them. Events written since the log
# vouches for a clip's retention also hold its class and keep-until time at cataloguing
# (INGEST_RETENTION_FIELDS), which the catalog keeps until a clip.retention_changed.
INGEST_FIELDS = (
    "size",
    "blake3",
    "sm3",
    "media_kind",
    "source_path",
    "source_path_hex",
    "recorded_start",
    "recorded_end",
    "time_source",
    "duration_seconds",
    "ingested_at",
    "recorder",
    "officer",
    "unit",
    "important",
    "flags",
    "dock_session",
)

INGEST_RETENTION_FIELDS = ("retention_class", "retention_until")

# What case.created records: the case as `case show` gives it, without its footage.
CASE_FIELDS = (
    "number",
    "title",
    "parties",
    "cause_of_action",
    "enforcement_type",
    "full_recording_required",
    "unit",
    "handling_officers",
    "action_start",
    "action_end",
    "case_file_due",
    "state",
    "created_at",
    "closed_at",
    "clips",
)

_DEVICE_FIELDS = ("dock_session", "device", "usb")
_VIEW = ("roles",)  # every view (guard.record_view) records the viewer's roles


class EventType(StrEnum):
    """Every type of custody event, its value the `type` written in the log.

    Each member declares the subject kinds it is written with (the first is the usual one) and
    the keys of its `data`: `required` in every event of the type, `optional` in some. The
    table in docs/audit.md says who writes each one and when (tests/unit/custody keeps the two
    in step). Build events with `event()`: it checks the data's keys and gives the log plain
    strings, which its fast encoder takes."""

    _value_: str
    subjects: tuple[Subject, ...]
    required: frozenset[str]
    fields: frozenset[str]

    def __new__(
        cls,
        value: str,
        subjects: Subject | tuple[Subject, ...],
        required: Iterable[str],
        optional: Iterable[str] = (),
    ) -> EventType:
        member = str.__new__(cls, value)
        member._value_ = value
        member.subjects = subjects if isinstance(subjects, tuple) else (subjects,)
        member.required = frozenset(required)
        member.fields = member.required | frozenset(optional)
        return member

    @property
    def optional(self) -> frozenset[str]:
        return self.fields - self.required

    # -- docking and ingest
    DOCK_STARTED = (
        "dock.started",
        Subject.RECORDER,
        ("dock_session", "volume", "identity", "clock_skew_seconds"),
    )
    FILE_NOT_INGESTED = (
        "file.not_ingested",
        Subject.RECORDER,
        ("source_path", "detail", "dock_session"),
    )
    CLIP_INGESTED = (
        "clip.ingested",
        Subject.CLIP,
        (*INGEST_FIELDS, "probe_error"),
        INGEST_RETENTION_FIELDS,
    )
    CLIP_SEEN_AGAIN = (
        "clip.seen_again",
        Subject.CLIP,
        ("recorder", "source_path", "dock_session"),
    )
    DOCK_FINISHED = (
        "dock.finished",
        (Subject.RECORDER, Subject.DOCK),
        ("dock_session", "state"),
        ("clips_new", "clips_known", "files_not_ingested", "recovered"),
    )
    DOCK_UNIDENTIFIED = (
        "dock.unidentified",
        Subject.DOCK,
        ("dock_session", "volume", "source", "files", "bytes", "oldest_file_at"),
        ("usb",),
    )
    DOCK_IDENTIFIED = ("dock.identified", Subject.DOCK, ("dock_session", "recorder", "volume"))
    DOCK_REFUSED = ("dock.refused", Subject.DEVICE, _DEVICE_FIELDS)
    DOCK_FAILED = ("dock.failed", Subject.DEVICE, _DEVICE_FIELDS)
    RECORDER_IDENTITY_MISMATCH = (
        "recorder.identity_mismatch",
        Subject.RECORDER,
        ("registry_serial", "identity_serial", "volume"),
    )
    CLIP_ERASED_FROM_RECORDER = (
        "clip.erased_from_recorder",
        Subject.CLIP,
        ("recorder", "source_path", "source_path_hex", "size", "dock_session", "store"),
    )

    # -- the object store
    CLIP_STORED = (
        "clip.stored",
        Subject.CLIP,
        ("store", "key", "size", "stored_at", "checked_by", "lock", "retain_until"),
    )

    # -- the recorder registry
    RECORDER_ENROLLED = (
        "recorder.enrolled",
        Subject.RECORDER,
        (
            "usb_serial",
            "usb_vendor_id",
            "usb_model_id",
            "vendor",
            "model",
            "unit",
            "enrolled_at",
        ),
    )
    RECORDER_ASSIGNED = (
        "recorder.assigned",
        Subject.RECORDER,
        ("officer", "start", "previous_officer"),
    )
    RECORDER_UNASSIGNED = ("recorder.unassigned", Subject.RECORDER, ("officer", "start", "end"))

    # -- the station and its log
    KEY_CREATED = ("key.created", Subject.STATION, ("verifier_key",))
    KEY_ROTATED = ("key.rotated", Subject.STATION, ("verifier_key",))
    AUDIT_EXPORTED = ("audit.exported", Subject.STATION, ("directory",))

    # -- cases
    CASE_CREATED = ("case.created", Subject.CASE, CASE_FIELDS)
    CASE_CLOSED = ("case.closed", Subject.CASE, ("closed_at", "clips"), ("incomplete_override",))
    CASE_CLIP_LINKED = ("case.clip_linked", Subject.CLIP, ("case",))
    CASE_CLIP_UNLINKED = ("case.clip_unlinked", Subject.CLIP, ("case",))
    CASE_DOCUMENT_ADDED = (
        "case.document_added",
        Subject.CASE,
        ("document", "name", "size", "store"),
    )

    # -- legal review, public notices, statistics (the clocks of the three systems)
    LEGAL_REVIEW_REQUESTED = (
        "legal_review.requested",
        Subject.CASE,
        ("review", "requested_on", "due", "working_days", "case_file"),
        ("incomplete_override",),
    )
    LEGAL_REVIEW_EXTENDED = (
        "legal_review.extended",
        Subject.CASE,
        ("review", "working_days", "due"),
    )
    LEGAL_REVIEW_OPINION = (
        "legal_review.opinion",
        Subject.CASE,
        ("review", "opinion", "given_on", "due", "on_time", "working_days_taken"),
    )
    NOTICE_RECORDED = (
        "notice.recorded",
        Subject.NOTICE,
        ("kind", "title", "decision_date", "due", "case", "minors"),
    )
    NOTICE_PUBLISHED = (
        "notice.published",
        Subject.NOTICE,
        ("published_on", "due", "on_time", "redactions"),
    )
    NOTICE_DECISION_REVOKED = (
        "notice.decision_revoked",
        Subject.NOTICE,
        ("revoked_on", "withdrawal_due"),
    )
    NOTICE_WITHDRAWN = (
        "notice.withdrawn",
        Subject.NOTICE,
        ("withdrawn_on", "due", "on_time"),
    )
    NOTICES_EXPORTED = (
        "notices.exported",
        Subject.STATION,
        ("directory", "notices", "feed_sha256"),
    )
    STATISTICS_REPORTED = (
        "statistics.reported",
        Subject.STATION,
        ("period_start", "period_end", "year", "files"),
    )

    # -- retention
    CLIP_RETENTION_CHANGED = (
        "clip.retention_changed",
        Subject.CLIP,
        ("from", "to", "grounds", "cause", "store_lock"),
    )
    CLIP_RETENTION_GROUND_SET = ("clip.retention_ground_set", Subject.CLIP, ("ground",))
    CLIP_LEGAL_HOLD_SET = ("clip.legal_hold_set", Subject.CLIP, ("case", "store_lock"))
    CLIP_LEGAL_HOLD_RELEASED = ("clip.legal_hold_released", Subject.CLIP, ("case", "store_lock"))
    RETENTION_DELETION_REQUESTED = (
        "retention.deletion_requested",
        Subject.CLIP,
        ("request", "retention_class", "retention_until"),
    )
    CLIP_DELETED = (
        "clip.deleted",
        Subject.CLIP,
        (
            "request",
            "deletion_approval",
            "retention_class",
            "retention_until",
            "size",
            "recorded_start",
            "recorded_end",
            "officer",
            "recorder",
            "unit",
            "source_path",
            "store",
        ),
    )
    CLIP_OBJECT_REMOVED = ("clip.object_removed", Subject.CLIP, ("store", "outcome"))

    # -- retrieval
    CLIP_RETRIEVED = (
        "clip.retrieved",
        Subject.CLIP,
        ("retrieval", "case", "target", "size", "verified", "store", "roles"),
    )
    CLIP_INTEGRITY_FAILED = (
        "clip.integrity_failed",
        Subject.CLIP,
        ("action", "retrieval", "cause", "store", "handed_over"),
    )
    RETRIEVAL_RECEIPT = (
        "retrieval.receipt",
        Subject.STATION,
        ("retrieval", "case", "receipt", "receipt_sha256", "clips", "not_handed_over"),
        ("documents", "documents_not_handed_over"),  # a case's documents, by id
    )

    # -- disclosure
    DISCLOSURE_REQUESTED = (
        "disclosure.requested",
        Subject.DISCLOSURE,
        ("case", "clips", "documents", "recipient", "earlier", "roles"),
        ("derivatives",),
    )
    DISCLOSURE_APPROVED = ("disclosure.approved", Subject.DISCLOSURE, ("requested_by", "roles"))
    DISCLOSURE_REFUSED = ("disclosure.refused", Subject.DISCLOSURE, ("requested_by", "roles"))
    CLIP_DISCLOSED = (
        "clip.disclosed",
        Subject.CLIP,
        ("disclosure", "recipient", "file", "size", "verified", "store"),
        ("derivative",),  # a redacted derivative of the clip was disclosed, not the original
    )
    DISCLOSURE_PRODUCED = (
        "disclosure.produced",
        Subject.DISCLOSURE,
        (
            "recipient",
            "package",
            "package_sha256",
            "manifest_sha256",
            "payload_bytes",
            "clips",
            "documents",
            "checkpoint_size",
            "earlier",
            "roles",
        ),
        ("derivatives",),
    )

    # -- redacted derivatives
    DERIVATIVE_REQUESTED = (
        "derivative.requested",
        Subject.CLIP,
        ("derivative", "plan", "plan_sha256", "roles"),
    )
    DERIVATIVE_APPROVED = (
        "derivative.approved",
        Subject.CLIP,
        ("derivative", "requested_by", "roles"),
    )
    DERIVATIVE_REFUSED = (
        "derivative.refused",
        Subject.CLIP,
        ("derivative", "requested_by", "roles"),
    )
    CLIP_DERIVATIVE_MADE = (
        "clip.derivative_made",
        Subject.CLIP,
        (
            "derivative",
            "parent_sha256",
            "plan",
            "plan_sha256",
            "tool",
            "size",
            "duration_seconds",
            "store",
            "retain_until",
            "roles",
        ),
    )

    # -- views and refusals
    CLIPS_SEARCHED = ("clips.searched", Subject.STATION, (*_VIEW, "query", "clips"))
    CASE_VIEWED = ("case.viewed", Subject.CASE, (*_VIEW, "command"), ("clips", "complete"))
    RETENTION_DUE_LISTED = ("retention.due_listed", Subject.STATION, (*_VIEW, "clips", "as_of"))
    DISCLOSURES_LISTED = (
        "disclosures.listed",
        Subject.STATION,
        (*_VIEW, "recipient", "disclosures"),
    )
    DISCLOSURE_VIEWED = ("disclosure.viewed", Subject.DISCLOSURE, (*_VIEW, "state"))
    ACCESS_LOG_READ = ("access_log.read", Subject.STATION, (*_VIEW, "query", "entries"))
    CLIP_PROVED = ("clip.proved", Subject.CLIP, (*_VIEW, "tree_size", "events"))
    ACCESS_REFUSED = (
        "access.refused",
        (
            Subject.STATION,
            Subject.CASE,
            Subject.CLIP,
            Subject.NOTICE,
            Subject.DISCLOSURE,
            Subject.RECORDER,
            Subject.DOCK,
        ),
        ("action", "cause", "roles"),
        # what the refused command asked for: a search's query, a retrieval's target, case
        # and clips (and the logged retrieval a failed hand-over leaves), a deletion's rule
        # or store
        (
            "query",
            "target",
            "case",
            "clips",
            "not_completed_seq",
            "deletion_approval",
            "store",
            "recipient",
        ),
    )

    # -- who may do what
    ROLES_CHANGED = (
        "roles.changed",
        Subject.STATION,
        ("file", "old_sha256", "new_sha256", "owner", "mode"),
        ("user", "granted", "revoked", "login_user"),
    )

    def event(
        self,
        subject_id: str,
        *,
        actor: str,
        reason: str,
        data: dict[str, Any],
        sha256: str | None = None,
        subject_kind: Subject | None = None,
    ) -> CustodyEvent:
        """An event of this type; `subject_kind` only where the type has more than one.

        Raises ValueError for data keys or a subject kind this type does not declare."""
        kind = self.subjects[0] if subject_kind is None else subject_kind
        if kind not in self.subjects:
            raise ValueError(f"a {self._value_} event is not about a {kind}")
        keys = data.keys()
        if not (self.required <= keys and keys <= self.fields):
            missing = sorted(self.required - keys)
            unknown = sorted(keys - self.fields)
            raise ValueError(
                f"the data of a {self._value_} event lacks {missing} or has undeclared {unknown}"
            )
        return CustodyEvent(
            type=self._value_,
            subject_kind=kind.value,
            subject_id=subject_id,
            actor=actor,
            reason=reason,
            sha256=sha256,
            data=data,
        )
