"""Station configuration: read once at the entry point from TOML and the environment, validated whole.

Every key is declared once, in config_keys.KEYS; validation, the Settings values,
`evidence-agent config show` and the example file (`evidence-agent config example`, committed
as config/evidence-agent.toml) follow from that table."""

from __future__ import annotations

import json
import math
import os
import re
import textwrap
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from evidence_agent.config_keys import (
    DEFAULT_API_SOCKET,
    DEFAULT_DATA_DIR,
    DEFAULT_MOUNT_ROOT,
    EXAMPLE_FILE,
    INTEGER,
    KEYS,
    MOVED,
    NUMBER,
    SECTIONS,
    TEXT,
    TEXTS,
    Key,
)
from evidence_agent.domain.retention import RetentionPolicy
from evidence_agent.domain.usb_allowlist import AllowlistEntry
from evidence_agent.domain.working_days import WorkingDayCalendar
from evidence_agent.errors import ConfigError

ENV_CONFIG = "EVIDENCE_AGENT_CONFIG"
ENV_DATA_DIR = "EVIDENCE_AGENT_DATA_DIR"
ENV_PREFIX = "EVIDENCE_AGENT__"  # EVIDENCE_AGENT__SECTION__KEY=value overrides one key
ENV_RUNTIME_DIRECTORY = "RUNTIME_DIRECTORY"  # set by systemd's RuntimeDirectory=

_BY_ID = {(k.section, k.name): k for k in KEYS}

# ---------------------------------------------------------------- settings


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
    api_workers: int
    clock_skew_warn_seconds: int
    clear_recorder: bool
    usb_allowlist: tuple[AllowlistEntry, ...]
    mount_root: Path
    metrics_port: int  # 0: no metrics endpoint


@dataclass(frozen=True)
class ReviewRules:
    full_recording_types: tuple[str, ...]
    other_enforcement_types: tuple[str, ...]
    gap_tolerance_seconds: float
    suggest_margin_minutes: float
    case_file_days: int  # the case file is due this many days after the end of the action

    @property
    def enforcement_types(self) -> tuple[str, ...]:
        return (*self.full_recording_types, *self.other_enforcement_types)

    def requires_full_recording(self, enforcement_type: str) -> bool:
        return enforcement_type in self.full_recording_types

    @property
    def gap_tolerance(self) -> timedelta:
        return timedelta(seconds=self.gap_tolerance_seconds)

    @property
    def suggest_margin(self) -> timedelta:
        return timedelta(minutes=self.suggest_margin_minutes)


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
    retention: RetentionPolicy
    ingest: IngestSettings
    deadline: DeadlineSettings
    dock: DockSettings
    review: ReviewRules
    calendar: WorkingDayCalendar
    checkpoint_interval_seconds: int
    log_level: str
    api_socket: Path = DEFAULT_API_SOCKET
    # Every key's effective value, by section, as `config show` prints them.
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False)
    source: Path | None = field(default=None, compare=False)

    @property
    def tz(self) -> Any:
        """The zone used to read recorder-local times in file names and to display times."""
        return resolve_timezone(self.timezone)

    def local_date(self, moment: datetime) -> date:
        """The day `moment` falls on at the station: the day working-day deadlines count."""
        return moment.astimezone(self.tz).date()


def resolve_timezone(name: str) -> Any:
    if name == "local":
        return None  # datetime.astimezone(None) uses the system's local zone
    return ZoneInfo(name)


# ---------------------------------------------------------------- loading


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


def build_settings(
    raw: Mapping[str, Any], environ: Mapping[str, str], *, source: Path | None = None
) -> Settings:
    """Validate every key at once; a ConfigError names all the bad ones."""
    problems: list[str] = []
    given = _given_values(raw, environ, problems)
    values: dict[tuple[str, str], Any] = {}
    for (section, name), value in given.items():
        key = _BY_ID.get((section, name))
        if key is None:
            problems.append(f"{section}.{name}: {MOVED.get((section, name), 'unknown key')}")
            continue
        if key.normalize is not None and _is_kind(value, key):
            value = key.normalize(value)
        found = _key_problems(key, value)
        problems.extend(f"{key.path}: {p}" for p in found)
        if not found:
            values[(section, name)] = value
    effective = {k.path: values.get((k.section, k.name), k.default) for k in KEYS}
    problems.extend(_cross_problems(effective))
    if problems:
        where = f" in {source}" if source else ""
        raise ConfigError(
            f"{len(problems)} bad configuration key(s){where}: " + "; ".join(problems),
            remedy=f"see {EXAMPLE_FILE} (or `evidence-agent config example`) for every key",
        )
    _derive(effective, environ)
    return _settings(effective, source)


def _given_values(
    raw: Mapping[str, Any], environ: Mapping[str, str], problems: list[str]
) -> dict[tuple[str, str], Any]:
    """The file's values, then the environment's over them."""
    given: dict[tuple[str, str], Any] = {}
    for section, body in raw.items():
        if not isinstance(body, dict):
            problems.append(f"[{section}]: expected a table, got {type(body).__name__}")
            continue
        for name, value in body.items():
            given[(section, name)] = value
    for variable, text in environ.items():
        if variable.startswith(ENV_PREFIX):
            parts = variable[len(ENV_PREFIX) :].lower().split("__")
            if len(parts) != 2:
                problems.append(f"{variable}: expected {ENV_PREFIX}SECTION__KEY")
                continue
            key = _BY_ID.get((parts[0], parts[1]))
            # Text keys keep the raw string (a bucket named 2024 stays "2024").
            given[(parts[0], parts[1])] = (
                text if key is not None and key.kind is TEXT else _parse_env_value(text)
            )
    if environ.get(ENV_DATA_DIR):
        given[("paths", "data_dir")] = environ[ENV_DATA_DIR]
    return given


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _key_problems(key: Key, value: Any) -> list[str]:
    """What is wrong with one key's value, by its row in the table."""
    if isinstance(value, bool) and key.kind in (INTEGER, NUMBER):
        return ["expected a number, got a boolean"]
    if not _is_kind(value, key):
        return [f"expected {key.kind.label}, got {type(value).__name__}"]
    items: list[Any] = value if key.kind.item is not None else [value]
    if key.kind.item is not None and not all(isinstance(v, key.kind.item) for v in items):
        return [f"every item must be a {'string' if key.kind.item is str else 'table'}"]
    if key.choices:
        wrong = [v for v in items if v not in key.choices]
        if wrong:
            return [f"{v!r} is not one of {', '.join(key.choices)}" for v in wrong]
    if key.kind is NUMBER and not math.isfinite(value):
        return ["must be a finite number"]
    if key.low is not None and value < key.low:
        low = _number(key.low)
        return ["must not be negative" if low == 0 else f"must be at least {low}{key.why_low}"]
    if key.high is not None and value > key.high:
        return [f"must be at most {_number(key.high)}"]
    return key.check(value) if key.check is not None else []


def _number(bound: float) -> int | float:
    return int(bound) if float(bound).is_integer() else bound


def _is_kind(value: Any, key: Key) -> bool:
    return isinstance(value, key.kind.types)


def _cross_problems(effective: Mapping[str, Any]) -> list[str]:
    """Rules between keys (each key is valid alone)."""
    problems = []
    if effective["deadline.warn_hours"] >= effective["deadline.limit_hours"]:
        problems.append("deadline.warn_hours: must be less than deadline.limit_hours")
    if effective["store.backend"] == "s3" and not effective["store.bucket"]:
        problems.append("store.bucket: required when store.backend = 's3'")
    if effective["retention.important_days"] < effective["retention.standard_days"]:
        problems.append("retention.important_days: must not be less than retention.standard_days")
    both = set(effective["review.full_recording_types"]) & set(
        effective["review.other_enforcement_types"]
    )
    for name in sorted(both):
        problems.append(
            f"review.other_enforcement_types: {name!r} is also in review.full_recording_types"
        )
    return problems


def _derive(effective: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Fill in the keys whose default follows from others (the data directory, the host)."""
    effective["station.id"] = effective["station.id"] or _default_station_id()
    data_dir = Path(effective["paths.data_dir"] or DEFAULT_DATA_DIR).expanduser()
    effective["paths.data_dir"] = str(data_dir)
    for key, below in (
        ("paths.spool_dir", "spool"),
        ("paths.dock_dir", "dock"),
        ("paths.key_dir", "keys"),
        ("store.local_dir", "objects"),
    ):
        effective[key] = str(
            Path(effective[key]).expanduser() if effective[key] else data_dir / below
        )
    effective["catalog.url"] = (
        effective["catalog.url"] or f"sqlite:///{data_dir / 'catalog.sqlite3'}"
    )
    effective["dock.mount_root"] = str(_mount_root(effective["dock.mount_root"], environ))
    effective["paths.api_socket"] = str(_api_socket(effective["paths.api_socket"], data_dir))


_Section = TypeVar("_Section")


def _section(cls: Callable[..., _Section], section: str, effective: Mapping[str, Any]) -> _Section:
    """A section's settings, whose fields are the section's keys."""
    fields = {}
    for key in KEYS:
        if key.section == section:
            value = effective[key.path]
            if key.convert is not None:
                value = key.convert(value)
            elif key.kind is TEXTS:
                value = tuple(value)
            elif key.kind is NUMBER:
                value = float(value)
            fields[key.name] = value
    return cls(**fields)


def _settings(effective: Mapping[str, Any], source: Path | None) -> Settings:
    by_section: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for key in KEYS:
        by_section[key.section][key.name] = effective[key.path]
    return Settings(
        station_id=effective["station.id"],
        timezone=effective["station.timezone"],
        data_dir=Path(effective["paths.data_dir"]),
        spool_dir=Path(effective["paths.spool_dir"]),
        dock_dir=Path(effective["paths.dock_dir"]),
        key_dir=Path(effective["paths.key_dir"]),
        catalog_url=effective["catalog.url"],
        store=_section(StoreSettings, "store", effective),
        retention=RetentionPolicy(
            standard=timedelta(days=effective["retention.standard_days"]),
            important=timedelta(days=effective["retention.important_days"]),
        ),
        ingest=_section(IngestSettings, "ingest", effective),
        deadline=_section(DeadlineSettings, "deadline", effective),
        dock=_section(DockSettings, "dock", effective),
        review=_section(ReviewRules, "review", effective),
        calendar=WorkingDayCalendar.with_overrides(
            holidays=map(date.fromisoformat, effective["calendar.holidays"]),
            working_days=map(date.fromisoformat, effective["calendar.working_days"]),
        ),
        checkpoint_interval_seconds=effective["custody.checkpoint_interval_seconds"],
        log_level=effective["log.level"],
        api_socket=Path(effective["paths.api_socket"]),
        values=by_section,
        source=source,
    )


def _mount_root(value: str | None, environ: Mapping[str, str]) -> Path:
    """The private mount root: configured, else under systemd's runtime directory, else /run."""
    if value:
        return Path(value).expanduser()
    runtime = environ.get(ENV_RUNTIME_DIRECTORY, "")
    if runtime:
        # RuntimeDirectory= may list several directories, separated by colons: the first is ours.
        return Path(runtime.split(":")[0]) / "mnt"
    return DEFAULT_MOUNT_ROOT


def _api_socket(value: str | None, data_dir: Path) -> Path:
    """The local API's socket: configured, else the socket unit's for the installed station's
    data directory, else in the data directory (a station of one person's, or of a test)."""
    if value:
        return Path(value).expanduser()
    return DEFAULT_API_SOCKET if data_dir == DEFAULT_DATA_DIR else data_dir / "api.sock"


def _default_station_id() -> str:
    name = os.uname().nodename.split(".")[0] or "station"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:63]


# ---------------------------------------------------------------- the example file

_HEADER = """\
# Evidence agent configuration: every key, with its default and an example.
# Written from the table in evidence_agent/config_keys.py by `evidence-agent config example`.
# As it is, this file sets only the built-in defaults: a key whose default is derived (the paths
# under the data directory) or unset, or whose value shown is an example, is commented out;
# uncomment and edit it to use it.
# Use it with `evidence-agent --config FILE ...` or EVIDENCE_AGENT_CONFIG=FILE.
# Any single key can be overridden from the environment as EVIDENCE_AGENT__SECTION__KEY,
# e.g. EVIDENCE_AGENT__STORE__BACKEND=s3; EVIDENCE_AGENT_DATA_DIR moves the whole data directory.
# Check a file with `evidence-agent --config FILE config validate`.
# Secrets (S3 keys, database passwords) never go here: see README, "Credentials".
"""
_WIDTH = 100
_SHORT = 24  # a longer default value is not repeated in the comment


def example_file() -> str:
    """The documented example configuration: every key of the table, its documentation, its
    default, and its default or an example value."""
    lines = [_HEADER.rstrip("\n")]
    for section, doc in SECTIONS.items():
        lines += ["", f"[{section}]"]
        if doc:
            lines += [*_comment(doc), ""]
        for key in KEYS:
            if key.section != section:
                continue
            bound = f" At most {_number(key.high)}." if key.high is not None else ""
            lines += _comment(f"{key.doc}{bound} Default: {_default_words(key)}.")
            if key.example is None:
                lines.append(f"{key.name} = {_toml(key.default, multiline=True)}")
            else:
                # An example is not a default: set as it is, the file would override
                # $EVIDENCE_AGENT_DATA_DIR's paths or accept example USB devices.
                example = f"{key.name} = {_toml(key.example, multiline=True)}"
                lines += [f"# {line}" for line in example.splitlines()]
    return "\n".join(lines) + "\n"


def _default_words(key: Key) -> str:
    if key.default_doc:
        return key.default_doc
    words = _toml(key.default)
    if key.example is None and len(words) > _SHORT:
        return "as shown"
    return words


def _comment(text: str) -> list[str]:
    """`text` as comment lines; each line of it starts a paragraph."""
    return [
        line
        for paragraph in text.splitlines()
        for line in textwrap.wrap(
            # Not at hyphens: a file name such as docs/recorder-identity.md stays whole.
            paragraph,
            _WIDTH,
            initial_indent="# ",
            subsequent_indent="# ",
            break_on_hyphens=False,
        )
    ]


def _toml(value: Any, *, multiline: bool = False) -> str:
    """A TOML value as a person would write it (lists one item a line when long)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        if "\\" in value and "'" not in value:
            return f"'{value}'"  # a literal string: regular expressions stay readable
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    items = [_toml(v) for v in value]
    one_line = "[" + ", ".join(items) + "]"
    if not multiline or len(one_line) <= _WIDTH - 24:
        return one_line
    return "[\n" + "".join(f"    {item},\n" for item in items) + "]"
