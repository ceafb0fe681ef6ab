"""``POST /$batch`` (learn.microsoft.com/graph/json-batching): the envelope's rules, and its
items run fully in parallel or fully in sequence through :meth:`GraphApi.execute`.

Any envelope-level rule broken (shape, more than ``max_batch_requests`` items, duplicate ids,
absolute URLs, a write without Content-Type or body, a dependsOn that is not "the previous
item") refuses the whole batch with 400, before any item runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.responses import Response

from .api import GraphApi
from .errors import error_body
from .operation import JSON_ODATA, Caller, Operation, Result
from .responses import error_response

BATCH_METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})
# learn.microsoft.com/graph/json-batching: "a batch should be either fully sequential or fully
# parallel" (its tip, confirmed by the docs team in microsoft-graph-docs #16280); Graph
# refuses anything else whole, with this message.
NOT_SEQUENTIAL_OR_PARALLEL = "Batch should be either fully sequential or fully parallel."


class BatchItemError(Exception):
    """An envelope-level $batch rule was broken: the whole batch answers 400."""


@dataclass(frozen=True)
class Envelope:
    """Who sent the batch and how its answer is addressed."""

    caller: Caller
    api_base: str
    request_id: str
    client_request_id: str | None
    base_headers: dict[str, str]


class BatchRunner:
    def __init__(self, api: GraphApi) -> None:
        self.api = api
        self.stats = api.stats
        self.faults = api.faults
        self.config = api.config
        self.batch_rng = random.Random(self.config.batch_seed)

    def reset(self) -> None:
        self.batch_rng = random.Random(self.config.batch_seed)

    async def run(self, raw: bytes, envelope: Envelope) -> Response:
        self.stats.batch_requests += 1
        try:
            items = validate_batch(raw, self.config.max_batch_requests)
        except BatchItemError as exc:
            return self.envelope_error(envelope, 400, "BadRequest", str(exc))
        if self.faults.chance(self.faults.config.envelope_error_rate):
            self.stats.faults["envelope_5xx"] += 1
            return self.envelope_error(
                envelope, 503, "ServiceUnavailable", "The service is temporarily unavailable."
            )
        self.stats.batch_items += len(items)
        self.stats.batch_sizes.append(len(items))
        if any(item.get("dependsOn") for item in items):
            results = await self.run_sequential(items, envelope)
        else:
            results = await self.run_parallel(items, envelope)
        responses = [item_response(item["id"], results[item["id"]]) for item in items]
        if self.config.shuffle_batch_responses:
            self.faults.rng.shuffle(responses)
        payload = json.dumps({"responses": responses}, separators=(",", ":"))
        return Response(
            payload,
            status_code=200,
            headers={**envelope.base_headers, "Content-Type": "application/json"},
        )

    def envelope_error(self, envelope: Envelope, status: int, code: str, message: str) -> Response:
        return error_response(
            status,
            code,
            message,
            envelope.request_id,
            envelope.client_request_id,
            envelope.base_headers,
        )

    async def run_sequential(
        self, items: list[dict[str, Any]], envelope: Envelope
    ) -> dict[str, Result]:
        """Fully sequential: one after another; after a failure the rest answer 424."""
        self.stats.batch_shapes["sequential"] += 1
        per_item = self.faults.config.latency_per_item
        results: dict[str, Result] = {}
        failed: str | None = None
        for item in items:
            if failed is not None:
                results[item["id"]] = self.failed_dependency(failed, envelope)
                failed = item["id"]
                continue
            if per_item:
                await asyncio.sleep(per_item)
            result = self.run_item(item, envelope)
            results[item["id"]] = result
            if not result.ok:
                failed = item["id"]
        return results

    async def run_parallel(
        self, items: list[dict[str, Any]], envelope: Envelope
    ) -> dict[str, Result]:
        """Fully parallel: concurrently, in no guaranteed order (a seeded shuffle); the batch
        takes about as long as its slowest item."""
        self.stats.batch_shapes["parallel"] += 1
        per_item = self.faults.config.latency_per_item
        results: dict[str, Result] = {}
        order = list(items)
        self.batch_rng.shuffle(order)
        in_flight = 0

        async def run(item: dict[str, Any]) -> None:
            nonlocal in_flight
            in_flight += 1
            self.stats.max_items_in_flight = max(self.stats.max_items_in_flight, in_flight)
            try:
                await asyncio.sleep(per_item)  # also yields: the items overlap
                results[item["id"]] = self.run_item(item, envelope)
            finally:
                in_flight -= 1

        await asyncio.gather(*(run(item) for item in order))
        return results

    def failed_dependency(self, failed: str, envelope: Envelope) -> Result:
        return self.item_error(
            424,
            "FailedDependency",
            f"The request depends on request(s) {failed} that failed.",
            envelope,
        )

    def item_error(self, status: int, code: str, message: str, envelope: Envelope) -> Result:
        """An item refused before it reaches the API (still counted as an operation)."""
        self.stats.operations += 1
        self.stats.statuses[status] += 1
        return Result(
            status,
            error_body(code, message, envelope.request_id, envelope.client_request_id),
            {"Content-Type": JSON_ODATA},
        )

    def run_item(self, item: dict[str, Any], envelope: Envelope) -> Result:
        method = item["method"].upper()
        headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
        if method not in BATCH_METHODS:
            return self.item_error(
                405, "BadRequest", f"Invalid method '{item['method']}'.", envelope
            )
        body = item.get("body")
        if isinstance(body, str):
            try:
                decoded = base64.b64decode(body, validate=True)
                body = json.loads(decoded) if "json" in headers.get("content-type", "") else decoded
            except (binascii.Error, ValueError):
                return self.item_error(
                    400,
                    "BadRequest",
                    "Unable to read the request body: a string body must be base64-encoded.",
                    envelope,
                )
        url = item["url"].lstrip("/")
        path, _, query = url.partition("?")
        op = Operation(
            method=method,
            path=unquote(path).strip("/"),
            query=parse_qsl(query, keep_blank_values=True),
            headers=headers,
            body=body,
            api_base=envelope.api_base,
            in_batch=True,
        )
        return self.api.execute(op, envelope.caller, envelope.request_id)


def item_response(item_id: str, result: Result) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": item_id,
        "status": result.status,
        "headers": {"Cache-Control": "no-cache", **result.headers},
    }
    if result.body is not None:
        out["body"] = result.body
    return out


def validate_batch(raw: bytes, limit: int) -> list[dict[str, Any]]:
    """The batch's items, or :class:`BatchItemError` for the first envelope rule broken."""
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        raise BatchItemError("Invalid batch payload format.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise BatchItemError("Invalid batch payload format.")
    items: list[Any] = payload["requests"]
    if not items:
        raise BatchItemError("Invalid batch payload format: the requests array is empty.")
    if len(items) > limit:
        raise BatchItemError(
            f"The number of requests in the batch ({len(items)}) exceeds the limit of {limit}."
        )
    seen: set[str] = set()
    for item in items:
        check_item(item, seen)
        seen.add(item["id"])
    check_sequencing(items)
    return items


def check_item(item: Any, seen: set[str]) -> None:
    """One item's envelope rules: an object with id, method and a relative url; headers of
    strings; a write with Content-Type and body."""
    if not isinstance(item, dict):
        raise BatchItemError("Invalid batch payload format: each request must be an object.")
    for name in ("id", "method", "url"):
        value = item.get(name)
        if not isinstance(value, str) or not value:
            raise BatchItemError(
                f"Invalid batch payload format: request is missing the required property '{name}'."
            )
    if item["id"] in seen:
        raise BatchItemError(f"Request Id '{item['id']}' is duplicated in the batch.")
    url = item["url"]
    if "://" in url or url.startswith("//"):
        raise BatchItemError(
            f"Invalid request URL '{url}' for request id '{item['id']}': batch request "
            "URLs must be relative to the version, e.g. /users."
        )
    headers = item.get("headers")
    if headers is not None and (
        not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values())
    ):
        raise BatchItemError(f"Invalid headers for request id '{item['id']}'.")
    # json-batching: "When a body is included with the request, the headers object
    # must contain a value for Content-Type"; Graph refuses the whole batch. A write
    # without a body gets the same answer (the message names both; stricter reading).
    if item["method"].upper() in BODY_METHODS and (
        item.get("body") is None or not any(k.lower() == "content-type" for k in (headers or {}))
    ):
        raise BatchItemError(
            f"Write request id : {item['id']} does not contain Content-Type header or body."
        )


def check_sequencing(items: list[dict[str, Any]]) -> None:
    """Graph's dependsOn rules; a refusal fails the whole batch.

    - A dependsOn must name a request listed earlier in the batch (Graph: "Invalid
      dependency for request Id ...", msgraph-sdk-dotnet-core #891; the tail of our
      message is ours).
    - The batch is fully parallel (no dependsOn) or fully sequential (request k > 0
      depends on exactly request k - 1, the first on nothing): json-batching's tip.
    """
    earlier: set[str] = set()
    for item in items:
        depends = item.get("dependsOn")
        if depends is not None:
            if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
                raise BatchItemError(
                    f"Invalid dependency for request Id '{item['id']}': dependsOn must be "
                    "an array of request ids."
                )
            for dep in depends:
                if dep not in earlier:
                    raise BatchItemError(
                        f"Invalid dependency for request Id '{item['id']}': '{dep}' is not "
                        "a request listed earlier in the batch."
                    )
        earlier.add(item["id"])
    if not any(item.get("dependsOn") for item in items):
        return
    for index, item in enumerate(items):
        expected = [items[index - 1]["id"]] if index else []
        if list(item.get("dependsOn") or []) != expected:
            raise BatchItemError(NOT_SEQUENTIAL_OR_PARALLEL)
