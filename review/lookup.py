"""Finding cases and clips by what people type, with one clear message when they do not exist."""

from __future__ import annotations

import json

from sqlmodel import Session, col, select

from evidence_agent.catalog.models import Case, CaseClip, Clip
from evidence_agent.catalog.queries import find_clip
from evidence_agent.errors import NotFoundError


def find_case(session: Session, ref: str) -> Case | None:
    """A case by its number, or by its catalog id when no case has that number."""
    case = session.exec(select(Case).where(Case.number == ref)).first()
    if case is None and ref.isdigit():
        case = session.get(Case, int(ref))
    return case


def get_case(session: Session, ref: str) -> Case:
    case = find_case(session, ref)
    if case is None:
        raise NotFoundError(
            f"no case {ref!r} in the catalog", remedy="`evidence-agent case list` shows the cases"
        )
    return case


def get_clip(session: Session, ref: str) -> Clip:
    clip = find_clip(session, ref)
    if clip is None:
        raise NotFoundError(
            f"no clip {ref!r} in the catalog",
            remedy="give a clip id, a unique id prefix of 6+ characters, or its SHA-256",
        )
    return clip


def linked_clip_ids(session: Session, case_id: int) -> list[str]:
    return list(
        session.exec(
            select(CaseClip.clip_id)
            .where(CaseClip.case_id == case_id)
            .order_by(col(CaseClip.clip_id))
        )
    )


def case_numbers_of(session: Session, clip_id: str) -> list[str]:
    return list(
        session.exec(
            select(Case.number)
            .join(CaseClip, col(CaseClip.case_id) == col(Case.id))
            .where(CaseClip.clip_id == clip_id)
            .order_by(col(Case.number))
        )
    )


def json_list(text: str) -> list[str]:
    value = json.loads(text or "[]")
    return [str(v) for v in value] if isinstance(value, list) else []
