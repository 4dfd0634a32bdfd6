"""End to end: a redacted derivative made by ffmpeg from an approved plan, disclosed with its lineage.

The derivative must play, differ from its original only where the plan says (pictures compared
pixel by pixel, sound sample by sample, both decoded by ffmpeg), and the recipient's verifier
must prove from the package alone that it was made from the original's ingested bytes."""

from __future__ import annotations

import array
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_disclosure import approve_as_another_person
from tests.e2e.test_review import Station, access_log, sha256_of
from tests.support import service_missing

BLUR = {"start": 1.0, "end": 2.0, "x": 0, "y": 0, "w": 160, "h": 120}
MUTE = {"start": 2.5, "end": 3.0}
TRIM = {"start": 0.5, "end": 3.5}
PLAN = {"blur": [BLUR], "mute": [MUTE], "trim": TRIM}
RATE = 48000


@pytest.fixture(autouse=True, scope="module")
def tools() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} is not installed: scripts/setup.sh installs it")


def approve_derivative(data: Path, derivative: str) -> dict[str, Any]:
    from evidence_agent.config import build_settings
    from evidence_agent.services.station import open_station
    from publish.redaction.derivatives import decide_derivative
    from tests.e2e.test_disclosure import BOSS

    station = open_station(
        build_settings({}, {"EVIDENCE_AGENT_DATA_DIR": str(data)}), actor=BOSS.actor, create=False
    )
    try:
        return decide_derivative(station, BOSS, derivative, "faces of bystanders", approve=True)
    finally:
        station.close()


def decoded(path: Path, *args: str) -> bytes:
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), *args, "-"],
        capture_output=True,
        check=True,
    ).stdout


def test_a_redacted_derivative_plays_differs_only_where_planned_and_its_lineage_verifies(
    tmp_path: Path,
) -> None:
    station = Station(tmp_path / "data")
    assert station.run("demo-recorder", str(tmp_path / "volume")).returncode == 0
    assert station.run("ingest", str(tmp_path / "volume")).returncode in (0, 1)
    clips = station.json("clips", "search", "--officer", "100231")
    clip = next(c for c in clips if c["media_kind"] == "video" and c["duration_seconds"])
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(PLAN))

    asked = station.json(
        "redact", "request", clip["id"], "--plan", str(plan_file), "--reason", "bystanders"
    )
    own = station.run("redact", "approve", asked["id"], "--reason", "ok", roles=["supervisor"])
    assert own.returncode == 5 and "two-person" in own.stderr
    early = station.run("redact", "make", asked["id"])
    assert early.returncode == 2 and "only an approved plan" in early.stderr
    approve_derivative(station.data, asked["id"])
    made = station.json("redact", "make", asked["id"])
    assert made["state"] == "made" and made["sha256"] != clip["sha256"]
    assert made["tool"].startswith("ffmpeg version")

    original, derivative = (station.object_path(s) for s in (clip["sha256"], made["sha256"]))
    assert sha256_of(original) == clip["sha256"]  # never replaced
    assert sha256_of(derivative) == made["sha256"]

    # It plays: ffprobe reads both streams, 3 s long (the trim).
    probe = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(derivative)],
            capture_output=True,
            check=True,
        ).stdout
    )
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "alac"
    assert abs(float(streams["video"]["duration"]) - 3.0) < 0.05

    # Pictures: the trimmed original against the derivative, frame by frame (luma).
    width, height = int(streams["video"]["width"]), int(streams["video"]["height"])
    trim = f"trim=start={TRIM['start']}:end={TRIM['end']},setpts=PTS-STARTPTS"
    raw = ["-pix_fmt", "gray", "-f", "rawvideo"]
    before = decoded(original, "-vf", trim, *raw)
    after = decoded(derivative, *raw)
    frame = width * height
    assert len(before) == len(after) and len(after) // frame >= 70
    fps = len(after) // frame / (TRIM["end"] - TRIM["start"])
    blurred = 0
    for n in range(len(after) // frame):
        a, b = before[n * frame : (n + 1) * frame], after[n * frame : (n + 1) * frame]
        t = TRIM["start"] + n / fps
        box_rows = range(BLUR["y"], BLUR["y"] + BLUR["h"])
        for y in range(height):
            row_a, row_b = a[y * width : (y + 1) * width], b[y * width : (y + 1) * width]
            if y in box_rows:
                x0, x1 = BLUR["x"], BLUR["x"] + BLUR["w"]
                assert row_a[:x0] == row_b[:x0] and row_a[x1:] == row_b[x1:], (n, y)
            else:
                assert row_a == row_b, (n, y)
        inside = [a[y * width + BLUR["x"] : y * width + BLUR["x"] + BLUR["w"]] for y in box_rows]
        inside_after = [
            b[y * width + BLUR["x"] : y * width + BLUR["x"] + BLUR["w"]] for y in box_rows
        ]
        if BLUR["start"] + 0.05 < t < BLUR["end"] - 0.05:
            assert inside != inside_after, f"frame {n} at {t:.2f} s is not blurred"
            blurred += 1
        elif not BLUR["start"] - 0.05 < t < BLUR["end"] + 0.05:
            assert inside == inside_after, f"frame {n} at {t:.2f} s is blurred"
    assert blurred >= 20

    # Sound: silent exactly in the mute range, the original's elsewhere.
    pcm = ["-ac", "1", "-ar", str(RATE), "-f", "s16le"]
    atrim = f"atrim=start={TRIM['start']}:end={TRIM['end']},asetpts=PTS-STARTPTS"
    sound_before = array.array("h", decoded(original, "-af", atrim, *pcm))
    sound_after = array.array("h", decoded(derivative, *pcm))
    assert len(sound_before) == len(sound_after)
    muted = 0
    for k, (x, y) in enumerate(zip(sound_before, sound_after, strict=True)):
        t = TRIM["start"] + k / RATE
        if MUTE["start"] <= t < MUTE["end"]:
            assert y == 0, f"sample {k} at {t:.4f} s is not silent"
            muted += x != 0
        else:
            assert abs(x - y) <= 1, f"sample {k} at {t:.4f} s differs"
    assert muted > 1000  # there was sound to silence

    # Disclosed alone, without its original: the package proves where it came from.
    disclosure = station.json(
        "disclose", "request", "--derivative", asked["id"], "--recipient", "Press office",
        "--reason", "public interest",
    )  # fmt: skip
    approve_as_another_person(station.data, disclosure["id"], "redacted as planned")
    package = tmp_path / "package"
    produced = station.json("disclose", "produce", disclosure["id"], "--to", str(package))
    (item,) = produced["items"]
    assert item["kind"] == "derivative" and item["parent_sha256"] == clip["sha256"]
    assert not (package / "data" / "clips").exists() or not any(
        (package / "data" / "clips").iterdir()
    )
    assert sha256_of(package / item["path"]) == made["sha256"]
    verified = subprocess.run(
        ["python3", str(package / "verify_package.py"), str(package)],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # A plan swapped in the package is caught: the proved event recorded the approved one.
    description = json.loads((package / "disclosure.json").read_text())
    description["items"][0]["plan"]["blur"] = []
    (package / "disclosure.json").chmod(0o644)
    (package / "disclosure.json").write_text(json.dumps(description))
    swapped = subprocess.run(
        ["python3", str(package / "verify_package.py"), str(package)],
        capture_output=True,
        text=True,
    )
    assert swapped.returncode == 1
    assert f"FAIL {item['path']}: the plan differs" in swapped.stdout

    logged = [e["type"] for e in access_log(station, "--type", "clip.disclosed")]
    assert logged == ["clip.disclosed"]
    verify = station.run("verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr  # the derivative is accounted
