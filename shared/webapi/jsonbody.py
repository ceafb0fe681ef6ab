"""Whether a value can be sent as a JSON body: UTF-8 text, no NaN or Infinity, string keys.

A ``$batch`` is one JSON document, so a lone surrogate or a NaN in one operation's body would
make the whole batch fail to encode, failing every operation in it. Checking each body first
lets only the bad operation fail, with a message naming the place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from shared.errors import UnsafeRequestError

__all__ = ["check_json_body"]

_MAX_DEPTH = 64


def _unencodable(value: Any, where: str, depth: int = 0) -> str | None:
    """Where and why ``value`` cannot be sent as JSON (UTF-8, no NaN/Infinity), or None."""
    if depth > _MAX_DEPTH:
        return f"{where} is nested more than {_MAX_DEPTH} levels deep"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where} contains a lone surrogate (not valid UTF-8)"
        return None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        # Python refuses to print integers of more than 4,300 digits (int_max_str_digits)
        return None if value.bit_length() <= 14_000 else f"{where} is an integer too long for JSON"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value!r} (not valid JSON)"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has a non-string key {key!r}"
            problem = _unencodable(key, f"{where} key {key[:40]!r}", depth + 1) or _unencodable(
                item, f"{where}[{key[:40]!r}]", depth + 1
            )
            if problem:
                return problem
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problem = _unencodable(item, f"{where}[{i}]", depth + 1)
            if problem:
                return problem
        return None
    return f"{where} is a {type(value).__name__}, which JSON cannot represent"


def check_json_body(body: Any) -> None:
    """UnsafeRequestError naming the place when ``body`` cannot be encoded as JSON.

    The batch is one JSON document: a lone surrogate or NaN in one operation's body would
    make the whole ``$batch`` fail to encode, failing every operation in it.
    """
    problem = _unencodable(body, "body")
    if problem is not None:
        raise UnsafeRequestError(problem)
