"""``operations``: raw API operations from the message, inside an allow-list.

Payload: ``{"operations": [{"id", "method", "url", "body"?, "headers"?, "dependsOn"?}]}``.
Only methods in DAEMON_OPERATIONS_ALLOWED_METHODS and relative URLs under one of
DAEMON_OPERATIONS_ALLOWED_PATHS are accepted: the queue must not become a way to do whatever
the app's permissions allow. An operation outside the list, with unknown fields, or whose
id, URL, headers or body cannot be sent as strict JSON (lone surrogates, NaN, control
characters) fails alone, before any request.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import InvalidMessageError
from shared.jobs.base import JobContext, Plan
from shared.webapi import Operation

__all__ = ["OperationsJob", "check_allowed"]

_MAX_OPERATIONS = 500
_FIELDS = frozenset({"id", "method", "url", "body", "headers", "dependsOn"})


def check_allowed(
    method: str, url: str, methods: tuple[str, ...], prefixes: tuple[str, ...]
) -> str | None:
    """Why (method, url) is not allowed, or None if it is."""
    if method.upper() not in methods:
        return f"method {method!r} is not in DAEMON_OPERATIONS_ALLOWED_METHODS"
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("//"):
        return "only relative URLs are allowed"
    path = unquote(parts.path)
    if not path.startswith("/"):
        path = "/" + path
    normalized = posixpath.normpath(path) + ("/" if path.endswith("/") else "")
    if ".." in path.split("/") or normalized != path:
        return f"path {path!r} is not in normal form"
    if not any(path.lower().startswith(prefix.lower()) for prefix in prefixes):
        return f"path {path!r} is not under DAEMON_OPERATIONS_ALLOWED_PATHS"
    return None


class OperationsJob:
    name = "operations"

    async def plan(self, ctx: JobContext) -> Plan:
        items = ctx.payload.get("operations")
        if not isinstance(items, list) or not items:
            raise InvalidMessageError("payload 'operations' must be a non-empty list")
        if len(items) > _MAX_OPERATIONS:
            raise InvalidMessageError(f"more than {_MAX_OPERATIONS} operations in one message")
        settings = ctx.settings
        plan = Plan()
        seen: set[str] = set()
        for index, item in enumerate(items):
            where = f"operation #{index + 1}"
            if not isinstance(item, Mapping):
                plan.problems.append(f"{where}: must be an object")
                continue
            problem = self._check(
                item, settings.operations_allowed_methods, settings.operations_allowed_paths
            )
            raw_id = item.get("id")
            op_id = raw_id if isinstance(raw_id, str) else ""
            if problem is None and op_id in seen:
                problem = f"id {op_id!r} appears twice"
            if problem is not None:
                plan.problems.append(f"{where} ({_show(op_id) if op_id else 'no id'}): {problem}")
                continue
            seen.add(op_id)
            headers = item.get("headers") or {}
            body: Any = item.get("body")
            plan.operations.append(
                Operation(
                    op_id,
                    str(item["method"]).upper(),
                    str(item["url"]),
                    body,
                    headers=dict(headers),
                    depends_on=tuple(str(d) for d in item.get("dependsOn") or ()),
                )
            )
            plan.lines.append(f"{str(item['method']).upper()} {item['url']}")
        # an operation depending on a refused one is refused too, transitively
        changed = True
        while changed:
            changed = False
            known = {op.id for op in plan.operations}
            for index, op in enumerate(plan.operations):
                missing = [d for d in op.depends_on if d not in known]
                if missing:
                    del plan.operations[index]
                    del plan.lines[index]
                    plan.problems.append(
                        f"operation {_show(op.id)}: dependsOn unknown or refused "
                        f"{', '.join(_show(d) for d in missing)}"
                    )
                    changed = True
                    break
        return plan

    @staticmethod
    def _check(
        item: Mapping[str, Any], methods: tuple[str, ...], prefixes: tuple[str, ...]
    ) -> str | None:
        op_id, method, url = item.get("id"), item.get("method"), item.get("url")
        if not isinstance(op_id, str) or not op_id or len(op_id) > 100:
            return "'id' must be a non-empty string of at most 100 characters"
        unknown = sorted(str(k) for k in item if k not in _FIELDS)
        if unknown:
            return f"unknown field(s) {', '.join(_show(k) for k in unknown[:5])}"
        if not isinstance(method, str) or not isinstance(url, str) or not url:
            return "'method' and 'url' must be strings"
        headers = item.get("headers", {})
        if headers is None:
            headers = {}
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            return "'headers' must be an object of strings"
        if any(k.lower() == "authorization" for k in headers):
            return "an Authorization header is not allowed"
        depends = item.get("dependsOn", [])
        if depends is None:
            depends = []
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            return "'dependsOn' must be a list of ids"
        for name, text in [("id", op_id), ("method", method), ("url", url), *headers.items()]:
            problem = _text_problem(text)
            if problem:
                return f"{_show(name)} {problem}"
        problem = _body_problem(item.get("body"))
        if problem:
            return problem
        return check_allowed(method, url, methods, prefixes)


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text_problem(text: str) -> str | None:
    """Lone surrogates cannot be encoded; control characters have no place in an id, a
    method, a URL or a header."""
    for ch in text:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            return f"contains a lone surrogate (U+{ord(ch):04X})"
        if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            return f"contains a control character (U+{ord(ch):04X})"
    return None


def _body_problem(body: Any) -> str | None:
    """Why ``body`` cannot be sent as strict JSON (no NaN/Infinity, valid UTF-8), or None.
    Checked here so one bad body fails its own operation, not the whole $batch."""
    try:
        json.dumps(body, allow_nan=False).encode("utf-8")
        json.dumps(body, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except ValueError as exc:  # NaN/Infinity, or a lone surrogate (UnicodeEncodeError)
        reason = "a lone surrogate" if isinstance(exc, UnicodeEncodeError) else "NaN or Infinity"
        return f"'body' contains {reason}: it is not valid JSON"
    except (TypeError, RecursionError):
        return "'body' is not JSON"
    return None
