"""RFC 8785 (JSON Canonicalization Scheme) bytes for anything the custody log hashes or signs."""

from __future__ import annotations

from typing import Any

import rfc8785

from evidence_agent.errors import InputError


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 serialisation of ``value`` (dicts, lists, str, int, float, bool, None).

    Raises InputError for values JSON cannot carry exactly: NaN and infinities, integers
    beyond +/-(2**53 - 1), non-string object keys, lone surrogates and non-JSON types.
    """
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
