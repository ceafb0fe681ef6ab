"""Shared hypothesis settings and strategies for the fuzz tests.

The fast subset runs in ``make test``: few examples, derandomized (the same examples on
every run, so a failure reproduces), no deadline (the machines are shared and noisy), no
example database written into the work tree.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "FAST",
    "dumps_lenient",
    "json_values",
    "nested",
    "text_values",
]

FAST = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text that exercises what JSON and UTF-8 make hard: lone surrogates, control characters,
# NUL, non-BMP characters, the empty string.
text_values = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec=None, categories=("Cs", "Cc")), max_size=6),
    st.sampled_from(["", "\ud800", "a\udfffb", "\x00", "\u202e", "😀" * 3, " ", "\n"]),
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    text_values,
)

json_values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(text_values, children, max_size=4),
    ),
    max_leaves=12,
)


def nested(depth: int, opener: str = "[") -> str:
    """A JSON text nested ``depth`` deep (arrays or objects)."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def dumps_lenient(value: Any) -> str:
    """json.dumps as a careless producer would: NaN and Infinity allowed, surrogates kept."""
    return json.dumps(value, allow_nan=True)
