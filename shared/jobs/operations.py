"""``operations``: raw API operations from the message, inside an allow-list.

Payload: ``{"operations": [{"id", "method", "url", "body"?, "headers"?, "dependsOn"?}]}``.
Only methods in DAEMON_OPERATIONS_ALLOWED_METHODS and relative URLs under one of
DAEMON_OPERATIONS_ALLOWED_PATHS are accepted: the queue must not become a way to do whatever
the app's permissions allow. An operation outside the list fails alone, before any request.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import InvalidMessageError
from shared.jobs.base import JobContext, Plan
from shared.webapi import Operation

__all__ = ["OperationsJob", "check_allowed"]

_MAX_OPERATIONS = 500


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
        settings = ctx.instance.settings
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
            op_id = str(item.get("id", ""))
            if problem is None and op_id in seen:
                problem = f"id {op_id!r} appears twice"
            if problem is not None:
                plan.problems.append(f"{where} ({op_id or 'no id'}): {problem}")
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
                    headers={str(k): str(v) for k, v in headers.items()},
                    depends_on=tuple(str(d) for d in item.get("dependsOn") or ()),
                )
            )
            plan.lines.append(f"{str(item['method']).upper()} {item['url']}")
        known = {op.id for op in plan.operations}
        for op in list(plan.operations):
            missing = [d for d in op.depends_on if d not in known]
            if missing:
                plan.operations.remove(op)
                plan.problems.append(f"operation {op.id}: dependsOn unknown or refused {missing}")
        return plan

    @staticmethod
    def _check(
        item: Mapping[str, Any], methods: tuple[str, ...], prefixes: tuple[str, ...]
    ) -> str | None:
        op_id, method, url = item.get("id"), item.get("method"), item.get("url")
        if not isinstance(op_id, str) or not op_id or len(op_id) > 100:
            return "'id' must be a non-empty string"
        if not isinstance(method, str) or not isinstance(url, str) or not url:
            return "'method' and 'url' must be strings"
        headers = item.get("headers", {})
        if not isinstance(headers, Mapping):
            return "'headers' must be an object"
        if any(str(k).lower() == "authorization" for k in headers):
            return "an Authorization header is not allowed"
        depends = item.get("dependsOn", [])
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            return "'dependsOn' must be a list of ids"
        return check_allowed(method, url, methods, prefixes)
