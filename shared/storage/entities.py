"""Turning our values into Table entity properties and back: keys, long text, typed values.

The limits come from the Table service data model
(https://learn.microsoft.com/en-us/rest/api/storageservices/understanding-the-table-service-data-model):
PartitionKey and RowKey are at most 1 KiB and cannot contain ``/ \\ # ?`` or control
characters; a string property holds at most 64 KiB (32 K UTF-16 code units); an entity holds
at most 252 of our properties and 1 MiB in all.

- :func:`sanitize_key` escapes what a key cannot hold, reversibly (:func:`desanitize_key`).
- :func:`put_text` / :func:`get_text` split a long string (a delta link) over several
  properties and join it again; a value too big for one entity is refused with
  :class:`~shared.errors.StateValueTooLargeError`.
- :func:`int64`, :func:`int_value` and :func:`utc` write and read numbers and times the way
  the SDK returns them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from azure.data.tables import EdmType

from shared.errors import StateStoreError, StateValueTooLargeError

__all__ = [
    "MAX_ERROR_CHARS",
    "MAX_PROPERTY_UNITS",
    "desanitize_key",
    "get_text",
    "int64",
    "int_value",
    "now",
    "put_text",
    "sanitize_key",
    "utc",
]

_MAX_KEY_CHARS = 400  # Table keys are at most 1 KiB (512 UTF-16 units); keep a margin
_KEY_ESCAPE = "~"
_UNSAFE_KEY = re.compile(r"[/\\#?~%'\x00-\x1f\x7f-\x9f]")

MAX_PROPERTY_UNITS = 32_000  # a string property holds at most 64 KiB = 32,768 UTF-16 units
_MAX_CHUNKS = 12  # 12 x 64 KiB stays under the 1 MiB entity limit with room for the rest
MAX_ERROR_CHARS = 8_000  # an error text or note kept with a record is cut to this length


# -- keys ----------------------------------------------------------------------------------


def sanitize_key(value: str) -> str:
    """A PartitionKey/RowKey for ``value``: ``/ \\ # ?``, ``~ % '`` and control characters
    become ``~XX`` (UTF-8 bytes in hex), so distinct values stay distinct. A result longer
    than 400 characters is shortened to a prefix plus a SHA-256 of the whole value."""
    safe = _UNSAFE_KEY.sub(
        lambda m: "".join(f"{_KEY_ESCAPE}{b:02X}" for b in m.group().encode("utf-8")), value
    )
    if len(safe) > _MAX_KEY_CHARS:
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
        safe = f"{safe[:300]}{_KEY_ESCAPE}h{digest}"
    return safe


def desanitize_key(key: str) -> str:
    """The value :func:`sanitize_key` was given (not for hashed, shortened keys)."""
    return re.sub(
        r"(?:~[0-9A-F]{2})+",
        lambda m: bytes.fromhex(m.group().replace(_KEY_ESCAPE, "")).decode("utf-8"),
        key,
    )


# -- long text -------------------------------------------------------------------------------


def put_text(entity: dict[str, Any], name: str, value: str | None) -> None:
    """Store ``value`` as property ``name``; when longer than one property holds, as
    ``name``, ``name1``, ``name2``... with ``nameParts`` the count. None stores nothing."""
    if value is None:
        return
    chunks = _split(name, value)
    entity[name] = chunks[0] if chunks else ""
    if len(chunks) > 1:
        entity[f"{name}Parts"] = len(chunks)
        for index, chunk in enumerate(chunks[1:], start=1):
            entity[f"{name}{index}"] = chunk


def get_text(entity: Mapping[str, Any], name: str) -> str | None:
    """The text :func:`put_text` stored as ``name`` (None when there is none)."""
    first = entity.get(name)
    if first is None:
        return None
    parts = int_value(entity.get(f"{name}Parts")) or 1
    pieces = [str(first)]
    for index in range(1, parts):
        piece = entity.get(f"{name}{index}")
        if piece is None:
            raise StateStoreError(f"stored {name} is incomplete: part {index} of {parts} missing")
        pieces.append(str(piece))
    return "".join(pieces)


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _split(name: str, value: str, limit: int = MAX_PROPERTY_UNITS) -> list[str]:
    chunks: list[str] = []
    start = 0
    while start < len(value):
        end = min(len(value), start + limit)
        while _utf16_units(value[start:end]) > limit:  # astral characters count twice
            end -= max(1, (end - start) // 16)
        chunks.append(value[start:end])
        start = end
    if len(chunks) > _MAX_CHUNKS:
        raise StateValueTooLargeError(
            f"{name} is {len(value)} characters: more than one table entity holds "
            f"({_MAX_CHUNKS} x {limit} characters); store it elsewhere (a blob) and keep "
            "a reference"
        )
    return chunks


# -- typed values ------------------------------------------------------------------------------


def int_value(value: Any) -> int:
    """A stored integer (0 when absent)."""
    if value is None:
        return 0
    raw = getattr(value, "value", value)  # Int64 comes back as an EntityProperty
    return int(raw)


def int64(value: int) -> tuple[int, EdmType]:
    """``value`` typed Edm.Int64 (the SDK would store a plain int as Edm.Int32)."""
    return (int(value), EdmType.INT64)


def utc(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise StateStoreError(f"stored time {value!r} is not a datetime")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def now() -> datetime:
    return datetime.now(timezone.utc)
