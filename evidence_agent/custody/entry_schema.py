"""A custody entry read back by a verifier: its event number, its fields and its RFC 8785 form."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from evidence_agent.custody.canonical import canonical_json
from evidence_agent.errors import InputError

SEQ_KEY = b',"seq":'
V_TAIL = b'","v":1}'  # how every canonical entry of format version 1 ends
ENTRY_FIELDS = frozenset(
    {"v", "seq", "station", "time", "type", "subject", "actor", "reason", "data", "sha256"}
)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
# Bytes after which json.dumps and RFC 8785 may spell a value differently: a number with a
# fraction or exponent, a long integer, a 4-byte UTF-8 character. Conservative: a match inside
# a string only costs the slower check.
_NEEDS_RFC8785 = re.compile(rb"[:\[,]-?(?:[0-9]+[.eE]|[0-9]{16})|[\xf0-\xf4]")


@dataclass(slots=True)  # made once per entry read: not frozen, which costs twice as much
class ParsedEntry:
    """An entry's fields, after its schema was checked."""

    seq: int
    type: str
    station: str
    time: str
    subject_kind: str
    subject_id: str
    actor: str
    reason: str
    sha256: str | None
    data: dict[str, Any]


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=reject_constant)  # NaN and Infinity are not JSON


def parse_entry(
    entry: bytes, station_id: str, *, canonical: bool
) -> tuple[ParsedEntry | None, str | None]:
    """An entry's fields and what is wrong with it (None: nothing). When ``canonical``, all its
    fields and its RFC 8785 form are checked, else only the fields the facts are folded from
    (the sampled check is what keeps a million entries under the time budget).

    A form that is not canonical still gives the fields; any other problem gives none.
    """
    try:
        doc = _DECODER.decode(entry.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, "is not JSON text"
    problem = schema_problem(doc, None, station_id) if canonical else fold_problem(doc)
    if problem is not None:
        return None, problem
    if canonical and not is_canonical(entry, doc):
        problem = "is not in RFC 8785 canonical form"
    parsed = ParsedEntry(
        seq=doc["seq"],
        type=doc["type"],
        station=doc.get("station"),
        time=doc.get("time"),
        subject_kind=doc["subject"]["kind"],
        subject_id=doc["subject"]["id"],
        actor=doc.get("actor"),
        reason=doc.get("reason"),
        sha256=doc.get("sha256"),
        data=doc["data"],
    )
    return parsed, problem


def fold_problem(doc: Any) -> str | None:
    """What keeps an entry from being folded into the facts, or None (run on every entry read)."""
    try:
        subject = doc["subject"]
        shaped = (
            type(doc["type"]) is str
            and type(doc["seq"]) is int
            and type(doc["data"]) is dict
            and type(subject["kind"]) is str
            and type(subject["id"]) is str
        )
    except (KeyError, TypeError):
        shaped = False
    if not shaped:
        return "lacks the type, seq, subject or data of a custody event"
    sha = doc.get("sha256")
    if sha is not None and not is_sha256_hex(sha):
        return "sha256 is not 64 lower-case hex digits"
    return None


def schema_problem(doc: Any, position: int | None, station_id: str) -> str | None:
    """What is wrong with an entry's fields, or None. ``position`` None: any event number
    (the audit's pass names entries out of place once, not every entry after them)."""
    if not isinstance(doc, dict):
        return "is not a JSON object"
    if doc.get("v") != 1:
        return f"has event format version {doc.get('v')!r}, not 1"
    seq = doc.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return f"event number {seq!r} is not a non-negative integer"
    if position is not None and seq != position:
        return f"holds event number {seq} at position {position}"
    if doc.get("station") != station_id:
        return f"is an event of station {doc.get('station')!r}, not {station_id!r}"
    for name in ("type", "actor", "reason", "time"):
        if not isinstance(doc.get(name), str):
            return f"has no text {name}"
    if not is_time(doc["time"]):
        return f"time {doc['time']!r} is not RFC 3339 UTC with microseconds"
    subject = doc.get("subject")
    if (
        not isinstance(subject, dict)
        or set(subject) != {"kind", "id"}
        or not all(isinstance(v, str) for v in subject.values())
    ):
        return "subject is not {kind, id}"
    if not isinstance(doc.get("data"), dict):
        return "data is not an object"
    sha = doc.get("sha256")
    if sha is not None and not is_sha256_hex(sha):
        return "sha256 is not 64 lower-case hex digits"
    extra = set(doc) - ENTRY_FIELDS
    if extra:
        return f"has unknown fields {sorted(extra)}"
    return None


def is_time(text: str) -> bool:
    """format_time's one spelling of an instant, and a real date (parse_time, without strptime)."""
    if _TIME.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def is_sha256_hex(value: Any) -> bool:
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


def is_canonical(entry: bytes, doc: Any) -> bool:
    """Whether ``entry`` is the RFC 8785 form of ``doc``: ``is_canonical_reference``, faster.

    json.dumps with sorted keys agrees with RFC 8785 except for numbers with a fraction or an
    exponent, integers beyond 2**53 and characters outside the Basic Multilingual Plane (key
    order); entries without those take the fast path, the others the reference.
    """
    if _NEEDS_RFC8785.search(entry) is None:
        fast = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        try:
            return fast.encode("utf-8") == entry
        except UnicodeEncodeError:
            return False
    return is_canonical_reference(entry, doc)


def is_canonical_reference(entry: bytes, doc: Any) -> bool:
    """Whether ``entry`` is the RFC 8785 form of ``doc``, by the rfc8785 library."""
    try:
        return canonical_json(doc) == entry
    except InputError:
        return False


def read_seq(entry: bytes) -> int | None:
    """The entry's top-level event number: ``seq_from_json``, without parsing canonical JSON.

    In a canonical entry of the schema the top-level seq is the last `,"seq":` (one inside a
    string is escaped, and the fields after it hold none), so it is read from there; an entry
    where that is not followed by digits and a comma is parsed.
    """
    p = entry.rfind(SEQ_KEY)
    seq = seq_after(entry, p)
    return seq if seq is not None else seq_from_json(entry)


def seq_after(entry: bytes, p: int) -> int | None:
    """The decimal digits after the `,"seq":` at ``p`` (-1: none), up to the next comma."""
    if p < 0:
        return None
    end = entry.find(b",", p + 7)
    digits = entry[p + 7 : end if end >= 0 else len(entry)]
    return int(digits) if digits.isdigit() else None


def seq_from_json(entry: bytes) -> int | None:
    """The entry's top-level event number, by parsing it; None if it has none."""
    try:
        doc = json.loads(entry, parse_constant=reject_constant)
    except (ValueError, RecursionError):
        return None
    seq = doc.get("seq") if isinstance(doc, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None
