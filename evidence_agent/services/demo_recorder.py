"""A realistic body-worn recorder volume made with ffmpeg, for demos, tests and benchmarks."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from evidence_agent.errors import EvidenceError, InputError

IDENTITY_FILE_NAME = "RECORDER.JSON"
MEDIA_DIR = Path("DCIM") / "100MEDIA"
LOG_FILE = Path("SYSTEM") / "LOG.TXT"
DEFAULT_RECORDER_TZ = ZoneInfo("Asia/Shanghai")

_FFMPEG = "ffmpeg"
_REMEDY = "install ffmpeg with libx264 and AAC: apt-get install ffmpeg"
# a cut-off recording keeps this share of its bytes: the index (moov) written at the end is lost
_CORRUPT_KEEP = 0.6


@dataclass(frozen=True)
class DemoFile:
    """One file written on the demo volume, with what its name and content say."""

    path: Path
    kind: str  # "video", "photo", "audio" or "other"
    start: datetime | None = None  # aware UTC; the name holds it in recorder local time
    sequence: int | None = None
    seconds: float | None = None
    important: bool = False
    corrupt: bool = False  # named like the others, but not readable media


@dataclass(frozen=True)
class DemoVolume:
    """What make_demo_recorder made: the identity document and every file, in sequence order."""

    root: Path
    identity_file: Path
    identity: Mapping[str, str]
    files: tuple[DemoFile, ...]

    @property
    def good_videos(self) -> tuple[DemoFile, ...]:
        return tuple(f for f in self.files if f.kind == "video" and not f.corrupt)

    @property
    def important(self) -> DemoFile:
        return next(f for f in self.files if f.important)

    @property
    def corrupt(self) -> DemoFile:
        return next(f for f in self.files if f.corrupt)

    @property
    def photo(self) -> DemoFile:
        return next(f for f in self.files if f.kind == "photo")

    @property
    def audio(self) -> DemoFile:
        return next(f for f in self.files if f.kind == "audio")

    @property
    def media(self) -> tuple[DemoFile, ...]:
        return tuple(f for f in self.files if f.kind != "other")

    @property
    def non_media(self) -> tuple[DemoFile, ...]:
        return tuple(f for f in self.files if f.kind == "other")


def make_demo_recorder(
    target: Path,
    *,
    serial: str = "A123456",
    badge: str = "100231",
    officer_name: str = "张伟",
    unit_code: str = "330100000000",
    unit_name: str = "杭州市公安局示范派出所",
    start: datetime | None = None,
    clips: int = 3,
    seconds: float = 4,
    recorder_tz: tzinfo = DEFAULT_RECORDER_TZ,
    device_time: datetime | None = None,
    vendor: str = "DemoVision",
    model: str = "DSJ-D1",
    size: str = "640x360",
) -> DemoVolume:
    """Write a recorder volume into `target` (new or empty directory) and list what was made.

    Layout: RECORDER.JSON; DCIM/100MEDIA/ with `clips` good H.264+AAC clips back to back (the
    last one marked _IMP), then one cut-off clip (its first 60 % of bytes: the MP4 index is
    lost, as when a recorder loses power), a JPG photo and an M4A audio note; SYSTEM/LOG.TXT.
    Names are <serial>_<badge>_<YYYYMMDDhhmmss>_<seq>[_IMP].<EXT> in recorder local time;
    containers carry the same moment as creation_time in UTC. `device_time` is the recorder
    clock written to the identity file (default now; pass a skewed time to simulate drift);
    `start` defaults to an hour before the device time. About 1.5 s on 2 cores by default.
    """
    if clips < 1:
        raise InputError(f"clips must be at least 1, got {clips}")
    if seconds <= 0:
        raise InputError(f"seconds must be positive, got {seconds}")
    clock = _aware("device_time", device_time) if device_time else datetime.now(UTC)
    clock = clock.replace(microsecond=0)
    first = _aware("start", start) if start else clock - timedelta(hours=1)
    first = first.replace(microsecond=0)
    _prepare_target(target)

    names = _MediaNames(target / MEDIA_DIR, serial, badge, recorder_tz)
    names.directory.mkdir(parents=True)
    # Every volume's footage is its own, as two real recorders' is: without this, volumes made
    # within a second (or any two photos) are byte-identical, and the catalog rightly takes the
    # second recorder's files for the first's.
    tag = f"demo recorder {serial}, volume {secrets.token_hex(8)}"
    files = _write_media(names, first, clips=clips, seconds=seconds, size=size, tag=tag)

    log = target / LOG_FILE
    log.parent.mkdir(parents=True)
    log.write_text(_log_text(files, clock, recorder_tz, serial), encoding="utf-8")
    files.append(DemoFile(log, "other"))

    identity = {
        "serial": serial,
        "badge": badge,
        "officer_name": officer_name,
        "unit_code": unit_code,
        "unit_name": unit_name,
        "vendor": vendor,
        "model": model,
        "device_time": clock.astimezone(recorder_tz).isoformat(),
    }
    identity_file = target / IDENTITY_FILE_NAME
    identity_file.write_text(
        json.dumps(identity, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return DemoVolume(target, identity_file, identity, tuple(files))


@dataclass(frozen=True)
class _MediaNames:
    """Names media files as recorders do: <serial>_<badge>_<local time>_<seq>[_IMP].<EXT>."""

    directory: Path
    serial: str
    badge: str
    recorder_tz: tzinfo

    def path(self, seq: int, moment: datetime, ext: str, important: bool = False) -> Path:
        local = moment.astimezone(self.recorder_tz).strftime("%Y%m%d%H%M%S")
        marker = "_IMP" if important else ""
        return self.directory / f"{self.serial}_{self.badge}_{local}_{seq:04d}{marker}.{ext}"


def _write_media(
    names: _MediaNames, first: datetime, *, clips: int, seconds: float, size: str, tag: str
) -> list[DemoFile]:
    """The media files, back to back from `first`: the good clips (the last one marked
    important), a cut-off clip, a photo and an audio note; `tag` is the clips' and the note's
    comment."""
    files: list[DemoFile] = []
    step = timedelta(seconds=seconds)
    moment = first
    seq = 1
    for index in range(clips):
        important = index == clips - 1
        path = names.path(seq, moment, "MP4", important)
        generate_clip(path, seconds=seconds, creation_time=moment, size=size, comment=tag)
        files.append(DemoFile(path, "video", moment, seq, seconds, important=important))
        moment, seq = moment + step, seq + 1

    corrupt = names.path(seq, moment, "MP4")
    # Cut off, it loses its index and so the comment: a mark in the picture keeps it unique.
    generate_clip(
        corrupt,
        seconds=seconds,
        creation_time=moment,
        size=size,
        comment=tag,
        mark=secrets.randbelow(2**31),
    )
    _cut_off(corrupt)
    files.append(DemoFile(corrupt, "video", moment, seq, seconds, corrupt=True))
    moment, seq = moment + step, seq + 1

    photo = names.path(seq, moment, "JPG")
    _generate_photo(photo, size=size, seed=secrets.randbelow(2**31))
    files.append(DemoFile(photo, "photo", moment, seq))
    moment, seq = moment + timedelta(seconds=1), seq + 1

    audio = names.path(seq, moment, "M4A")
    generate_audio(audio, seconds=seconds, creation_time=moment, comment=tag)
    files.append(DemoFile(audio, "audio", moment, seq, seconds))
    return files


def generate_clip(
    path: Path,
    *,
    seconds: float,
    creation_time: datetime | None,
    size: str = "640x360",
    rate: int = 25,
    bitrate: int | None = None,
    comment: str | None = None,
    mark: int | None = None,
    timeout: float = 600,
) -> None:
    """Encode an H.264 + AAC MP4 test clip (testsrc + sine) at `path`, overwriting it.

    `bitrate` (bits per second) makes the video constant-bitrate with filler data, so the file is
    about seconds * bitrate / 8 bytes and is made at disk speed: 20 s at 100_000_000 gives
    ~250 MB in about a second on 2 cores. Without it the clip is small (~30 kB per second).
    The MP4 index is written at the end, as recorders do, so a cut-off file has none.
    """
    argv = [*_base_argv(), "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}"]
    argv += ["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"]
    argv += ["-t", f"{seconds:g}", "-c:v", "libx264", "-preset", "ultrafast"]
    argv += ["-pix_fmt", "yuv420p"]
    if mark is not None:  # a small square placed by `mark`: frames no other clip has
        width, height = (int(v) for v in size.split("x"))
        x, y = mark % max(width - 16, 1), (mark // width) % max(height - 16, 1)
        argv += ["-vf", f"drawbox=x={x}:y={y}:w=16:h=16:color=white:t=fill"]
    if bitrate is not None:
        if bitrate <= 0:
            raise InputError(f"bitrate must be positive, got {bitrate}")
        rate_text = str(bitrate)
        argv += ["-b:v", rate_text, "-minrate", rate_text, "-maxrate", rate_text]
        argv += ["-bufsize", rate_text, "-x264-params", "nal-hrd=cbr"]
    argv += ["-c:a", "aac", "-b:a", "64k", *_creation_argv(creation_time)]
    argv += [*_comment_argv(comment), str(path)]
    _run_ffmpeg(argv, path, timeout)


def generate_audio(
    path: Path,
    *,
    seconds: float,
    creation_time: datetime | None,
    comment: str | None = None,
    timeout: float = 120,
) -> None:
    """Encode an AAC audio note (.m4a) at `path`, overwriting it."""
    argv = [*_base_argv(), "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    argv += ["-t", f"{seconds:g}", "-c:a", "aac", "-b:a", "64k"]
    argv += [*_creation_argv(creation_time), *_comment_argv(comment), "-f", "ipod", str(path)]
    _run_ffmpeg(argv, path, timeout)


def _generate_photo(path: Path, *, size: str, seed: int, timeout: float = 120) -> None:
    argv = [*_base_argv(), "-f", "lavfi", "-i", f"testsrc=size={size}:rate=1"]
    argv += ["-vf", f"noise=alls=8:all_seed={seed}"]  # a photo of its own scene, not the pattern
    argv += ["-frames:v", "1", "-update", "1", "-f", "image2", str(path)]
    _run_ffmpeg(argv, path, timeout)


def _base_argv() -> list[str]:
    return [_FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def _creation_argv(creation_time: datetime | None) -> list[str]:
    if creation_time is None:
        return []
    utc = _aware("creation_time", creation_time).astimezone(UTC)
    return ["-metadata", "creation_time=" + utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")]


def _comment_argv(comment: str | None) -> list[str]:
    return [] if comment is None else ["-metadata", f"comment={comment}"]


def _run_ffmpeg(argv: Sequence[str], path: Path, timeout: float) -> None:
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=timeout)
    except FileNotFoundError as e:
        raise EvidenceError("ffmpeg not found", remedy=_REMEDY) from e
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or b"").decode("utf-8", errors="replace").strip().splitlines()
        first = detail[0] if detail else f"exit status {e.returncode}"
        raise EvidenceError(f"ffmpeg could not make {path}: {first}", remedy=_REMEDY) from e
    except subprocess.TimeoutExpired as e:
        raise EvidenceError(f"ffmpeg took more than {timeout:g} s to make {path}") from e
    except OSError as e:
        raise EvidenceError(f"cannot run ffmpeg to make {path}: {e}", remedy=_REMEDY) from e


def _cut_off(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * _CORRUPT_KEEP)])


def _prepare_target(target: Path) -> None:
    if target.exists():
        if not target.is_dir():
            raise InputError(f"{target} exists and is not a directory")
        if any(target.iterdir()):
            raise InputError(
                f"{target} is not empty", remedy="choose a new or empty directory for the volume"
            )
    target.mkdir(parents=True, exist_ok=True)


def _aware(what: str, moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError(f"{what} must carry a time zone, got {moment.isoformat()}")
    return moment


def _log_text(files: Sequence[DemoFile], clock: datetime, tz: tzinfo, serial: str) -> str:
    boot = min((f.start for f in files if f.start is not None), default=clock)
    lines = [f"{(boot - timedelta(minutes=1)).astimezone(tz).isoformat()} BOOT serial={serial}"]
    for f in files:
        if f.start is not None:
            lines.append(f"{f.start.astimezone(tz).isoformat()} REC {f.path.name}")
    lines.append(f"{clock.astimezone(tz).isoformat()} USB mass storage")
    return "\n".join(lines) + "\n"
