"""What an ingest reports: each file's clip or why it was not read, and the dock's warnings."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evidence_agent.catalog.models import Clip
from evidence_agent.domain.flags import SkipReason
from evidence_agent.domain.states import ClipOutcome, DockState
from evidence_agent.errors import ExitCode
from evidence_agent.io.volume_reader import VolumeFile

# Reasons that are facts about the volume rather than problems: listed, but no warning.
_QUIET_REASONS = frozenset({SkipReason.NOT_MEDIA, SkipReason.IDENTITY_FILE})


@dataclass(frozen=True)
class ClipResult:
    clip_id: str
    source_path: str
    sha256: str
    size: int
    state: str  # a ClipState
    flags: tuple[str, ...]
    outcome: ClipOutcome

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.clip_id,
            "source_path": self.source_path,
            "sha256": self.sha256,
            "size": self.size,
            "state": self.state,
            "flags": list(self.flags),
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class NotIngested:
    source_path: str
    reason: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"source_path": self.source_path, "reason": self.reason, "detail": self.detail}


@dataclass
class IngestReport:
    dock_session_id: str
    volume: str
    recorder_serial: str
    clips: list[ClipResult] = field(default_factory=list)
    not_ingested: list[NotIngested] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    clock_skew_seconds: float | None = None
    state: DockState = DockState.FINISHED

    @property
    def clips_new(self) -> int:
        return sum(1 for c in self.clips if c.outcome == ClipOutcome.NEW)

    @property
    def exit_code(self) -> ExitCode:
        noisy = [n for n in self.not_ingested if n.reason not in _QUIET_REASONS]
        new_flagged = any(c.flags for c in self.clips if c.outcome == ClipOutcome.NEW)
        if self.warnings or noisy or new_flagged:
            return ExitCode.WARNING
        return ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "dock_session": self.dock_session_id,
            "volume": self.volume,
            "recorder": self.recorder_serial,
            "state": self.state,
            "clock_skew_seconds": self.clock_skew_seconds,
            "clips": [c.to_json() for c in self.clips],
            "not_ingested": [n.to_json() for n in self.not_ingested],
            "warnings": self.warnings,
        }


ProgressCallback = Callable[[int], None]
ClipCallback = Callable[[str], None]


def clip_result(clip: Clip, file: VolumeFile, outcome: ClipOutcome) -> ClipResult:
    return ClipResult(
        clip.id,
        file.display,
        clip.sha256,
        clip.size,
        clip.state,
        tuple(json.loads(clip.flags)),
        outcome,
    )
