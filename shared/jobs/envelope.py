"""Queue messages: a versioned JSON envelope, validated with clear errors.

    {"version": 1, "job": "provision", "tenant": "<tenant id>",
     "correlationId": "<caller's id>", "dryRun": false, "payload": {...}}

A message that can never succeed raises :class:`InvalidMessageError` naming what is wrong;
the queue handler logs it and completes the message instead of retrying it five times.
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

__all__ = ["MAX_MESSAGE_BYTES", "VERSION", "JobMessage", "parse_message"]

VERSION = 1
# A storage queue message is at most 64 KiB; base64 (the host's default encoding) grows the
# text by a third, so the JSON itself can never exceed 48 KiB. Ours stop at 40 KiB, leaving
# room for a producer's own envelope; a larger job is split into several messages.
MAX_MESSAGE_BYTES = 40 * 1024
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


def parse_message(
    body: bytes | str, *, jobs: Collection[str], allowed_tenants: Collection[str]
) -> JobMessage:
    """Validate one message; raise InvalidMessageError saying what is wrong."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessageError(
            f"message is {len(raw)} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidMessageError("message is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidMessageError(
            f"message is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, Mapping):
        raise InvalidMessageError(f"message must be a JSON object, not {type(data).__name__}")
    version = data.get("version")
    if version != VERSION or isinstance(version, bool):
        raise InvalidMessageError(
            f"message version {version!r} is not supported: expected {VERSION}"
        )
    job = data.get("job")
    if not isinstance(job, str) or job not in jobs:
        raise InvalidMessageError(f"unknown job {job!r}: expected one of {', '.join(sorted(jobs))}")
    tenant_raw = data.get("tenant")
    if not isinstance(tenant_raw, str):
        raise InvalidMessageError("'tenant' must be a tenant id or domain string")
    try:
        tenant = parse_tenant("tenant", tenant_raw)
    except SettingError:
        raise InvalidMessageError(f"'tenant' {tenant_raw!r} is not a tenant id") from None
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
        raise InvalidMessageError(f"unknown message fields: {', '.join(sorted(unknown))}")
    return JobMessage(job, tenant, correlation, payload, dry_run)
