"""OData query options of a request: which are accepted, and the rules of each.

``$select``, ``$filter``, ``$top``, ``$count`` and ``$expand`` as Graph applies them to
directory objects (learn.microsoft.com/graph/query-parameters and
learn.microsoft.com/graph/aad-advanced-queries); ``$skip``, ``$search``, ``$format`` and
``$orderby`` are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import GraphConfig
from .errors import GraphError, bad_request, forbidden
from .odata import parse_filter, parse_select
from .operation import Caller, Operation
from .permissions import LIFECYCLE_READ
from .schema import USER_NEVER_RETURNED, USER_PROPERTIES

KNOWN_OPTIONS = frozenset(
    {
        "$select",
        "$filter",
        "$top",
        "$count",
        "$skiptoken",
        "$deltatoken",
        "$expand",
        "$orderby",
        "$search",
        "$skip",
        "$format",
    }
)


def parse_options(op: Operation) -> dict[str, str]:
    """The request's ``$`` options by lower-case name; 400 for unknown or repeated ones."""
    options: dict[str, str] = {}
    for name, value in op.query:
        if not name.startswith("$"):
            continue
        low = name.lower()
        if low not in KNOWN_OPTIONS:
            raise GraphError(400, "BadRequest", f"The query parameter '{name}' is not supported.")
        if low in options:
            raise GraphError(
                400,
                "BadRequest",
                f"Query option '{name}' was specified more than once, but it must be "
                "specified at most once.",
            )
        options[low] = value
    for unsupported in ("$skip", "$search", "$format"):
        if unsupported in options:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"The query option '{unsupported}' is not supported by the sandbox for "
                "directory objects.",
            )
    if "$orderby" in options:
        raise GraphError(
            400, "Request_UnsupportedQuery", "Sorting not supported for current query."
        )
    return options


def user_select(config: GraphConfig, caller: Caller, options: dict[str, str]) -> list[str] | None:
    """The user properties of ``$select`` (None: the default set); the lifecycle role is
    needed to read ``employeeLeaveDateTime``."""
    if "$select" not in options:
        return None
    names = parse_select(options["$select"], USER_PROPERTIES, "User")
    for name in names:
        if name in USER_NEVER_RETURNED:
            raise bad_request(f"Property '{name}' cannot be selected.", code="BadRequest")
    if (
        config.require_lifecycle_role
        and "employeeLeaveDateTime" in names
        and not caller.roles & LIFECYCLE_READ
    ):
        raise forbidden()
    return names


def check_expand(options: dict[str, str]) -> str | None:
    """``$expand=memberOf`` (optionally with nested options) or nothing."""
    expand = options.get("$expand")
    if expand is None:
        return None
    # memberOf, optionally with nested options such as memberOf($select=id)
    if expand.strip().split("(", 1)[0] != "memberOf" or (
        "(" in expand and not expand.strip().endswith(")")
    ):
        raise GraphError(
            400,
            "BadRequest",
            f"Could not find a property named '{expand.strip()}' on type 'microsoft.graph.user'.",
        )
    return "memberOf"


def check_count(op: Operation, options: dict[str, str]) -> bool:
    """``$count=true`` needs ``ConsistencyLevel: eventual`` (an advanced query)."""
    value = options.get("$count")
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise GraphError(400, "BadRequest", f"Invalid value '{value}' for $count.")
    if value.lower() == "true" and op.headers.get("consistencylevel", "").lower() != "eventual":
        raise bad_request("$count is not currently supported.")
    return value.lower() == "true"


@dataclass(frozen=True)
class CompiledFilter:
    """A ``$filter``'s predicate, and (``equals``) the property and lower-cased values when
    the whole filter is one string equality, for a lookup instead of a scan."""

    predicate: Callable[[dict[str, Any]], bool]
    equals: tuple[str, frozenset[str]] | None = None

    def __call__(self, obj: dict[str, Any]) -> bool:
        return self.predicate(obj)


def compile_filter(
    config: GraphConfig,
    op: Operation,
    text: str | None,
    schema: dict[str, str],
    type_name: str,
    count: bool,
    caller: Caller,
) -> CompiledFilter:
    """The predicate of ``$filter``; advanced operators need ``$count`` and eventual
    consistency, as Graph requires."""
    if text is None:
        return CompiledFilter(lambda _obj: True)
    predicate, info = parse_filter(text, schema, type_name)
    if info.advanced and config.require_advanced_query_headers:
        eventual = op.headers.get("consistencylevel", "").lower() == "eventual"
        if not (eventual and count):
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "Operator 'ne', 'not', 'endsWith' or 'eq null' is not supported because the "
                "required parameters might be missing. Try adding $count with a value of "
                "true and the ConsistencyLevel header with a value of eventual.",
            )
    if (
        config.require_lifecycle_role
        and "employeeleavedatetime" in text.lower()
        and not caller.roles & LIFECYCLE_READ
    ):
        raise forbidden()
    return CompiledFilter(predicate, info.equals)


def page_size_preference(config: GraphConfig, op: Operation) -> int | None:
    """``Prefer: odata.maxpagesize=N``, capped at the largest page; None when absent."""
    prefer = op.headers.get("prefer", "")
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, min(int(value.strip()), config.max_page_size))
    return None
