"""What goes into the batch engine (Operation) and what comes out (Result), and validation.

Validation is pure: a malformed operation gets its own failed Result and never reaches the
network; operations that depend on it fail too (they cannot run without it); the rest run.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.errors import UnsafeRequestError
from shared.webapi.retry import is_idempotent
from shared.webapi.urls import BaseUrl

__all__ = [
    "BATCH_METHODS",
    "Cost",
    "CreateIdentity",
    "Operation",
    "Outcome",
    "Prepared",
    "Result",
    "check_json_body",
    "estimate_cost",
    "validate_operations",
]

BATCH_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Outcome(str, enum.Enum):
    """The final state of one operation."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a permanent failure (the API's error, a validation error…)
    GAVE_UP = "gave_up"  # still retryable, but the attempts or the time ran out


@dataclass(frozen=True)
class Cost:
    """What one operation takes from the tenant's budget (identity and access service
    limits: https://learn.microsoft.com/graph/throttling-limits)."""

    writes: int = 0
    resource_units: int = 1


def estimate_cost(method: str, url: str) -> Cost:
    """Graph identity costs: writes 1 RU + 1 write; ``GET /users`` 2 RU, ``…/members`` 3,
    other GETs 1; ``$select`` −1, ``$expand`` +1 (never below 1)."""
    method = method.upper()
    if method != "GET":
        return Cost(writes=1, resource_units=1)
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments and segments[-1].lower() in ("members", "transitivemembers"):
        units = 3
    elif segments and segments[0].lower() == "users":
        units = 2
    else:
        units = 1
    keys = {k.lower() for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if "$select" in keys:
        units -= 1
    if "$expand" in keys:
        units += 1
    return Cost(writes=0, resource_units=max(1, units))


def is_reference_add(method: str, url: str) -> bool:
    """``POST …/$ref`` adds a reference (a group member); resent after an unknown outcome it
    answers "added object references already exist", which counts as done — so it is safe
    to resend, unlike other POSTs."""
    return method.upper() == "POST" and urlsplit(url).path.rstrip("/").endswith("/$ref")


@dataclass(frozen=True)
class CreateIdentity:
    """How to recognise the object a POST create makes, so the create is safe to resend.

    Whenever the create answers 400 "already exists" (ObjectConflict) — after an unknown
    outcome, but also on a first attempt (another run may have created the same object) —
    the engine GETs ``path`` (a single object or a collection with ``value``) and looks for
    an object whose ``attribute`` equals ``value``: exactly one → the object exists, the
    create counts as done (resolved_conflict); none → the conflict is with another object,
    a permanent failure (after retrying the read within the replication bound: a new object
    may not be readable yet).
    """

    path: str
    attribute: str
    value: str
    case_sensitive: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)

    def matches(self, obj: Any) -> bool:
        if not isinstance(obj, Mapping):
            return False
        found = obj.get(self.attribute)
        if not isinstance(found, str):
            return False
        if self.case_sensitive:
            return found == self.value
        return found.casefold() == self.value.casefold()


@dataclass(frozen=True)
class Operation:
    """One request to run. ``id`` is the caller's key and must be unique in a run.

    ``url`` is relative to the client's base URL (``/users/{id}``). ``body`` is sent as JSON
    unless it is bytes (or the headers give a non-JSON Content-Type), then base64 in a batch;
    a JSON body that cannot be encoded (a lone surrogate, NaN, Infinity) fails validation.
    ``depends_on`` names operations that must succeed first: the engine sends an operation
    only after they all succeeded (it never sends Graph's ``dependsOn``: every batch is
    fully parallel) and fails it, with their error, when one of them did not.
    ``idempotency`` makes a POST create safe to resend after an unknown outcome.
    ``idempotent`` overrides the method's default (POST False — except reference adds
    ``POST …/$ref``, see :func:`is_reference_add` — others True).
    ``cost`` overrides :func:`estimate_cost`.
    ``reference_from`` names the create (in ``depends_on``) whose object a member add
    (``POST …/members/$ref`` with ``{"@odata.id": URL}``) refers to: once that create
    succeeded, the engine sends ``{base}/directoryObjects/{id of the created object}``
    instead of ``URL`` (Graph's Add members page references members by id; ``URL``, e.g.
    ``{base}/users/{userPrincipalName}``, names the same object before its id is known).
    """

    id: str
    method: str
    url: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    idempotency: CreateIdentity | None = None
    idempotent: bool | None = None
    cost: Cost | None = None
    reference_from: str | None = None


@dataclass(frozen=True)
class Result:
    """The one final result of one operation."""

    operation_id: str
    outcome: Outcome
    status: int | None
    body: Any
    attempts: int
    error: str | None = None
    error_code: str | None = None
    resolved_conflict: bool = False
    outcome_unknown: bool = False

    @property
    def succeeded(self) -> bool:
        return self.outcome is Outcome.SUCCEEDED


@dataclass(frozen=True)
class Prepared:
    """A validated operation: normalised method, relative URL, cost and resend safety."""

    index: int
    op: Operation
    method: str
    url: str
    cost: Cost
    resendable: bool  # safe to send again when the outcome of a send is unknown

    @property
    def id(self) -> str:
        return self.op.id


def _content_type(headers: Mapping[str, str]) -> str | None:
    for key, value in headers.items():
        if key.lower() == "content-type":
            return value
    return None


def _unencodable(value: Any, where: str, depth: int = 0) -> str | None:
    """Where and why ``value`` cannot be sent as JSON (UTF-8, no NaN/Infinity), or None."""
    if depth > 64:
        return f"{where} is nested more than 64 levels deep"
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


def _check_one(op: Operation, base: BaseUrl) -> tuple[str, str]:
    """(method, relative url) or UnsafeRequestError naming the problem."""
    if not isinstance(op.method, str) or op.method.upper() not in BATCH_METHODS:
        raise UnsafeRequestError(
            f"method {op.method!r} is not one of {', '.join(sorted(BATCH_METHODS))}"
        )
    method = op.method.upper()
    if not isinstance(op.url, str) or not op.url.strip():
        raise UnsafeRequestError("url is missing")
    url = base.relative(op.url)
    if op.reference_from is not None and (
        op.reference_from not in op.depends_on
        or not isinstance(op.body, Mapping)
        or set(op.body) != {"@odata.id"}
    ):
        raise UnsafeRequestError(
            "reference_from must name one of depends_on, on a member add whose body is "
            '{"@odata.id": URL}'
        )
    if not isinstance(op.headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in op.headers.items()
    ):
        raise UnsafeRequestError("headers must map strings to strings")
    for key, value in op.headers.items():
        if key.lower() == "authorization":
            raise UnsafeRequestError("operations must not set the Authorization header")
        if any(ord(ch) < 0x20 for ch in key + value):
            raise UnsafeRequestError(f"header {key!r} contains control characters")
    if op.body is not None:
        if method not in _BODY_METHODS:
            raise UnsafeRequestError(f"a body is not allowed with {method}")
        if isinstance(op.body, bytes | bytearray):
            if not _content_type(op.headers):
                raise UnsafeRequestError("a bytes body needs a Content-Type header")
        else:
            check_json_body(op.body)
    if not isinstance(op.depends_on, tuple) or not all(isinstance(d, str) for d in op.depends_on):
        raise UnsafeRequestError("depends_on must be a tuple of operation ids")
    if op.id in op.depends_on:
        raise UnsafeRequestError("operation depends on itself")
    if op.idempotency is not None:
        if method != "POST":
            raise UnsafeRequestError("idempotency (CreateIdentity) applies to POST creates only")
        base.relative(op.idempotency.path)
        if not op.idempotency.attribute:
            raise UnsafeRequestError("CreateIdentity.attribute is missing")
    if op.cost is not None and (op.cost.writes < 0 or op.cost.resource_units < 0):
        raise UnsafeRequestError("cost must not be negative")
    return method, url


def _in_cycle(node: str, graph: Mapping[str, Sequence[str]], allowed: set[str]) -> bool:
    stack = [d for d in graph.get(node, ()) if d in allowed]
    seen: set[str] = set()
    while stack:
        cur = stack.pop()
        if cur == node:
            return True
        if cur in seen:
            continue
        seen.add(cur)
        stack.extend(d for d in graph.get(cur, ()) if d in allowed)
    return False


def validate_operations(
    operations: Sequence[Operation], base: BaseUrl
) -> tuple[list[Prepared], dict[int, str]]:
    """Split ``operations`` into runnable ones and {input index: error message}.

    Checks: id (non-empty string, unique: later duplicates fail), method, url (relative or
    same-origin under the base URL), headers, body allowed for the method, depends_on
    (known ids, no cycles), CreateIdentity. An operation depending on a failed one fails
    too, naming it.
    """
    errors: dict[int, str] = {}
    checked: dict[str, tuple[int, str, str]] = {}
    for index, op in enumerate(operations):
        if not isinstance(op, Operation):
            errors[index] = f"operation #{index} is not an Operation"
            continue
        if not isinstance(op.id, str) or not op.id:
            errors[index] = f"operation #{index}: id must be a non-empty string"
            continue
        if op.id in checked:
            errors[index] = f"operation {op.id!r}: duplicate id (first at #{checked[op.id][0]})"
            continue
        try:
            method, url = _check_one(op, base)
        except UnsafeRequestError as exc:
            errors[index] = f"operation {op.id!r}: {exc}"
            # still reserve the id so dependants are told why
            checked[op.id] = (index, "", "")
            continue
        checked[op.id] = (index, method, url)

    ids_ok = {i for i, (idx, _, _) in checked.items() if idx not in errors}
    graph: dict[str, tuple[str, ...]] = {
        op_id: operations[idx].depends_on for op_id, (idx, _, _) in checked.items()
    }
    for op_id in sorted(ids_ok, key=lambda i: checked[i][0]):
        unknown = [d for d in graph[op_id] if d not in checked]
        if unknown:
            idx = checked[op_id][0]
            errors[idx] = f"operation {op_id!r}: depends_on names unknown operation(s) " + (
                ", ".join(repr(u) for u in unknown)
            )
    # cycles among the still-valid ones
    valid = {i for i in ids_ok if checked[i][0] not in errors}
    for op_id in sorted(valid, key=lambda i: checked[i][0]):
        if _in_cycle(op_id, graph, valid):
            errors[checked[op_id][0]] = f"operation {op_id!r}: depends_on forms a cycle"
    # propagate: dependants of failed operations fail, naming the dependency
    changed = True
    while changed:
        changed = False
        for op_id in sorted(checked, key=lambda i: checked[i][0]):
            idx = checked[op_id][0]
            if idx in errors:
                continue
            bad = [d for d in graph[op_id] if checked[d][0] in errors]
            if bad:
                errors[idx] = (
                    f"operation {op_id!r}: depends on {bad[0]!r}, which is invalid and was not sent"
                )
                changed = True

    prepared: list[Prepared] = []
    for idx, method, url in checked.values():
        if idx in errors:
            continue
        op = operations[idx]
        prepared.append(
            Prepared(
                index=idx,
                op=op,
                method=method,
                url=url,
                cost=op.cost or estimate_cost(method, url),
                resendable=is_idempotent(method, op.idempotent)
                or (op.idempotent is None and is_reference_add(method, url)),
            )
        )
    prepared.sort(key=lambda p: p.index)
    return prepared, errors
