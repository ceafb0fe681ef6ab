"""Queue messages: a versioned JSON envelope, validated with clear errors.

    {"version": 1, "job": "provision", "tenant": "<tenant id>",
     "correlationId": "<caller's id>", "dryRun": false, "payload": {...}}

A message that can never succeed raises :class:`InvalidMessageError` naming what is wrong;
the queue handler logs it and completes the message instead of retrying it five times.
Parsing is bounded (size, nesting depth, number length, no duplicate keys), so no input
makes it raise anything else. Values inside the payload (lone surrogates, NaN) are checked
by each job, per person or operation, so one bad value fails only its own item.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.errors import InvalidMessageError, SettingError
from shared.settings import parse_tenant

__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MAX_NUMBER_CHARS",
    "VERSION",
    "JobMessage",
    "parse_message",
]

VERSION = 1
# A storage queue message is at most 64 KiB; base64 (the host's default encoding) grows the
# text by a third, so the JSON itself can never exceed 48 KiB. Ours stop at 40 KiB, leaving
# room for a producer's own envelope; a larger job is split into several messages.
MAX_MESSAGE_BYTES = 40 * 1024
# Bounds that make parsing total: a job message is at most 5 levels deep (envelope, payload,
# list, person, group list) and an operations body a few more; no field needs a number
# longer than a 64-bit integer or a float's repr. Past these the message is invalid at once
# (Python's int() refuses more than 4,300 digits with ValueError; its json parser recurses).
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 40
_CORRELATION_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class JobMessage:
    job: str
    tenant: str
    correlation_id: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    version: int = VERSION

    @classmethod
    def new(
        cls,
        job: str,
        tenant: str,
        payload: Mapping[str, Any],
        *,
        correlation_id: str | None = None,
        dry_run: bool = False,
    ) -> JobMessage:
        return cls(job, tenant, correlation_id or uuid.uuid4().hex, payload, dry_run)

    def to_json(self) -> str:
        text = json.dumps(
            {
                "version": self.version,
                "job": self.job,
                "tenant": self.tenant,
                "correlationId": self.correlation_id,
                "dryRun": self.dry_run,
                "payload": self.payload,
            },
            separators=(",", ":"),
        )
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            raise ValueError(
                f"job message is {len(text.encode())} bytes, over {MAX_MESSAGE_BYTES}: split "
                "the payload into several messages"
            )
        return text


class _Refused(Exception):
    """Raised inside the JSON parser's hooks: the text breaks one of our bounds."""


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before the recursive parser sees it (Python's
    json raises RecursionError about 1,000 levels down)."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _Refused(f"message nests deeper than {MAX_DEPTH} levels")
        elif ch in "]}":
            depth -= 1


def _number(text: str) -> str:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(
            f"a number of {len(text)} characters, more than {MAX_NUMBER_CHARS} ({text[:12]}…)"
        )
    return text


def _int(text: str) -> int:
    return int(_number(text))


def _float(text: str) -> float:
    return float(_number(text))


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"key {_show(key)} appears twice in one object")
        out[key] = value
    return out


def _show(value: Any, limit: int = 48) -> str:
    """A short, log-safe rendering of a value from the message (repr escapes control
    characters and lone surrogates; long values are cut)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _load(body: bytes | str) -> Any:
    """The JSON value of ``body`` within our bounds; InvalidMessageError otherwise."""
    if isinstance(body, str):
        if len(body) > MAX_MESSAGE_BYTES:  # each character is at least one byte
            raise InvalidMessageError(
                f"message is over the {MAX_MESSAGE_BYTES}-byte limit ({len(body)} characters)"
            )
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidMessageError("message text contains a lone surrogate") from exc
    elif isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
    else:
        raise InvalidMessageError(f"message body must be bytes or text, not {type(body).__name__}")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessageError(
            f"message is {len(raw)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessageError("message is not UTF-8 text") from exc
    try:
        _check_depth(text)
        return json.loads(text, parse_int=_int, parse_float=_float, object_pairs_hook=_object)
    except _Refused as exc:
        raise InvalidMessageError(f"message refused: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidMessageError(
            f"message is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except (ValueError, RecursionError, MemoryError) as exc:  # bounds above make these rare
        raise InvalidMessageError(f"message is not acceptable JSON: {type(exc).__name__}") from exc


def parse_message(
    body: bytes | str, *, jobs: Collection[str], allowed_tenants: Collection[str]
) -> JobMessage:
    """Validate one message; raise InvalidMessageError saying what is wrong — and nothing
    else, whatever the bytes: size, nesting depth and number length are bounded before or
    while parsing, so the parser cannot raise RecursionError or ValueError past its limits."""
    data = _load(body)
    if not isinstance(data, Mapping):
        raise InvalidMessageError(f"message must be a JSON object, not {_kind(data)}")
    version = data.get("version")
    if type(version) is not int or version != VERSION:
        raise InvalidMessageError(
            f"message version {_show(version)} is not supported: expected {VERSION}"
        )
    job = data.get("job")
    if not isinstance(job, str) or job not in jobs:
        raise InvalidMessageError(
            f"unknown job {_show(job)}: expected one of {', '.join(sorted(jobs))}"
        )
    tenant_raw = data.get("tenant")
    if not isinstance(tenant_raw, str):
        raise InvalidMessageError("'tenant' must be a tenant id or domain string")
    try:
        tenant = parse_tenant("tenant", tenant_raw)
    except SettingError as exc:
        raise InvalidMessageError(f"'tenant' {_show(tenant_raw)} is not a tenant id") from exc
    if tenant not in {t.lower() for t in allowed_tenants}:
        raise InvalidMessageError(
            f"tenant {tenant} is not in DAEMON_ALLOWED_TENANTS: a queue message cannot pick "
            "a tenant the app is not configured for"
        )
    correlation = data.get("correlationId")
    if not isinstance(correlation, str) or not _CORRELATION_RE.match(correlation):
        raise InvalidMessageError(
            "'correlationId' must be 1-128 letters, digits, '.', '_', ':' or '-'"
        )
    dry_run = data.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidMessageError("'dryRun' must be true or false")
    payload = data.get("payload", {})
    if not isinstance(payload, Mapping):
        raise InvalidMessageError("'payload' must be a JSON object")
    unknown = set(data) - {"version", "job", "tenant", "correlationId", "dryRun", "payload"}
    if unknown:
        shown = sorted(_show(str(k)) for k in unknown)
        raise InvalidMessageError(f"unknown message fields: {', '.join(shown[:5])}")
    return JobMessage(job, tenant, correlation, payload, dry_run)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
