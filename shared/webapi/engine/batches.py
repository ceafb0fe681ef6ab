"""Building ``$batch`` payloads and parsing their answers, pure.

Every batch the engine sends is **fully parallel**: no item carries ``dependsOn``. Graph
refuses a batch that mixes chains and independent items as a whole (400 "Batch should be
either fully sequential or fully parallel.":
https://learn.microsoft.com/graph/json-batching), so dependencies are honoured by the
engine itself (an operation is sent only after its dependencies succeeded).

Items use relative URLs, JSON bodies with ``Content-Type: application/json`` (a write with
a body and no Content-Type fails the whole batch), other bodies base64 with their own
Content-Type. At most 20 items, ids unique.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from shared.webapi.response import ApiResponse

__all__ = ["MAX_BATCH_SIZE", "ItemAnswer", "batch_item", "batch_payload", "parse_batch"]

MAX_BATCH_SIZE = 20

ItemAnswer = tuple[int, httpx.Headers, Any]


def _is_json_type(content_type: str) -> bool:
    return "json" in content_type.split(";", 1)[0].lower()


def batch_item(
    item_id: str,
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One entry of ``requests`` in a ``$batch`` payload (never with ``dependsOn``)."""
    item: dict[str, Any] = {"id": item_id, "method": method, "url": url}
    sent = dict(headers or {})
    content_key = next((k for k in sent if k.lower() == "content-type"), None)
    if body is not None:
        content_type = sent[content_key] if content_key else "application/json"
        if isinstance(body, bytes | bytearray):
            item["body"] = base64.b64encode(bytes(body)).decode("ascii")
        elif not _is_json_type(content_type):
            raw = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode()
            item["body"] = base64.b64encode(raw).decode("ascii")
        else:
            item["body"] = body
        if content_key is None:
            sent["Content-Type"] = "application/json"
    if sent:
        item["headers"] = sent
    return item


def batch_payload(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``$batch`` request body; ValueError for duplicate ids, a ``dependsOn`` or more
    than 20 items."""
    ids = [str(i["id"]) for i in items]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate ids in one batch")
    if len(items) > MAX_BATCH_SIZE:
        raise ValueError(f"{len(items)} requests exceed the batch limit of {MAX_BATCH_SIZE}")
    if any("dependsOn" in i for i in items):
        raise ValueError("batches are sent fully parallel: no item may carry dependsOn")
    return {"requests": [dict(i) for i in items]}


def parse_batch(
    answer: ApiResponse, expected: Sequence[str]
) -> tuple[dict[str, ItemAnswer], list[str]] | str:
    """The item answers of a 200 ``$batch`` response keyed by item id, with the problems
    found in it; or a string saying why the whole answer is unusable."""
    if answer.json_problem:
        return answer.json_problem
    if "json" not in answer.content_type.lower():
        return f"content type {answer.content_type or 'missing'!r} is not JSON"
    body = answer.body
    if not isinstance(body, dict) or not isinstance(body.get("responses"), list):
        return "no 'responses' array"
    wanted = set(expected)
    out: dict[str, ItemAnswer] = {}
    problems: list[str] = []
    for entry in body["responses"]:
        if not isinstance(entry, dict):
            problems.append("an entry is not an object")
            continue
        raw_id = entry.get("id")
        item_id = str(raw_id) if isinstance(raw_id, str | int) else None
        if item_id is None or item_id not in wanted:
            problems.append(f"unknown id {raw_id!r}")
            continue
        if item_id in out:
            problems.append(f"duplicate id {item_id!r}")
            continue
        status = entry.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status < 600:
            problems.append(f"entry {item_id!r} has no valid status")
            continue
        raw_headers = entry.get("headers")
        headers = httpx.Headers(
            {str(k): str(v) for k, v in raw_headers.items()}
            if isinstance(raw_headers, dict)
            else {}
        )
        out[item_id] = (status, headers, entry.get("body"))
    missing = len(wanted) - len(out)
    if missing:
        problems.append(f"{missing} request(s) without a response")
    return out, problems
