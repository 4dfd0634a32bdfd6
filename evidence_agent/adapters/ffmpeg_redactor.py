"""ffmpeg run on a command line built by domain/redaction.py: the redacted derivative of a clip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from evidence_agent.domain.redaction import RedactionPlan, ffmpeg_arguments
from evidence_agent.errors import ConfigError, InputError

# A derivative is re-encoded losslessly: minutes for a long clip on a small machine, never hours.
TIMEOUT_S = 4 * 3600


def ffmpeg_version() -> str:
    """The first line of `ffmpeg -version`, as a derivative's event records the tool."""
    if shutil.which("ffmpeg") is None:
        raise ConfigError("ffmpeg is not installed", remedy="scripts/setup.sh installs it")
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-version"], capture_output=True, text=True, timeout=60
    )
    return done.stdout.splitlines()[0].strip() if done.stdout else "ffmpeg (version unknown)"


def make_derivative(
    plan: RedactionPlan, source: Path, target: Path, *, has_audio: bool, timeout: float = TIMEOUT_S
) -> None:
    """Run ffmpeg; `target` must not exist. subprocess.run kills the child on a timeout."""
    args = ffmpeg_arguments(plan, str(source), str(target), has_audio=has_audio)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        target.unlink(missing_ok=True)
        raise InputError(f"ffmpeg took more than {timeout:.0f} s to make the derivative") from e
    if done.returncode != 0:
        target.unlink(missing_ok=True)
        raise InputError(
            f"ffmpeg could not make the derivative: {done.stderr.strip()[-500:]}",
            remedy="check the plan against the clip (`evidence-agent clips list`)",
        )
