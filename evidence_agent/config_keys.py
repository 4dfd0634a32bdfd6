"""Every key of the station configuration, declared once: type, default, bounds, documentation."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from evidence_agent.domain.retention import DEFAULT_IMPORTANT, NATIONAL_MINIMUM, SETTABLE_GROUNDS
from evidence_agent.domain.usb_allowlist import parse_allowlist
from evidence_agent.errors import ConfigError

DEFAULT_DATA_DIR = Path("/var/lib/evidence-agent")
DEFAULT_MOUNT_ROOT = Path("/run/evidence-agent/mnt")
DEFAULT_API_SOCKET = Path("/run/evidence-agent.sock")
EXAMPLE_FILE = "config/evidence-agent.toml"
DEFAULT_FILENAME_PATTERN = (
    r"^(?P<serial>[A-Za-z0-9]{7})_(?P<badge>[0-9]{6})_(?P<start>[0-9]{14})_(?P<seq>[0-9]{1,6})"
    r"(?P<important>_IMP)?\.[A-Za-z0-9]+$"
)
# Actions that need full-process audio/video recording under the rules (seizure, forced
# demolition and the like), and those that need it as circumstances require.
DEFAULT_FULL_RECORDING_TYPES = (
    "seizure",
    "sealing",
    "forced_demolition",
    "compulsory_execution",
    "administrative_detention",
)
DEFAULT_OTHER_TYPES = (
    "on_site_inspection",
    "evidence_collection",
    "hearing",
    "service_of_documents",
    "administrative_penalty",
    "licensing",
    "other",
)

# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Kind:
    label: str  # as messages name it: "expected int, got str"
    types: tuple[type, ...]
    item: type | None = None  # lists: the type of every item


TEXT = Kind("str", (str,))
INTEGER = Kind("int", (int,))
NUMBER = Kind("number", (int, float))
BOOLEAN = Kind("bool", (bool,))
TEXTS = Kind("list", (list,), str)
TABLES = Kind("list", (list,), dict)

Check = Callable[[Any], list[str]]  # the problems with a well-typed value, without the key's name


@dataclass(frozen=True)
class Key:
    section: str
    name: str
    kind: Kind
    default: Any  # None: unset, or derived when the station loads (`default_doc` says how)
    doc: str  # for people: the example file's comment
    default_doc: str = ""  # the default in words, where the value alone would not say it
    example: Any = None  # shown in the example file instead of the default
    low: float | None = None
    why_low: str = ""  # added to the "must be at least" message
    # The largest value that still works: beyond it a time overflows or a buffer is absurd.
    high: float | None = None
    choices: tuple[str, ...] = ()  # allowed values (of every item, for a list)
    normalize: Callable[[Any], Any] | None = None  # applied before checking (log level: upper)
    check: Check | None = None
    convert: Callable[[Any], Any] | None = None  # to the value Settings holds (a Path, ...)

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _timezone_problems(name: str) -> list[str]:
    if name == "local":
        return []
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return [f"{name!r} is not a known time zone (e.g. Asia/Shanghai)"]
    return []


def _station_id_problems(value: str) -> list[str]:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", value):
        return []
    return [f"{value!r} must be 1-63 letters, digits, '.', '_' or '-'"]


def _pattern_problems(patterns: list[str]) -> list[str]:
    problems = []
    for pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            problems.append(f"{pattern!r} is not a valid regex: {e}")
            continue
        if "start" not in compiled.groupindex and "serial" not in compiled.groupindex:
            problems.append(f"{pattern!r} needs a named group 'start' or 'serial'")
    return problems


def _allowlist_problems(entries: list[dict[str, Any]]) -> list[str]:
    try:
        parse_allowlist(entries)
    except ConfigError as e:
        return [e.message]
    return []


_CREDENTIAL_IN_URL = (
    "holds a password: no credential is read from the configuration; give it in PGPASSWORD or "
    "~/.pgpass (PGPASSFILE) instead"
)


# user:password@ after the scheme as SQLAlchemy reads it (a password may hold / or @)
_USER_PASSWORD = re.compile(r"^[^:/?#]+://[^:/@]*:[^@]+@")


def _has_password(url: str) -> bool:
    """A password in the URL's user part or in its query (libpq takes `?password=` too)."""
    try:
        password = urlsplit(url).password
    except ValueError:  # a malformed host: the pattern below still reads the user part
        password = None
    query = url.partition("?")[2].partition("#")[0]
    return (
        bool(password)
        or _USER_PASSWORD.match(url) is not None
        or any(name.lower() == "password" for name, _ in parse_qsl(query, keep_blank_values=True))
    )


_CATALOG_SCHEME = re.compile(r"(sqlite|postgresql|postgres)(\+[a-z0-9_]+)?")


def _catalog_url_problems(url: str) -> list[str]:
    """A SQLite or PostgreSQL URL, without a password. The value is never repeated in a
    message: it may hold the password being refused."""
    if _has_password(url):
        return [_CREDENTIAL_IN_URL]
    scheme, sep, rest = url.partition("://")
    if not sep or not _CATALOG_SCHEME.fullmatch(scheme):
        return [
            "is not a catalog URL: expected sqlite:///PATH or "
            "postgresql://USER@HOST[:PORT]/DATABASE"
        ]
    if scheme.startswith("sqlite") and not rest.lstrip("/"):
        return ["names no database file: expected sqlite:///PATH"]
    if not rest:
        return ["names no database: expected postgresql://USER@HOST[:PORT]/DATABASE"]
    return []


def _identity_file_problems(name: str) -> list[str]:
    """A path relative to the volume root that stays inside the volume."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\0" in name:
        return ["must be a file's path relative to the volume root, e.g. RECORDER.JSON"]
    if any(part in ("", ".", "..") for part in parts):
        return ["must stay inside the volume: no '..', '.' or empty part (e.g. SYSTEM/ID.JSON)"]
    return []


def _endpoint_problems(url: str) -> list[str]:
    if _has_password(url):
        return [
            "holds a password: no credential is read from the configuration; S3 keys come "
            "from the environment or a credentials file (see README, Credentials)"
        ]
    return []


def _port_problems(port: int) -> list[str]:
    return [] if 0 <= port <= 65535 else ["must be 0 (off) or a TCP port up to 65535"]


def _dates_problems(days: list[str]) -> list[str]:
    problems = []
    for day in days:
        try:
            date.fromisoformat(day)
        except ValueError:
            problems.append(f"{day!r} is not a date (YYYY-MM-DD)")
    return problems


def _names_problems(names: list[str]) -> list[str]:
    return [] if all(names) else ["every item must be a non-empty string"]


_AT_LEAST_SIX_MONTHS = " (the national minimum: 6 months)"
# Upper bounds of time keys: far beyond any real use, well inside what dates can hold.
_CENTURY_DAYS = 36500
_YEAR_HOURS = 8760

SECTIONS: dict[str, str] = {
    "station": "",
    "paths": "",
    "catalog": "",
    "store": "",
    "retention": (
        "How long evidence is kept, counted from the later of the end of the recording and the "
        "moment the clip was catalogued: a clip recorded long before it was docked (a recorder's "
        "clock reset, old footage found on a card) never arrives already expired. The catalog's "
        "retention date and the object store's lock (S3 Object Lock, COMPLIANCE) are that same "
        "date; a longer class later (a case link, a ground) extends both, and neither is ever "
        "shortened; a legal hold stops any deletion whatever the date.\n"
        "Nothing is deleted when the date passes: `retention due` lists such clips, and each "
        "deletion needs approval (docs/review.md).\n"
        "Kept for good whatever the periods, by the national rules (not settable here): clips "
        "linked to a case (case_evidence), and clips a supervisor marks with `retention mark "
        "--ground` "
        + ", ".join(g.value for g in SETTABLE_GROUNDS[:-1])
        + f" or {SETTABLE_GROUNDS[-1].value}.\n"
        "Signed custody checkpoints published to the bucket are locked for the longest period."
    ),
    "ingest": "",
    "deadline": "",
    "dock": "",
    "review": "Rules for case files (the people who may act on them are in the roles file).",
    "calendar": (
        "The working-day calendar every legal-review and notice deadline counts in: Monday to "
        "Friday, without the official holidays, with the weekend days worked in lieu. The years "
        "the chinese-calendar library knows come from it; add a later year (or correct one) here "
        "with ISO dates, from the State Council's notice on the year's holiday arrangement. A "
        "deadline in a year known neither way is an error, not a guess."
    ),
    "custody": "",
    "log": "",
}

KEYS: tuple[Key, ...] = (
    Key(
        "station",
        "id",
        TEXT,
        None,
        "Name of this docking station in the custody log and the catalog: 1-63 letters, "
        "digits, . _ -. Two stations sharing a catalog must have different ids.",
        default_doc="the host name",
        example="station-01",
        check=_station_id_problems,
    ),
    Key(
        "station",
        "timezone",
        TEXT,
        "local",
        "Zone for times shown to people and for recorder file names when the recorder's identity "
        'file gives no UTC offset. "local" is the system\'s zone. Stored times are always UTC.',
        example="Asia/Shanghai",
        check=_timezone_problems,
    ),
    Key(
        "paths",
        "data_dir",
        TEXT,
        None,
        "Holds the SQLite catalog, the spool, the local object store, the keys and the dock folder.",
        default_doc=f"{DEFAULT_DATA_DIR} (or $EVIDENCE_AGENT_DATA_DIR)",
        example=str(DEFAULT_DATA_DIR),
    ),
    Key(
        "paths",
        "spool_dir",
        TEXT,
        None,
        "Complete, hashed copies waiting for the object store.",
        default_doc="<data_dir>/spool",
        example=str(DEFAULT_DATA_DIR / "spool"),
    ),
    Key(
        "paths",
        "dock_dir",
        TEXT,
        None,
        "Folder where mounted recorder volumes appear (each directory in it is one volume).",
        default_doc="<data_dir>/dock",
        example=str(DEFAULT_DATA_DIR / "dock"),
    ),
    Key(
        "paths",
        "key_dir",
        TEXT,
        None,
        "The station's custody-log signing key (station.key, mode 0600) and its public forms.",
        default_doc="<data_dir>/keys",
        example=str(DEFAULT_DATA_DIR / "keys"),
    ),
    Key(
        "paths",
        "api_socket",
        TEXT,
        None,
        "The local API's Unix socket: people's own accounts reach the station through it when "
        "the data directory is private to the service. Under systemd the socket unit "
        "(systemd/evidence-agent.socket) makes it and hands it over; a daemon run otherwise "
        "binds it here itself, mode 0660, group its own group.",
        default_doc=f"{DEFAULT_API_SOCKET} with the default data directory, else <data_dir>/api.sock",
        example=str(DEFAULT_API_SOCKET),
    ),
    Key(
        "catalog",
        "url",
        TEXT,
        None,
        "SQLAlchemy URL. Shared catalog for many stations: postgresql://evidence@db.example/evidence "
        "(the password comes from PGPASSWORD or ~/.pgpass, never from this file: a URL that "
        "holds one is refused).",
        default_doc="sqlite:///<data_dir>/catalog.sqlite3 (WAL mode)",
        example=f"sqlite:///{DEFAULT_DATA_DIR / 'catalog.sqlite3'}",
        check=_catalog_url_problems,
    ),
    Key(
        "store",
        "backend",
        TEXT,
        "local",
        '"local": a read-only, content-addressed directory on this machine (the embedded '
        'default). "s3": S3-compatible storage with Object Lock (SeaweedFS, Ceph RGW, AWS).',
        choices=("local", "s3"),
    ),
    Key(
        "store",
        "local_dir",
        TEXT,
        None,
        "Local store directory.",
        default_doc="<data_dir>/objects",
        example=str(DEFAULT_DATA_DIR / "objects"),
        convert=_path,
    ),
    Key(
        "store",
        "bucket",
        TEXT,
        None,
        'S3 bucket (required when backend = "s3"); it must have Object Lock enabled.',
        default_doc="unset",
        example="evidence",
    ),
    Key(
        "store",
        "endpoint",
        TEXT,
        None,
        "S3 endpoint URL (no user or password in it: S3 keys never come from this file).",
        default_doc="unset (AWS)",
        example="https://s3.example.org:8333",
        check=_endpoint_problems,
    ),
    Key("store", "region", TEXT, "us-east-1", "S3 region."),
    Key(
        "store",
        "addressing_style",
        TEXT,
        "path",
        '"path", "virtual" or "auto" addressing; path is what SeaweedFS and Ceph expect.',
        choices=("path", "virtual", "auto"),
    ),
    Key(
        "store",
        "ca_bundle",
        TEXT,
        None,
        "CA bundle for the endpoint's TLS certificate.",
        default_doc="unset (the system's)",
        example="/etc/ssl/certs/ca-certificates.crt",
        convert=_path,
    ),
    Key(
        "store",
        "checksum_mode",
        TEXT,
        "when_supported",
        '"when_supported" sends and checks SHA-256 checksums on every request; "when_required" '
        "for older servers such as Ceph RGW 16 that reject flexible checksums.",
        choices=("when_supported", "when_required"),
    ),
    Key("store", "prefix", TEXT, "evidence/", "Key prefix for objects and published checkpoints."),
    Key(
        "retention",
        "standard_days",
        INTEGER,
        NATIONAL_MINIMUM.days,
        "Days a clip is kept: at least the national minimum of 183 (6 months).",
        low=NATIONAL_MINIMUM.days,
        why_low=_AT_LEAST_SIX_MONTHS,
        high=_CENTURY_DAYS,
    ),
    Key(
        "retention",
        "important_days",
        INTEGER,
        DEFAULT_IMPORTANT.days,
        "Days a clip marked important on the recorder is kept: at least standard_days.",
        low=NATIONAL_MINIMUM.days,
        why_low=_AT_LEAST_SIX_MONTHS,
        high=_CENTURY_DAYS,
    ),
    Key(
        "ingest",
        "video_patterns",
        TEXTS,
        ("*.mp4", "*.mov", "*.avi", "*.mkv", "*.ts", "*.asf", "*.3gp"),
        "Files ingested as video (case-insensitive shell patterns). Anything matching none of "
        'the three kinds is listed in the report as "not media", never silently ignored.',
    ),
    Key(
        "ingest",
        "photo_patterns",
        TEXTS,
        ("*.jpg", "*.jpeg", "*.png", "*.heic"),
        "Files ingested as photos.",
    ),
    Key(
        "ingest",
        "audio_patterns",
        TEXTS,
        ("*.wav", "*.mp3", "*.aac", "*.amr", "*.m4a"),
        "Files ingested as audio.",
    ),
    Key(
        "ingest",
        "filename_patterns",
        TEXTS,
        (DEFAULT_FILENAME_PATTERN,),
        "Regular expressions for file names, tried in order. Named groups: serial, badge, start "
        "(YYYYMMDDhhmmss, YYYYMMDDhhmm or YYYYMMDD in recorder local time), seq, important "
        "(present = the file was marked important on the recorder). The default reads the "
        "common <serial>_<badge>_<YYYYMMDDhhmmss>_<seq>[_IMP].<ext> shape.",
        check=_pattern_problems,
    ),
    Key(
        "ingest",
        "identity_file",
        TEXT,
        "RECORDER.JSON",
        "Identity file: its path relative to the volume root, inside the volume (see "
        "docs/recorder-identity.md).",
        check=_identity_file_problems,
    ),
    Key("ingest", "sm3", BOOLEAN, False, "Also compute SM3 (GB/T 32905) beside SHA-256."),
    Key(
        "ingest",
        "chunk_bytes",
        INTEGER,
        2 * 1024 * 1024,
        "Read size of the copy loop in bytes, rounded up to whole pages (memory per copy is 4 "
        "chunks).",
        default_doc="2 MiB",
        low=64 * 1024,
        high=64 * 1024 * 1024,
    ),
    Key(
        "ingest",
        "min_spool_free_bytes",
        INTEGER,
        1024 * 1024 * 1024,
        "Warn when the spool has less free space than this, in bytes.",
        default_doc="1 GiB",
        low=0,
    ),
    Key(
        "deadline",
        "limit_hours",
        INTEGER,
        24,
        "The 24-hour rule: footage must be hashed and catalogued within this many hours of the "
        "end of the recording.",
        low=1,
        high=_YEAR_HOURS,
    ),
    Key(
        "deadline",
        "warn_hours",
        INTEGER,
        20,
        "Warn from this many hours after the recording ended (less than limit_hours).",
        low=1,
        high=_YEAR_HOURS,
    ),
    Key(
        "deadline",
        "undocked_warn_hours",
        INTEGER,
        20,
        "Warn about recorders assigned to an officer and not docked for this long.",
        low=1,
        high=_YEAR_HOURS,
    ),
    Key(
        "dock",
        "sources",
        TEXTS,
        ("folder", "usb"),
        'Where docked recorders come from: "folder" (the dock folder) and "usb" (udev hot-plug).',
        choices=("folder", "usb"),
    ),
    Key(
        "dock",
        "settle_seconds",
        NUMBER,
        2.0,
        "A volume is read once it has stopped changing for this many seconds.",
        low=0,
        high=3600,
    ),
    Key("dock", "max_concurrent", INTEGER, 8, "Recorders ingested at once.", low=1, high=64),
    Key(
        "dock",
        "api_workers",
        INTEGER,
        4,
        "Local API requests the daemon serves at once, each on a thread below the docks' CPU "
        "priority; more callers wait in order for a free one (docs/review.md).",
        low=1,
        high=64,
    ),
    Key(
        "dock",
        "clock_skew_warn_seconds",
        INTEGER,
        60,
        "Warn and flag clips when the recorder clock is off by more than this many seconds.",
        low=0,
        high=_YEAR_HOURS * 3600,
    ),
    Key(
        "dock",
        "clear_recorder",
        BOOLEAN,
        False,
        "Erase files from the recorder after the stored copy is read back and its hash equals the "
        "ingest hash; every erase is a custody event. Needs a read-write mount of the recorder "
        'and write access to its device (see docs/docking.md, "Clearing recorders").',
    ),
    Key(
        "dock",
        "usb_allowlist",
        TABLES,
        (),
        "USB storage that is a recorder even when not enrolled: each entry matches on the USB "
        "vendor id and/or model id (4 hex digits, as `udevadm info` shows ID_VENDOR_ID/"
        "ID_MODEL_ID) and/or a regular expression for the whole USB serial (ID_SERIAL_SHORT). "
        "Enrolled recorders (`evidence-agent recorders enroll --usb-serial`) need no entry. "
        "Anything else is never ingested automatically.",
        default_doc="[] (enrolled recorders only)",
        example=[{"vendor_id": "2a4b", "model_id": "0c01"}, {"serial_pattern": "BWC[0-9]{7}"}],
        check=_allowlist_problems,
        convert=parse_allowlist,
    ),
    Key(
        "dock",
        "mount_root",
        TEXT,
        None,
        "Private directory where USB recorders are mounted read-only (mode 0700).",
        default_doc=f"$RUNTIME_DIRECTORY/mnt under systemd, else {DEFAULT_MOUNT_ROOT}",
        example=str(DEFAULT_MOUNT_ROOT),
        convert=_path,
    ),
    Key(
        "dock",
        "metrics_port",
        INTEGER,
        9464,
        "Prometheus metrics at http://127.0.0.1:<port>/metrics (loopback only); 0 turns them off.",
        check=_port_problems,
    ),
    Key(
        "review",
        "full_recording_types",
        TEXTS,
        DEFAULT_FULL_RECORDING_TYPES,
        "Enforcement types whose action must be recorded from start to end (`case check` exits 6 "
        "when such a case's recording is incomplete).",
        check=_names_problems,
    ),
    Key(
        "review",
        "other_enforcement_types",
        TEXTS,
        DEFAULT_OTHER_TYPES,
        "Other types a case may have (recording as circumstances require).",
        check=_names_problems,
    ),
    Key(
        "review",
        "gap_tolerance_seconds",
        NUMBER,
        2.0,
        "Pauses between clips shorter than this are not gaps (a recorder closing one file and "
        "opening the next).",
        low=0,
        high=86400,
    ),
    Key(
        "review",
        "suggest_margin_minutes",
        NUMBER,
        30.0,
        "How far around the action window `case suggest` looks.",
        low=0,
        high=7 * 24 * 60,
    ),
    Key(
        "review",
        "case_file_days",
        INTEGER,
        30,
        "The case file is due this many days after the end of the action.",
        low=1,
        high=3650,
    ),
    Key(
        "calendar",
        "holidays",
        TEXTS,
        [],
        "Official holidays the library does not know (YYYY-MM-DD).",
        example=["2027-01-01"],
        check=_dates_problems,
    ),
    Key(
        "calendar",
        "working_days",
        TEXTS,
        [],
        "Weekend days worked in lieu of a holiday, which the library does not know (YYYY-MM-DD).",
        example=["2027-02-07"],
        check=_dates_problems,
    ),
    Key(
        "custody",
        "checkpoint_interval_seconds",
        INTEGER,
        300,
        "Sign a checkpoint at least this often while events arrive (and after every dock).",
        low=1,
        high=86400,
    ),
    Key(
        "log",
        "level",
        TEXT,
        "INFO",
        "DEBUG, INFO, WARNING or ERROR.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        normalize=lambda v: v.upper(),
    ),
)

# Keys of earlier releases, refused with where their value goes now.
MOVED = {
    ("store", "default_retention_days"): (
        "replaced by retention.standard_days (clips and custody checkpoints now follow the one "
        "retention policy; see [retention] in config/evidence-agent.toml)"
    ),
}
