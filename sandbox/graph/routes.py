"""The route table of the directory API: which handler answers a path and method, the app
roles it accepts, and what it costs against the throttling buckets.

The table is built once per :class:`~sandbox.graph.api.GraphApi`. Costs are named by their
``GraphConfig`` field and read at each request, so a configuration change (the admin API's
``POST /config``) applies to the next request. Throttling costs: "Identity and access
service limits" in learn.microsoft.com/graph/throttling-limits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import GraphConfig
from .errors import GraphError, bad_request
from .operation import Caller, Operation, Result

Handler = Callable[[Operation, Caller, dict[str, str], list[str]], Result]

NOT_ALLOWED = "Specified HTTP method is not allowed for the request target."


@dataclass(frozen=True)
class Endpoint:
    """One method on one path: its handler, accepted roles and costs.

    ``ru`` and ``writes`` are ``GraphConfig`` field names (or a fixed number of resource
    units); ``writes`` None means the request writes nothing."""

    handler: Handler
    roles: frozenset[str]
    ru: str | int
    writes: str | None = None


@dataclass
class Route:
    name: str
    handler: Handler
    roles: frozenset[str]
    ru: int
    writes: int
    args: list[str]


@dataclass(frozen=True)
class PathRoute:
    """A path pattern (lower-case segments, ``*`` for an id) and its methods."""

    pattern: tuple[str, ...]
    methods: dict[str, Endpoint]


class RouteTable:
    """First match wins, so a literal segment (``users/delta``) is listed before ``users/*``."""

    def __init__(self, routes: Sequence[PathRoute], config: GraphConfig) -> None:
        self.routes = tuple(routes)
        self.config = config

    def resolve(self, op: Operation) -> Route:
        segments = [s for s in op.path.split("/") if s != ""] if op.path else []
        lowered = [s.lower() for s in segments]
        for route in self.routes:
            args = match(route.pattern, lowered, segments)
            if args is None:
                continue
            endpoint = route.methods.get(op.method)
            if endpoint is None:
                raise GraphError(405, "Request_BadRequest", NOT_ALLOWED)
            return Route(
                route.pattern[-1],
                endpoint.handler,
                endpoint.roles,
                self.units(endpoint.ru),
                self.units(endpoint.writes) if endpoint.writes is not None else 0,
                args,
            )
        raise unrouted(op, segments, lowered)

    def units(self, cost: str | int) -> int:
        return cost if isinstance(cost, int) else int(getattr(self.config, cost))


def match(pattern: tuple[str, ...], lowered: list[str], segments: list[str]) -> list[str] | None:
    """The ids a path fills into a pattern's ``*`` segments, or None if it does not match."""
    if len(pattern) != len(lowered):
        return None
    args = []
    for want, got, raw in zip(pattern, lowered, segments, strict=True):
        if want == "*":
            args.append(raw)
        elif want != got:
            return None
    return args


def unrouted(op: Operation, segments: list[str], lowered: list[str]) -> GraphError:
    """Graph's answer to a path no route matches (a nested ``$batch`` included)."""
    if lowered == ["$batch"]:
        if not op.in_batch:
            return GraphError(405, "Request_BadRequest", NOT_ALLOWED)
        return bad_request("A $batch request cannot be nested in a batch.", code="BadRequest")
    missing = next(
        (s for s in segments if s.lower() not in {"users", "groups", "members", "$ref"}),
        segments[0] if segments else "",
    )
    return GraphError(400, "BadRequest", f"Resource not found for the segment '{missing}'.")
