"""The configuration table: defaults, validation of every key at once, environment overrides,
the retention policy and its floor, the example file."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from evidence_agent.config import ENV_DATA_DIR, build_settings, example_file, load_settings
from evidence_agent.config_keys import (
    DEFAULT_DATA_DIR,
    DEFAULT_FILENAME_PATTERN,
    EXAMPLE_FILE,
    KEYS,
    SECTIONS,
)
from evidence_agent.domain.retention import RetentionPolicy
from evidence_agent.errors import ConfigError, ExitCode


def _error(raw: dict[str, Any], env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_settings(raw, env or {})
    assert info.value.exit_code == ExitCode.CONFIG
    return info.value


def test_defaults() -> None:
    s = build_settings({}, {})
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", s.station_id)
    assert s.timezone == "local"
    assert s.tz is None
    assert s.data_dir == DEFAULT_DATA_DIR
    assert s.spool_dir == DEFAULT_DATA_DIR / "spool"
    assert s.dock_dir == DEFAULT_DATA_DIR / "dock"
    assert s.key_dir == DEFAULT_DATA_DIR / "keys"
    assert s.catalog_url == f"sqlite:///{DEFAULT_DATA_DIR / 'catalog.sqlite3'}"
    assert s.store.backend == "local"
    assert s.store.local_dir == DEFAULT_DATA_DIR / "objects"
    assert s.store.bucket is None
    assert s.retention == RetentionPolicy(
        standard=timedelta(days=183), important=timedelta(days=1095)
    )
    assert s.review.case_file_days == 30 and s.review.requires_full_recording("seizure")
    assert s.store.checksum_mode == "when_supported"
    assert s.ingest.filename_patterns == (DEFAULT_FILENAME_PATTERN,)
    assert s.ingest.identity_file == "RECORDER.JSON"
    assert "*.mp4" in s.ingest.video_patterns
    assert s.ingest.sm3 is False
    assert (s.deadline.limit_hours, s.deadline.warn_hours) == (24, 20)
    assert s.dock.sources == ("folder", "usb")
    assert s.dock.clear_recorder is False
    assert s.log_level == "INFO"
    assert s.source is None


def test_file_values_are_used() -> None:
    s = build_settings(
        {
            "station": {"id": "hz-station-01", "timezone": "Asia/Shanghai"},
            "store": {"backend": "s3", "bucket": "evidence"},
            "retention": {"standard_days": 365, "important_days": 1825},
            "dock": {"settle_seconds": 1, "sources": ["folder"]},
            "log": {"level": "debug"},
        },
        {},
    )
    assert s.station_id == "hz-station-01"
    assert str(s.tz) == "Asia/Shanghai"
    assert (s.store.backend, s.store.bucket) == ("s3", "evidence")
    assert (s.retention.standard.days, s.retention.important.days) == (365, 1825)
    assert s.dock.settle_seconds == 1.0
    assert isinstance(s.dock.settle_seconds, float)
    assert s.dock.sources == ("folder",)
    assert s.log_level == "DEBUG"


def test_every_bad_key_is_named_in_one_error() -> None:
    raw = {
        "station": {"id": "bad id!", "timezone": "Mars/Olympus", "colour": "red"},
        "store": {"backend": "tape", "checksum_mode": "never"},
        "retention": {"standard_days": 30},
        "ingest": {"chunk_bytes": "big", "filename_patterns": ["(", "^[0-9]+$"], "sm3": 1},
        "deadline": {"limit_hours": True},
        "dock": {"sources": ["folder", "bluetooth"], "settle_seconds": -1},
        "log": {"level": "LOUD"},
        "nonsense": 3,
    }
    error = _error(raw)
    expected = [
        "station.id",
        "station.timezone",
        "station.colour: unknown key",
        "store.backend",
        "store.checksum_mode",
        "retention.standard_days: must be at least 183 (the national minimum: 6 months)",
        "ingest.chunk_bytes: expected int",
        "ingest.filename_patterns: '(' is not a valid regex",
        "ingest.filename_patterns: '^[0-9]+$' needs a named group",
        "ingest.sm3: expected bool",
        "deadline.limit_hours: expected a number, got a boolean",
        "dock.sources: 'bluetooth'",
        "dock.settle_seconds: must not be negative",
        "log.level",
        "[nonsense]: expected a table",
    ]
    for part in expected:
        assert part in error.message, part
    assert error.message.startswith(f"{len(expected)} bad configuration key(s)")
    assert error.remedy


def test_warning_must_come_before_the_limit() -> None:
    error = _error({"deadline": {"limit_hours": 10, "warn_hours": 10}})
    assert "deadline.warn_hours: must be less than deadline.limit_hours" in error.message


def test_s3_needs_a_bucket() -> None:
    assert "store.bucket: required" in _error({"store": {"backend": "s3"}}).message


def test_pattern_items_must_be_strings() -> None:
    error = _error({"ingest": {"video_patterns": ["*.mp4", 4]}})
    assert "ingest.video_patterns: every item must be a string" in error.message


def test_environment_overrides_file_values_and_is_typed() -> None:
    env = {
        "EVIDENCE_AGENT__STORE__BACKEND": "s3",
        "EVIDENCE_AGENT__STORE__BUCKET": "evidence-bucket",
        "EVIDENCE_AGENT__STORE__ENDPOINT": "http://127.0.0.1:8333",
        "EVIDENCE_AGENT__DOCK__MAX_CONCURRENT": "3",
        "EVIDENCE_AGENT__DOCK__CLEAR_RECORDER": "true",
        "EVIDENCE_AGENT__INGEST__VIDEO_PATTERNS": '["*.MP4", "*.AVI"]',
        "EVIDENCE_AGENT__STATION__TIMEZONE": "Asia/Shanghai",
        "UNRELATED": "x",
    }
    s = build_settings({"store": {"backend": "local"}, "dock": {"max_concurrent": 8}}, env)
    assert s.store.backend == "s3"
    assert s.store.bucket == "evidence-bucket"
    assert s.store.endpoint == "http://127.0.0.1:8333"
    assert s.dock.max_concurrent == 3
    assert s.dock.clear_recorder is True
    assert s.ingest.video_patterns == ("*.MP4", "*.AVI")
    assert s.timezone == "Asia/Shanghai"


def test_bad_environment_keys_are_named() -> None:
    env = {
        "EVIDENCE_AGENT__STORE": "x",
        "EVIDENCE_AGENT__STORE__NOPE": "1",
        "EVIDENCE_AGENT__DOCK__MAX_CONCURRENT": "many",
    }
    message = _error({}, env).message
    assert "EVIDENCE_AGENT__STORE: expected EVIDENCE_AGENT__SECTION__KEY" in message
    assert "store.nope: unknown key" in message
    assert "dock.max_concurrent: expected int, got str" in message


def test_data_dir_moves_everything_derived_from_it(tmp_path: Path) -> None:
    s = build_settings({}, {ENV_DATA_DIR: str(tmp_path)})
    assert s.data_dir == tmp_path
    assert s.spool_dir == tmp_path / "spool"
    assert s.dock_dir == tmp_path / "dock"
    assert s.key_dir == tmp_path / "keys"
    assert s.store.local_dir == tmp_path / "objects"
    assert s.catalog_url == f"sqlite:///{tmp_path / 'catalog.sqlite3'}"


def test_data_dir_variable_wins_over_the_file_but_explicit_paths_stay(tmp_path: Path) -> None:
    raw = {
        "paths": {"data_dir": "/srv/elsewhere", "spool_dir": "/fast/spool"},
        "catalog": {"url": "postgresql://db/evidence"},
    }
    s = build_settings(raw, {ENV_DATA_DIR: str(tmp_path)})
    assert s.data_dir == tmp_path
    assert s.store.local_dir == tmp_path / "objects"
    assert s.spool_dir == Path("/fast/spool")
    assert s.catalog_url == "postgresql://db/evidence"


def test_empty_data_dir_variable_is_ignored() -> None:
    assert build_settings({}, {ENV_DATA_DIR: ""}).data_dir == DEFAULT_DATA_DIR


def test_load_settings_reads_toml_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[station]\nid = "hz-01"\n[store]\nbackend = "tape"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert str(path) in info.value.message
    path.write_text('[station]\nid = "hz-01"\n', encoding="utf-8")
    s = load_settings(None, {"EVIDENCE_AGENT_CONFIG": str(path)})
    assert s.station_id == "hz-01"
    assert s.source == path


@pytest.mark.parametrize("text", ["[station\n", "\xff"])
def test_load_settings_bad_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError):
        load_settings(path, {})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", {})


def test_numeric_looking_string_from_the_environment() -> None:
    s = build_settings({}, {"EVIDENCE_AGENT__STATION__ID": "123"})
    assert s.station_id == "123"


def test_dock_usb_keys_defaults(tmp_path: Path) -> None:
    s = build_settings({}, {})
    assert s.dock.usb_allowlist == ()
    assert s.dock.mount_root == Path("/run/evidence-agent/mnt")
    assert s.dock.metrics_port == 9464
    under_systemd = build_settings({}, {"RUNTIME_DIRECTORY": f"{tmp_path}/run:{tmp_path}/other"})
    assert under_systemd.dock.mount_root == tmp_path / "run" / "mnt"
    explicit = build_settings({"dock": {"mount_root": str(tmp_path / "m")}}, {})
    assert explicit.dock.mount_root == tmp_path / "m"


def test_dock_usb_allowlist_is_parsed_from_file_and_environment() -> None:
    s = build_settings(
        {"dock": {"usb_allowlist": [{"vendor_id": "2A4B", "model_id": "0c01"}], "metrics_port": 0}},
        {},
    )
    (entry,) = s.dock.usb_allowlist
    assert (entry.vendor_id, entry.model_id, entry.serial_pattern) == ("2a4b", "0c01", None)
    assert s.dock.metrics_port == 0
    env = {"EVIDENCE_AGENT__DOCK__USB_ALLOWLIST": '[{serial_pattern = "BWC[0-9]{7}"}]'}
    (from_env,) = build_settings({}, env).dock.usb_allowlist
    assert from_env.serial_pattern == "BWC[0-9]{7}"


def test_bad_allowlist_entries_join_the_one_error() -> None:
    error = _error(
        {
            "dock": {
                "usb_allowlist": [{}, {"vendor_id": "xyz"}, {"serial_pattern": "("}, {"colour": 1}],
                "metrics_port": 70000,
                "max_concurrent": 0,
            }
        }
    )
    for part in (
        "dock.usb_allowlist: 4 bad USB allowlist entries",
        "entry 0: an empty entry would match every USB stick",
        "entry 1: vendor_id 'xyz' is not 4 hex digits",
        "entry 2: serial_pattern '(' is not a valid regex",
        "entry 3: unknown key(s) colour",
        "dock.metrics_port: must be 0 (off) or a TCP port up to 65535",
        "dock.max_concurrent: must be at least 1",
    ):
        assert part in error.message, part
    assert error.message.startswith("3 bad configuration key(s)")


def test_retention_below_the_national_minimum_names_the_key_and_the_floor() -> None:
    error = _error({"retention": {"standard_days": 90, "important_days": 100}})
    for part in (
        "retention.standard_days: must be at least 183 (the national minimum: 6 months)",
        "retention.important_days: must be at least 183 (the national minimum: 6 months)",
    ):
        assert part in error.message, part
    env = {"EVIDENCE_AGENT__RETENTION__STANDARD_DAYS": "182"}
    assert "retention.standard_days: must be at least 183" in _error({}, env).message


def test_important_retention_is_never_shorter_than_standard() -> None:
    error = _error({"retention": {"standard_days": 400, "important_days": 300}})
    assert "retention.important_days: must not be less than retention.standard_days" in (
        error.message
    )


def test_retention_from_the_environment() -> None:
    s = build_settings({}, {"EVIDENCE_AGENT__RETENTION__STANDARD_DAYS": "400"})
    assert s.retention.standard == timedelta(days=400)


def test_the_store_default_retention_key_is_refused_with_its_replacement() -> None:
    error = _error({"store": {"default_retention_days": 400}})
    assert "store.default_retention_days: replaced by retention.standard_days" in error.message


def test_review_rules_are_station_configuration() -> None:
    s = build_settings(
        {
            "review": {
                "full_recording_types": ["seizure"],
                "other_enforcement_types": ["inspection"],
                "gap_tolerance_seconds": 1.5,
                "case_file_days": 60,
            }
        },
        {},
    )
    assert s.review.enforcement_types == ("seizure", "inspection")
    assert s.review.gap_tolerance == timedelta(seconds=1.5)
    assert s.review.case_file_days == 60
    error = _error(
        {
            "review": {
                "full_recording_types": ["seizure", ""],
                "other_enforcement_types": ["seizure"],
            }
        }
    )
    assert "review.full_recording_types: every item must be a non-empty string" in error.message
    assert "review.other_enforcement_types: 'seizure' is also in" in error.message


def test_every_key_reaches_the_settings_and_config_show() -> None:
    s = build_settings({}, {ENV_DATA_DIR: "/srv/evidence"})
    shown = {(section, key) for section, body in s.values.items() for key in body}
    assert shown == {(k.section, k.name) for k in KEYS}
    assert s.values["store"]["local_dir"] == "/srv/evidence/objects"
    assert s.values["retention"] == {"standard_days": 183, "important_days": 1095}


def test_every_key_is_documented_with_a_default() -> None:
    assert {k.section for k in KEYS} == set(SECTIONS)
    assert len({(k.section, k.name) for k in KEYS}) == len(KEYS)
    for key in KEYS:
        assert key.doc.strip(), key.path
        if key.default is None:
            # Unset or derived: the file shows an example, and says what the default is.
            assert key.default_doc and key.example is not None, key.path


def test_the_example_file_is_the_table() -> None:
    """config/evidence-agent.toml is what `evidence-agent config example` writes."""
    example = Path(__file__).resolve().parents[2] / EXAMPLE_FILE
    assert example.read_text(encoding="utf-8") == example_file(), (
        "regenerate it: evidence-agent config example > config/evidence-agent.toml"
    )
    # As it is, the file sets the defaults only; every example is there, commented out.
    document = tomllib.loads(example_file())
    present = {(section, key) for section, body in document.items() for key in body}
    assert present == {(k.section, k.name) for k in KEYS if k.example is None}
    for key in KEYS:
        if key.example is None:
            value = document[key.section][key.name]
            assert value == key.default or list(value) == list(key.default), key.path
    assert build_settings(document, {}) == build_settings({}, {})
    uncommented = tomllib.loads(_uncommented_examples(example_file()))
    for key in KEYS:
        assert uncommented[key.section][key.name] == (
            key.default if key.example is None else key.example
        ) or list(uncommented[key.section][key.name]) == list(key.default), key.path
    build_settings(uncommented, {})  # and the examples are valid


def _uncommented_examples(text: str) -> str:
    """The example file with its commented-out `key = value` lines (and their continuation
    lines) made live."""
    out: list[str] = []
    open_list = False
    for line in text.splitlines():
        body = line[2:] if line.startswith("# ") else None
        if body is not None and (open_list or re.match(r"[a-z_]+ = ", body)):
            out.append(body)
            open_list = body.endswith("[") or (open_list and body != "]")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def test_every_key_has_its_documentation_above_it() -> None:
    lines = example_file().splitlines()
    for key in KEYS:
        setting = (f"{key.name} = ", f"# {key.name} = ")
        at = lines.index(next(ln for ln in lines if ln.startswith(setting)))
        comment = []
        for line in reversed(lines[:at]):
            if not line.startswith("# "):
                break
            comment.insert(0, line[2:])
        text = " ".join(comment)
        assert " ".join(key.doc.split()) in text, key.path
        assert "Default: " in text, key.path


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("catalog", "postgresql://evidence:pw-9f2@db.example/evidence"),
        ("catalog", "postgresql://evidence@db.example/evidence?password=pw-9f2"),
        ("store", "https://access:pw-9f2@s3.example.org:8333"),
    ],
)
def test_a_password_in_a_url_is_refused_without_repeating_it(key: str, url: str) -> None:
    name = "url" if key == "catalog" else "endpoint"
    error = _error({key: {name: url}})
    assert f"{key}.{name}: holds a password" in error.message
    assert "pw-9f2" not in str(error)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"catalog": {"url": "not a url"}}, "catalog.url: is not a catalog URL"),
        ({"catalog": {"url": "mysql://db/evidence"}}, "catalog.url: is not a catalog URL"),
        ({"catalog": {"url": "sqlite://"}}, "catalog.url: names no database file"),
        ({"catalog": {"url": "postgresql://"}}, "catalog.url: names no database"),
        ({"dock": {"settle_seconds": float("inf")}}, "dock.settle_seconds: must be a finite"),
        ({"dock": {"settle_seconds": float("nan")}}, "dock.settle_seconds: must be a finite"),
        ({"dock": {"settle_seconds": 1e20}}, "dock.settle_seconds: must be at most 3600"),
        (
            {"review": {"gap_tolerance_seconds": float("inf")}},
            "review.gap_tolerance_seconds: must be a finite",
        ),
        (
            {"review": {"suggest_margin_minutes": 1e18}},
            "review.suggest_margin_minutes: must be at most",
        ),
        ({"ingest": {"chunk_bytes": 1 << 40}}, "ingest.chunk_bytes: must be at most 67108864"),
        ({"ingest": {"identity_file": "../../x"}}, "ingest.identity_file: must stay inside"),
        ({"ingest": {"identity_file": "SYSTEM/../../x"}}, "ingest.identity_file: must stay inside"),
        ({"ingest": {"identity_file": "/etc/shadow"}}, "ingest.identity_file: must be a file's"),
        ({"ingest": {"identity_file": ""}}, "ingest.identity_file: must be a file's"),
    ],
)
def test_values_that_would_fail_later_are_refused_at_validation(
    raw: dict[str, Any], problem: str
) -> None:
    assert problem in _error(raw).message


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("EVIDENCE_AGENT__DOCK__SETTLE_SECONDS", "inf", "dock.settle_seconds"),
        ("EVIDENCE_AGENT__DOCK__SETTLE_SECONDS", "nan", "dock.settle_seconds"),
        ("EVIDENCE_AGENT__CATALOG__URL", "not a url", "catalog.url"),
        ("EVIDENCE_AGENT__INGEST__IDENTITY_FILE", "../../x", "ingest.identity_file"),
        ("EVIDENCE_AGENT__INGEST__CHUNK_BYTES", str(1 << 30), "ingest.chunk_bytes"),
    ],
)
def test_the_same_from_the_environment(variable: str, value: str, key: str) -> None:
    assert f"{key}: " in _error({}, {variable: value}).message


def test_bounds_keep_what_works() -> None:
    s = build_settings(
        {
            "catalog": {"url": "postgresql+psycopg://evidence@db.example:5432/evidence"},
            "dock": {"settle_seconds": 3600},
            "ingest": {"chunk_bytes": 64 << 20, "identity_file": "SYSTEM/ID.JSON"},
        },
        {},
    )
    assert s.dock.settle_seconds == 3600.0
    assert s.ingest.chunk_bytes == 64 << 20 and s.ingest.identity_file == "SYSTEM/ID.JSON"
    assert build_settings({"catalog": {"url": "sqlite:///relative.sqlite3"}}, {}).catalog_url
