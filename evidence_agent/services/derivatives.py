"""A redacted derivative made: the original copied out verified, ffmpeg run on it, the result stored."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from evidence_agent.adapters.ffmpeg_redactor import ffmpeg_version, make_derivative
from evidence_agent.catalog.models import Clip
from evidence_agent.domain.redaction import RedactionPlan, plan_problems
from evidence_agent.errors import InputError, IntegrityError
from evidence_agent.io.hashing import hash_file
from evidence_agent.services.copy_out import CHUNK_BYTES, copy_verified_into, ingest_hash
from evidence_agent.services.station import Station


@dataclass(frozen=True)
class MadeDerivative:
    sha256: str
    size: int
    duration_seconds: float | None
    tool: str
    verified: str  # how the original was checked on the way out


def check_plan(clip: Clip, plan: RedactionPlan) -> None:
    """A plan applies to a video clip, inside its picture and its duration."""
    if clip.media_kind != "video" or not clip.video_codec or not clip.width or not clip.height:
        raise InputError(f"clip {clip.id} is not a video FFmpeg could read: it has no derivative")
    problems = plan_problems(plan, clip.width, clip.height, clip.duration_seconds or 0.0)
    if problems:
        raise InputError(f"the plan does not fit clip {clip.id}: " + "; ".join(problems))


def produce_derivative(station: Station, clip: Clip, plan: RedactionPlan) -> MadeDerivative:
    """The derivative of `clip` by `plan`, stored write-once under its own SHA-256 (kept for
    good: it is the record of what was disclosed) and read back; the original is untouched.

    The original is copied out once and checked against its ingest hash first: ffmpeg reads
    only bytes that are the evidence."""
    check_plan(clip, plan)
    tool = ffmpeg_version()
    with tempfile.TemporaryDirectory(prefix="derivative-", dir=station.settings.spool_dir) as d:
        work = Path(d)
        check = ingest_hash(station, clip)
        original = copy_verified_into(
            station, clip.sha256, clip.size, check, work, CHUNK_BYTES, f"clip {clip.id}"
        )
        target = work / "derivative.mp4"
        make_derivative(plan, original, target, has_audio=clip.audio_codec is not None)
        info = station.prober.probe(target)  # it plays: FFmpeg's libraries read it back
        if info.video_codec is None:
            raise IntegrityError(f"the derivative of clip {clip.id} has no video stream")
        sha256 = hash_file(target)
        size = target.stat().st_size
        station.store.put(sha256, target, size, None)
        station.store.verify(sha256)
    return MadeDerivative(sha256, size, info.duration_seconds, tool, check[0])
