"""Packing operations into JSON batches, pure.

- A dependency component (operations linked by ``depends_on``, in either direction) stays in
  one batch, its operations in dependency order (input order where free). Components larger
  than the batch limit cannot be batched: the engine runs them in direct mode.
- Components are placed first-fit, in input order, into batches of at most 20 requests.
- Request items use ``dependsOn`` (Graph's name), relative URLs, JSON bodies with
  ``Content-Type: application/json``, other bodies base64 with their own Content-Type.
"""

from __future__ import annotations

import base64
import heapq
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "MAX_BATCH_SIZE",
    "batch_item",
    "batch_payload",
    "components",
    "pack",
]

MAX_BATCH_SIZE = 20

T = TypeVar("T")


def components(ids: Sequence[str], depends_on: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Connected components of the dependency graph over ``ids`` (edges to ids outside are
    ignored), each in topological order with input order breaking ties; components are
    ordered by their first member's position."""
    position = {op_id: i for i, op_id in enumerate(ids)}
    parent = {op_id: op_id for op_id in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for op_id in ids:
        for dep in depends_on.get(op_id, ()):
            if dep in position:
                ra, rb = find(op_id), find(dep)
                if ra != rb:
                    if position[ra] < position[rb]:
                        parent[rb] = ra
                    else:
                        parent[ra] = rb
    groups: dict[str, list[str]] = {}
    for op_id in ids:
        groups.setdefault(find(op_id), []).append(op_id)
    ordered = sorted(groups.values(), key=lambda g: position[g[0]])
    return [_topological(g, depends_on, position) for g in ordered]


def _topological(
    group: list[str], depends_on: Mapping[str, Sequence[str]], position: Mapping[str, int]
) -> list[str]:
    members = set(group)
    waiting = {g: {d for d in depends_on.get(g, ()) if d in members} for g in group}
    dependants: dict[str, list[str]] = {g: [] for g in group}
    for g, deps in waiting.items():
        for d in deps:
            dependants[d].append(g)
    heap = [(position[g], g) for g in group if not waiting[g]]
    heapq.heapify(heap)
    out: list[str] = []
    while heap:
        _, cur = heapq.heappop(heap)
        out.append(cur)
        for nxt in dependants[cur]:
            waiting[nxt].discard(cur)
            if not waiting[nxt]:
                heapq.heappush(heap, (position[nxt], nxt))
    if len(out) != len(group):
        raise ValueError("dependency cycle in component: " + ", ".join(sorted(group)))
    return out


def pack(
    groups: Sequence[Sequence[T]],
    limit: int = MAX_BATCH_SIZE,
    *,
    alone: Callable[[Sequence[T]], bool] | None = None,
    max_batches: int | None = None,
) -> list[list[T]]:
    """Place whole groups first-fit into batches of at most ``limit`` items.

    Groups for which ``alone(group)`` is true get a batch to themselves. With
    ``max_batches``, groups that fit nowhere are left out (the caller packs them later).
    Raises ValueError for a group larger than ``limit``.
    """
    if limit < 1:
        raise ValueError("batch limit must be at least 1")
    batches: list[list[T]] = []
    closed: list[bool] = []
    for group in groups:
        if not group:
            continue
        if len(group) > limit:
            raise ValueError(f"a dependency group of {len(group)} exceeds the batch limit {limit}")
        solo = alone is not None and alone(group)
        target = None
        if not solo:
            for i, batch in enumerate(batches):
                if not closed[i] and len(batch) + len(group) <= limit:
                    target = i
                    break
        if target is None:
            if max_batches is not None and len(batches) >= max_batches:
                if all(closed[i] or len(b) >= limit for i, b in enumerate(batches)):
                    break
                continue
            batches.append([])
            closed.append(solo)
            target = len(batches) - 1
        batches[target].extend(group)
    return batches


def _is_json_type(content_type: str) -> bool:
    return "json" in content_type.split(";", 1)[0].lower()


def batch_item(
    item_id: str,
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    depends_on: Sequence[str] = (),
) -> dict[str, Any]:
    """One entry of ``requests`` in a ``$batch`` payload."""
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
    if depends_on:
        item["dependsOn"] = list(depends_on)
    return item


def batch_payload(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``$batch`` request body; ValueError for duplicate ids or more than 20 items."""
    ids = [str(i["id"]) for i in items]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate ids in one batch")
    if len(items) > MAX_BATCH_SIZE:
        raise ValueError(f"{len(items)} requests exceed the batch limit of {MAX_BATCH_SIZE}")
    return {"requests": [dict(i) for i in items]}
