"""What goes into the batch engine (Operation) and what comes out (Result), and validation.

Validation is pure: a malformed operation gets its own failed Result and never reaches the
network; operations that depend on it fail too (they cannot run without it); the rest run.
Each operation is checked on its own here, one named check per rule (a JSON body by
jsonbody.py), then depends_on across the whole run by dependencies.py.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.errors import UnsafeRequestError
from shared.webapi.dependencies import check_dependencies, fail_dependants
from shared.webapi.jsonbody import check_json_body
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


def _check_method(op: Operation) -> str:
    """The upper-cased method, one of BATCH_METHODS."""
    if not isinstance(op.method, str) or op.method.upper() not in BATCH_METHODS:
        raise UnsafeRequestError(
            f"method {op.method!r} is not one of {', '.join(sorted(BATCH_METHODS))}"
        )
    return op.method.upper()


def _check_url(op: Operation, base: BaseUrl) -> str:
    """The URL relative to the base (same-origin and below the base path)."""
    if not isinstance(op.url, str) or not op.url.strip():
        raise UnsafeRequestError("url is missing")
    return base.relative(op.url)


def _check_reference_from(op: Operation) -> None:
    """``reference_from`` names a dependency, on a member add with ``{"@odata.id": URL}``."""
    if op.reference_from is not None and (
        op.reference_from not in op.depends_on
        or not isinstance(op.body, Mapping)
        or set(op.body) != {"@odata.id"}
    ):
        raise UnsafeRequestError(
            "reference_from must name one of depends_on, on a member add whose body is "
            '{"@odata.id": URL}'
        )


def _check_headers(op: Operation) -> None:
    """Strings only, no Authorization (the client adds the token), no control characters."""
    if not isinstance(op.headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in op.headers.items()
    ):
        raise UnsafeRequestError("headers must map strings to strings")
    for key, value in op.headers.items():
        if key.lower() == "authorization":
            raise UnsafeRequestError("operations must not set the Authorization header")
        if any(ord(ch) < 0x20 for ch in key + value):
            raise UnsafeRequestError(f"header {key!r} contains control characters")


def _check_body(op: Operation, method: str) -> None:
    """A body only with POST/PUT/PATCH; bytes need a Content-Type, JSON must encode."""
    if op.body is None:
        return
    if method not in _BODY_METHODS:
        raise UnsafeRequestError(f"a body is not allowed with {method}")
    if isinstance(op.body, bytes | bytearray):
        if not _content_type(op.headers):
            raise UnsafeRequestError("a bytes body needs a Content-Type header")
    else:
        check_json_body(op.body)


def _check_depends_on(op: Operation) -> None:
    """A tuple of ids, not naming the operation itself (unknown ids and cycles are checked
    across the whole run by :func:`validate_operations`)."""
    if not isinstance(op.depends_on, tuple) or not all(isinstance(d, str) for d in op.depends_on):
        raise UnsafeRequestError("depends_on must be a tuple of operation ids")
    if op.id in op.depends_on:
        raise UnsafeRequestError("operation depends on itself")


def _check_idempotency(op: Operation, method: str, base: BaseUrl) -> None:
    """A CreateIdentity only on a POST, with a same-origin read-back path and an attribute."""
    if op.idempotency is None:
        return
    if method != "POST":
        raise UnsafeRequestError("idempotency (CreateIdentity) applies to POST creates only")
    base.relative(op.idempotency.path)
    if not op.idempotency.attribute:
        raise UnsafeRequestError("CreateIdentity.attribute is missing")


def _check_cost(op: Operation) -> None:
    if op.cost is not None and (op.cost.writes < 0 or op.cost.resource_units < 0):
        raise UnsafeRequestError("cost must not be negative")


def _check_one(op: Operation, base: BaseUrl) -> tuple[str, str]:
    """(method, relative url) or UnsafeRequestError naming the first problem, checked in
    this order."""
    method = _check_method(op)
    url = _check_url(op, base)
    _check_reference_from(op)
    _check_headers(op)
    _check_body(op, method)
    _check_depends_on(op)
    _check_idempotency(op, method, base)
    _check_cost(op)
    return method, url


_Checked = dict[str, tuple[int, str, str]]
"""Operation id → (input index, method, relative url); method and url are empty for an
operation that failed its own checks (its id stays reserved so dependants learn why)."""


def _identity_problem(index: int, op: object, checked: _Checked) -> str | None:
    """Why ``op`` has no usable identity (not an Operation, bad or duplicate id), or None."""
    if not isinstance(op, Operation):
        return f"operation #{index} is not an Operation"
    if not isinstance(op.id, str) or not op.id:
        return f"operation #{index}: id must be a non-empty string"
    if op.id in checked:
        return f"operation {op.id!r}: duplicate id (first at #{checked[op.id][0]})"
    return None


def _check_each(operations: Sequence[Operation], base: BaseUrl, errors: dict[int, str]) -> _Checked:
    """Check every operation on its own; record failures in ``errors``."""
    checked: _Checked = {}
    for index, op in enumerate(operations):
        problem = _identity_problem(index, op, checked)
        if problem is not None:
            errors[index] = problem
            continue
        try:
            method, url = _check_one(op, base)
        except UnsafeRequestError as exc:
            errors[index] = f"operation {op.id!r}: {exc}"
            checked[op.id] = (index, "", "")  # still reserve the id so dependants are told why
            continue
        checked[op.id] = (index, method, url)
    return checked


def _prepare(idx: int, op: Operation, method: str, url: str) -> Prepared:
    return Prepared(
        index=idx,
        op=op,
        method=method,
        url=url,
        cost=op.cost or estimate_cost(method, url),
        resendable=is_idempotent(method, op.idempotent)
        or (op.idempotent is None and is_reference_add(method, url)),
    )


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
    checked = _check_each(operations, base, errors)
    graph = {op_id: operations[idx].depends_on for op_id, (idx, _, _) in checked.items()}
    check_dependencies(checked, graph, errors)
    fail_dependants(checked, graph, errors)
    prepared = [
        _prepare(idx, operations[idx], method, url)
        for idx, method, url in checked.values()
        if idx not in errors
    ]
    prepared.sort(key=lambda p: p.index)
    return prepared, errors
