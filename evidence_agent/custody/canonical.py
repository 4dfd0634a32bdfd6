"""RFC 8785 (JSON Canonicalization Scheme) bytes for anything the custody log hashes or signs."""

from __future__ import annotations

from json.encoder import encode_basestring
from typing import Any

import rfc8785

from evidence_agent.errors import InputError

_INT_MAX = 2**53 - 1  # RFC 8785 section 3.2.2.3: integers JSON's doubles carry exactly


class _Unsure(Exception):
    """Raised by the fast encoder for a value it leaves to the reference implementation."""


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 serialisation of ``value`` (dicts, lists, str, int, float, bool, None).

    Raises InputError for values JSON cannot carry exactly: NaN and infinities, integers
    beyond +/-(2**53 - 1), non-string object keys, lone surrogates and non-JSON types.
    """
    # Every custody append encodes its entry inside a write transaction, so the common shapes
    # (exact str, int, bool, None, list, tuple and dict) take a fast path; anything else, and
    # every error, goes to the reference implementation, whose bytes and errors are the
    # definition. The fast path returns only bytes the reference would return
    # (tests/unit/custody/test_custody_canonical.py compares the two).
    try:
        parts: list[str] = []
        _encode(value, parts)
        return "".join(parts).encode("utf-8")
    except (_Unsure, rfc8785.CanonicalizationError, RecursionError, UnicodeEncodeError):
        pass
    return _reference_canonical_json(value)


def _reference_canonical_json(value: Any) -> bytes:
    """The rfc8785 package's serialisation of ``value``: slower, the yardstick of the fast path."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as e:
        raise InputError(
            f"value cannot be canonicalised as RFC 8785 JSON: {e}",
            remedy="use only str keys, finite floats, integers within +/-(2**53 - 1), "
            "and str, int, float, bool, None, list or dict values",
        ) from e
    except RecursionError as e:
        raise InputError("value is nested too deeply to canonicalise as JSON") from e


def _encode(value: Any, out: list[str]) -> None:
    # Exact type checks: subclasses (enums, OrderedDict, ...) are the reference's to judge.
    t = type(value)
    if t is str:
        # The C escaper of json with ensure_ascii=False escapes exactly what RFC 8785 section
        # 3.2.2.2 does, with lowercase \u00xx; lone surrogates fail at the final UTF-8 encode.
        out.append(encode_basestring(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif t is int:
        if not -_INT_MAX <= value <= _INT_MAX:
            raise _Unsure
        out.append(str(value))
    elif t is dict:
        _encode_object(value, out)
    elif t is list or t is tuple:
        if not value:
            out.append("[]")
            return
        sep = "["
        for item in value:
            out.append(sep)
            _encode(item, out)
            sep = ","
        out.append("]")
    elif t is float:
        # ECMAScript number formatting is subtle and floats are rare in events: the reference
        # formats each one (it raises for NaN and infinities).
        out.append(rfc8785.dumps(value).decode("ascii"))
    else:
        raise _Unsure


def _encode_object(obj: dict[Any, Any], out: list[str]) -> None:
    if not obj:
        out.append("{}")
        return
    ascii_keys = True
    for key in obj:
        if type(key) is not str:
            raise _Unsure
        if ascii_keys and not key.isascii():
            ascii_keys = False
    # RFC 8785 section 3.2.3 sorts by UTF-16 code units; for ASCII keys that is the order
    # of the strings themselves (keys are unique, so values are never compared).
    items = sorted(obj.items()) if ascii_keys else sorted(obj.items(), key=_utf16_key)
    sep = "{"
    for key, item in items:
        out.append(sep)
        out.append(encode_basestring(key))
        out.append(":")
        _encode(item, out)
        sep = ","
    out.append("}")


def _utf16_key(item: tuple[str, Any]) -> bytes:
    return item[0].encode("utf-16be")
