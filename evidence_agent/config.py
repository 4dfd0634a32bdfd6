"""Station configuration: read once at the entry point from TOML and the environment, validated whole."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from evidence_agent.domain.usb_allowlist import AllowlistEntry, parse_allowlist
from evidence_agent.errors import ConfigError

ENV_CONFIG = "EVIDENCE_AGENT_CONFIG"
ENV_DATA_DIR = "EVIDENCE_AGENT_DATA_DIR"
ENV_PREFIX = "EVIDENCE_AGENT__"  # EVIDENCE_AGENT__SECTION__KEY=value overrides one key
DEFAULT_DATA_DIR = Path("/var/lib/evidence-agent")
DEFAULT_MOUNT_ROOT = Path("/run/evidence-agent/mnt")
ENV_RUNTIME_DIRECTORY = "RUNTIME_DIRECTORY"  # set by systemd's RuntimeDirectory=
DEFAULT_METRICS_PORT = 9464

DEFAULT_FILENAME_PATTERN = (
    r"^(?P<serial>[A-Za-z0-9]{7})_(?P<badge>[0-9]{6})_(?P<start>[0-9]{14})_(?P<seq>[0-9]{1,6})"
    r"(?P<important>_IMP)?\.[A-Za-z0-9]+$"
)

# (section, key) -> (type, default). None as default means "derived" or "unset".
_SCHEMA: dict[tuple[str, str], tuple[type | tuple[type, ...], Any]] = {
    ("station", "id"): (str, None),
    ("station", "timezone"): (str, "local"),
    ("paths", "data_dir"): (str, None),
    ("paths", "spool_dir"): (str, None),
    ("paths", "dock_dir"): (str, None),
    ("paths", "key_dir"): (str, None),
    ("catalog", "url"): (str, None),
    ("store", "backend"): (str, "local"),
    ("store", "local_dir"): (str, None),
    ("store", "bucket"): (str, None),
    ("store", "endpoint"): (str, None),
    ("store", "region"): (str, "us-east-1"),
    ("store", "addressing_style"): (str, "path"),
    ("store", "ca_bundle"): (str, None),
    ("store", "checksum_mode"): (str, "when_supported"),
    ("store", "prefix"): (str, "evidence/"),
    ("store", "default_retention_days"): (int, 183),
    ("ingest", "video_patterns"): (
        list,
        ["*.mp4", "*.mov", "*.avi", "*.mkv", "*.ts", "*.asf", "*.3gp"],
    ),
    ("ingest", "photo_patterns"): (list, ["*.jpg", "*.jpeg", "*.png", "*.heic"]),
    ("ingest", "audio_patterns"): (list, ["*.wav", "*.mp3", "*.aac", "*.amr", "*.m4a"]),
    ("ingest", "filename_patterns"): (list, [DEFAULT_FILENAME_PATTERN]),
    ("ingest", "identity_file"): (str, "RECORDER.JSON"),
    ("ingest", "sm3"): (bool, False),
    ("ingest", "chunk_bytes"): (int, 2 * 1024 * 1024),
    ("ingest", "min_spool_free_bytes"): (int, 1024 * 1024 * 1024),
    ("deadline", "limit_hours"): (int, 24),
    ("deadline", "warn_hours"): (int, 20),
    ("deadline", "undocked_warn_hours"): (int, 20),
    ("dock", "sources"): (list, ["folder", "usb"]),
    ("dock", "settle_seconds"): ((int, float), 2.0),
    ("dock", "max_concurrent"): (int, 8),
    ("dock", "clock_skew_warn_seconds"): (int, 60),
    ("dock", "clear_recorder"): (bool, False),
    ("dock", "usb_allowlist"): (list, []),
    ("dock", "mount_root"): (str, None),
    ("dock", "metrics_port"): (int, DEFAULT_METRICS_PORT),
    ("custody", "checkpoint_interval_seconds"): (int, 300),
    ("log", "level"): (str, "INFO"),
}

_BACKENDS = ("local", "s3")
_CHECKSUM_MODES = ("when_supported", "when_required")
_SOURCES = ("folder", "usb")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class StoreSettings:
    backend: str
    local_dir: Path
    bucket: str | None
    endpoint: str | None
    region: str
    addressing_style: str
    ca_bundle: Path | None
    checksum_mode: str
    prefix: str
    default_retention_days: int


@dataclass(frozen=True)
class IngestSettings:
    video_patterns: tuple[str, ...]
    photo_patterns: tuple[str, ...]
    audio_patterns: tuple[str, ...]
    filename_patterns: tuple[str, ...]
    identity_file: str
    sm3: bool
    chunk_bytes: int
    min_spool_free_bytes: int


@dataclass(frozen=True)
class DeadlineSettings:
    limit_hours: int
    warn_hours: int
    undocked_warn_hours: int


@dataclass(frozen=True)
class DockSettings:
    sources: tuple[str, ...]
    settle_seconds: float
    max_concurrent: int
    clock_skew_warn_seconds: int
    clear_recorder: bool
    usb_allowlist: tuple[AllowlistEntry, ...] = ()
    mount_root: Path = DEFAULT_MOUNT_ROOT
    metrics_port: int = DEFAULT_METRICS_PORT  # 0: no metrics endpoint


@dataclass(frozen=True)
class Settings:
    station_id: str
    timezone: str
    data_dir: Path
    spool_dir: Path
    dock_dir: Path
    key_dir: Path
    catalog_url: str
    store: StoreSettings
    ingest: IngestSettings
    deadline: DeadlineSettings
    dock: DockSettings
    checkpoint_interval_seconds: int
    log_level: str
    source: Path | None = field(default=None, compare=False)

    @property
    def tz(self) -> Any:
        """The zone used to read recorder-local times in file names and to display times."""
        return resolve_timezone(self.timezone)


def resolve_timezone(name: str) -> Any:
    if name == "local":
        return None  # datetime.astimezone(None) uses the system's local zone
    return ZoneInfo(name)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the file (argument, then $EVIDENCE_AGENT_CONFIG, else defaults) and apply overrides."""
    env = os.environ if environ is None else environ
    if path is None and env.get(ENV_CONFIG):
        path = Path(env[ENV_CONFIG])
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(
                f"configuration file {path} does not exist",
                remedy="pass an existing file with --config or $EVIDENCE_AGENT_CONFIG",
            ) from e
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read configuration file {path}: {e}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"configuration file {path} is not valid TOML: {e}") from e
    return build_settings(raw, env, source=path)


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def build_settings(
    raw: Mapping[str, Any], environ: Mapping[str, str], *, source: Path | None = None
) -> Settings:
    """Validate every key at once; a ConfigError names all the bad ones."""
    problems: list[str] = []
    values: dict[tuple[str, str], Any] = {}
    for section, body in raw.items():
        if not isinstance(body, dict):
            problems.append(f"[{section}]: expected a table, got {type(body).__name__}")
            continue
        for key, value in body.items():
            values[(section, key)] = value
    for name, text in environ.items():
        if name.startswith(ENV_PREFIX):
            parts = name[len(ENV_PREFIX) :].lower().split("__")
            if len(parts) != 2:
                problems.append(f"{name}: expected {ENV_PREFIX}SECTION__KEY")
                continue
            key = (parts[0], parts[1])
            spec = _SCHEMA.get(key)
            # Text keys keep the raw string (a bucket named 2024 stays "2024").
            values[key] = text if spec is not None and spec[0] is str else _parse_env_value(text)
    if environ.get(ENV_DATA_DIR):
        values[("paths", "data_dir")] = environ[ENV_DATA_DIR]

    resolved: dict[tuple[str, str], Any] = {}
    for (section, key), value in values.items():
        spec = _SCHEMA.get((section, key))
        if spec is None:
            problems.append(f"{section}.{key}: unknown key")
            continue
        expected, _ = spec
        if isinstance(value, bool) and expected in (int, (int, float)):
            problems.append(f"{section}.{key}: expected a number, got a boolean")
            continue
        if not isinstance(value, expected):
            want = expected.__name__ if isinstance(expected, type) else "number"
            problems.append(f"{section}.{key}: expected {want}, got {type(value).__name__}")
            continue
        resolved[(section, key)] = value

    def get(section: str, key: str) -> Any:
        return resolved.get((section, key), _SCHEMA[(section, key)][1])

    _check_choice(problems, "store", "backend", get("store", "backend"), _BACKENDS)
    _check_choice(
        problems, "store", "checksum_mode", get("store", "checksum_mode"), _CHECKSUM_MODES
    )
    _check_choice(
        problems,
        "store",
        "addressing_style",
        get("store", "addressing_style"),
        ("path", "virtual", "auto"),
    )
    _check_choice(problems, "log", "level", str(get("log", "level")).upper(), _LEVELS)
    for src in get("dock", "sources"):
        _check_choice(problems, "dock", "sources", src, _SOURCES)
    for section, key in (
        ("ingest", "video_patterns"),
        ("ingest", "photo_patterns"),
        ("ingest", "audio_patterns"),
        ("ingest", "filename_patterns"),
        ("dock", "sources"),
    ):
        if not all(isinstance(item, str) for item in get(section, key)):
            problems.append(f"{section}.{key}: every item must be a string")
    for pattern in get("ingest", "filename_patterns"):
        if isinstance(pattern, str):
            try:
                compiled = re.compile(pattern)
            except re.error as e:
                problems.append(f"ingest.filename_patterns: {pattern!r} is not a valid regex: {e}")
                continue
            if "start" not in compiled.groupindex and "serial" not in compiled.groupindex:
                problems.append(
                    f"ingest.filename_patterns: {pattern!r} needs a named group 'start' or 'serial'"
                )
    for section, key, low in (
        ("ingest", "chunk_bytes", 64 * 1024),
        ("ingest", "min_spool_free_bytes", 0),
        ("deadline", "limit_hours", 1),
        ("deadline", "warn_hours", 1),
        ("deadline", "undocked_warn_hours", 1),
        ("dock", "max_concurrent", 1),
        ("dock", "clock_skew_warn_seconds", 0),
        ("custody", "checkpoint_interval_seconds", 1),
        ("store", "default_retention_days", 183),
    ):
        if get(section, key) < low:
            problems.append(f"{section}.{key}: must be at least {low}")
    if get("deadline", "warn_hours") >= get("deadline", "limit_hours"):
        problems.append("deadline.warn_hours: must be less than deadline.limit_hours")
    if get("dock", "settle_seconds") < 0:
        problems.append("dock.settle_seconds: must not be negative")
    allowlist: tuple[AllowlistEntry, ...] = ()
    try:
        allowlist = parse_allowlist(get("dock", "usb_allowlist"))
    except ConfigError as e:
        problems.append(f"dock.usb_allowlist: {e.message}")
    if not 0 <= get("dock", "metrics_port") <= 65535:
        problems.append("dock.metrics_port: must be 0 (off) or a TCP port up to 65535")
    tz_name = get("station", "timezone")
    if tz_name != "local":
        try:
            ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                f"station.timezone: {tz_name!r} is not a known time zone (e.g. Asia/Shanghai)"
            )
    station_id = get("station", "id") or _default_station_id()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", station_id):
        problems.append(f"station.id: {station_id!r} must be 1-63 letters, digits, '.', '_' or '-'")
    if get("store", "backend") == "s3" and not get("store", "bucket"):
        problems.append("store.bucket: required when store.backend = 's3'")

    if problems:
        where = f" in {source}" if source else ""
        raise ConfigError(
            f"{len(problems)} bad configuration key(s){where}: " + "; ".join(problems),
            remedy="see config/evidence-agent.toml for every key with an example",
        )

    data_dir = Path(get("paths", "data_dir") or DEFAULT_DATA_DIR).expanduser()

    def path_or(key: str, default: Path) -> Path:
        value = get("paths", key)
        return Path(value).expanduser() if value else default

    catalog_url = get("catalog", "url") or f"sqlite:///{data_dir / 'catalog.sqlite3'}"
    local_dir = get("store", "local_dir")
    ca_bundle = get("store", "ca_bundle")
    return Settings(
        station_id=station_id,
        timezone=tz_name,
        data_dir=data_dir,
        spool_dir=path_or("spool_dir", data_dir / "spool"),
        dock_dir=path_or("dock_dir", data_dir / "dock"),
        key_dir=path_or("key_dir", data_dir / "keys"),
        catalog_url=catalog_url,
        store=StoreSettings(
            backend=get("store", "backend"),
            local_dir=Path(local_dir).expanduser() if local_dir else data_dir / "objects",
            bucket=get("store", "bucket"),
            endpoint=get("store", "endpoint"),
            region=get("store", "region"),
            addressing_style=get("store", "addressing_style"),
            ca_bundle=Path(ca_bundle) if ca_bundle else None,
            checksum_mode=get("store", "checksum_mode"),
            prefix=get("store", "prefix"),
            default_retention_days=get("store", "default_retention_days"),
        ),
        ingest=IngestSettings(
            video_patterns=tuple(get("ingest", "video_patterns")),
            photo_patterns=tuple(get("ingest", "photo_patterns")),
            audio_patterns=tuple(get("ingest", "audio_patterns")),
            filename_patterns=tuple(get("ingest", "filename_patterns")),
            identity_file=get("ingest", "identity_file"),
            sm3=get("ingest", "sm3"),
            chunk_bytes=get("ingest", "chunk_bytes"),
            min_spool_free_bytes=get("ingest", "min_spool_free_bytes"),
        ),
        deadline=DeadlineSettings(
            limit_hours=get("deadline", "limit_hours"),
            warn_hours=get("deadline", "warn_hours"),
            undocked_warn_hours=get("deadline", "undocked_warn_hours"),
        ),
        dock=DockSettings(
            sources=tuple(get("dock", "sources")),
            settle_seconds=float(get("dock", "settle_seconds")),
            max_concurrent=get("dock", "max_concurrent"),
            clock_skew_warn_seconds=get("dock", "clock_skew_warn_seconds"),
            clear_recorder=get("dock", "clear_recorder"),
            usb_allowlist=allowlist,
            mount_root=_mount_root(get("dock", "mount_root"), environ),
            metrics_port=get("dock", "metrics_port"),
        ),
        checkpoint_interval_seconds=get("custody", "checkpoint_interval_seconds"),
        log_level=str(get("log", "level")).upper(),
        source=source,
    )


def _check_choice(
    problems: list[str], section: str, key: str, value: Any, choices: tuple[str, ...]
) -> None:
    if value not in choices:
        problems.append(f"{section}.{key}: {value!r} is not one of {', '.join(choices)}")


def _mount_root(value: str | None, environ: Mapping[str, str]) -> Path:
    """The private mount root: configured, else under systemd's runtime directory, else /run."""
    if value:
        return Path(value).expanduser()
    runtime = environ.get(ENV_RUNTIME_DIRECTORY, "")
    if runtime:
        # RuntimeDirectory= may list several directories, separated by colons: the first is ours.
        return Path(runtime.split(":")[0]) / "mnt"
    return DEFAULT_MOUNT_ROOT


def _default_station_id() -> str:
    name = os.uname().nodename.split(".")[0] or "station"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:63]
