"""Operations of the directory API, independent of HTTP: one call = one Graph request.

Top-level requests and ``$batch`` items both go through :meth:`GraphApi.execute`, so each is
routed, charged against the throttling buckets, authorized and applied the same way. The
handlers live by resource: ``users.py``, ``groups.py``, ``members.py``, ``delta.py``; paging in
``paging.py``; the route table (built once, here) in ``routes.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .config import GraphConfig
from .context import GraphContext
from .delta import DeltaHandlers
from .directory import Directory
from .errors import GraphError, forbidden
from .faults import Faults
from .groups import GroupHandlers
from .members import MemberHandlers
from .operation import WRITE_METHODS, Caller, Operation, Result
from .paging import Pager
from .permissions import (
    READ_GROUPS,
    READ_USERS,
    REVOKE_SESSIONS,
    WRITE_GROUPS,
    WRITE_MEMBERS,
    WRITE_USERS,
)
from .query import parse_options
from .routes import Endpoint, PathRoute, Route, RouteTable
from .stats import GraphStats, ThrottleEvent, body_hash
from .throttle import Decision, Throttler
from .users import UserHandlers

log = logging.getLogger(__name__)

WRITE = "cost_write"  # GraphConfig fields naming the costs of a route
WRITES = "write_cost"


def build_routes(
    users: UserHandlers, groups: GroupHandlers, members: MemberHandlers, delta: DeltaHandlers
) -> list[PathRoute]:
    """The directory API's routes, first match wins."""
    return [
        PathRoute(
            ("users",),
            {
                "GET": Endpoint(users.list_users, READ_USERS, "cost_get_users"),
                "POST": Endpoint(users.create_user, WRITE_USERS, WRITE, WRITES),
            },
        ),
        PathRoute(
            ("users", "delta"), {"GET": Endpoint(delta.users_delta, READ_USERS, "cost_get_other")}
        ),
        PathRoute(
            ("users", "*"),
            {
                "GET": Endpoint(users.get_user, READ_USERS, "cost_get_other"),
                "PATCH": Endpoint(users.update_user, WRITE_USERS, WRITE, WRITES),
                "DELETE": Endpoint(users.delete_user, WRITE_USERS, WRITE, WRITES),
            },
        ),
        PathRoute(
            ("users", "*", "revokesigninsessions"),
            {"POST": Endpoint(users.revoke_sessions, REVOKE_SESSIONS, WRITE, WRITES)},
        ),
        PathRoute(
            ("users", "*", "memberof"), {"GET": Endpoint(users.user_member_of, READ_USERS, 2)}
        ),
        PathRoute(
            ("groups",),
            {
                "GET": Endpoint(groups.list_groups, READ_GROUPS, "cost_get_other"),
                "POST": Endpoint(groups.create_group, WRITE_GROUPS, WRITE, WRITES),
            },
        ),
        PathRoute(
            ("groups", "*"),
            {
                "GET": Endpoint(groups.get_group, READ_GROUPS, "cost_get_other"),
                "PATCH": Endpoint(groups.update_group, WRITE_GROUPS | WRITE_MEMBERS, WRITE, WRITES),
                "DELETE": Endpoint(groups.delete_group, WRITE_GROUPS, WRITE, WRITES),
            },
        ),
        PathRoute(
            ("groups", "*", "members"),
            {"GET": Endpoint(members.list_members, READ_GROUPS, "cost_get_members")},
        ),
        PathRoute(
            ("groups", "*", "members", "$ref"),
            {"POST": Endpoint(members.add_member, WRITE_MEMBERS, WRITE, WRITES)},
        ),
        PathRoute(
            ("groups", "*", "members", "*", "$ref"),
            {"DELETE": Endpoint(members.remove_member, WRITE_MEMBERS, WRITE, WRITES)},
        ),
    ]


class GraphApi:
    """Routes, charges, authorizes and applies one operation (see :meth:`execute`)."""

    def __init__(
        self,
        directory: Directory,
        config: GraphConfig,
        faults: Faults,
        stats: GraphStats,
        clock: Callable[[], float],
    ) -> None:
        self.directory = directory
        self.config = config
        self.faults = faults
        self.stats = stats
        self.clock = clock
        self.throttler = Throttler(config, clock)
        self.context = GraphContext(directory, config, faults, stats, clock)
        self.pager = Pager(self.context)
        self.users = UserHandlers(self.context, self.pager)
        self.groups = GroupHandlers(self.context, self.pager)
        self.members = MemberHandlers(self.context, self.pager)
        self.delta = DeltaHandlers(self.context, self.pager)
        self.routes = RouteTable(
            build_routes(self.users, self.groups, self.members, self.delta), config
        )

    def reset(self) -> None:
        self.throttler.reset()
        self.pager.reset()
        self.delta.reset()

    def expire_delta_tokens(self) -> None:
        """Every delta token (and delta page token) issued so far is expired from now on."""
        self.delta.expire_tokens()

    def resolve(self, op: Operation) -> Route:
        return self.routes.resolve(op)

    # -- the pipeline --------------------------------------------------------------------------
    def execute(self, op: Operation, caller: Caller, request_id: str) -> Result:
        stats = self.stats
        stats.operations += 1
        now = self.clock()
        key = (caller.tenant, op.method, op.url, body_hash(op.body))
        stats.note_operation(key, now)
        try:
            result = self._execute(op, caller, key, now)
        except GraphError as exc:
            result = Result(
                exc.status, exc.body(request_id, op.headers.get("client-request-id")), exc.headers
            )
        stats.statuses[result.status] += 1
        if result.ok and op.method in WRITE_METHODS:
            stats.writes_applied += 1
        return result

    def _execute(
        self, op: Operation, caller: Caller, key: tuple[str, str, str, str], now: float
    ) -> Result:
        """Route, parse options, injected faults, throttling, authorization, the handler."""
        route = self.resolve(op)
        options = parse_options(op)
        self.raise_injected_error()
        ru = self.cost(route, op, options)
        decision = self.admit(caller, route, ru)
        if not decision.admitted:
            raise self.throttled(op, caller, key, now, decision)
        if not (caller.roles & route.roles):
            self.stats.forbidden += 1
            raise forbidden()
        result = route.handler(op, caller, options, route.args)
        result.headers["x-ms-resource-unit"] = str(ru)
        if decision.used_fraction > self.config.limit_percentage_threshold:
            result.headers["x-ms-throttle-limit-percentage"] = (
                f"{min(decision.used_fraction, 1.8):.1f}"
            )
        return result

    def raise_injected_error(self) -> None:
        """A 503 or 504 from the fault schedule, before the request is charged."""
        injected = self.faults.server_error()
        if injected is None:
            return
        status, retry_after = injected
        self.stats.faults[f"status_{status}"] += 1
        code = "ServiceUnavailable" if status == 503 else "GatewayTimeout"
        message = (
            "The service is temporarily unavailable. Please try again later."
            if status == 503
            else "The operation timed out before the backend answered."
        )
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = self.throttler.format_retry_after(retry_after)
        raise GraphError(status, code, message, headers=headers)

    def admit(self, caller: Caller, route: Route, ru: int) -> Decision:
        """Charge the request against the identity-service buckets of app and tenant."""
        tenant = self.directory.tenant(caller.tenant)
        charges = self.throttler.charges(
            caller.app_id, caller.tenant, ru, route.writes, len(tenant.users)
        )
        decision = self.throttler.admit(charges)
        self.stats.resource_units += ru
        return decision

    def throttled(
        self,
        op: Operation,
        caller: Caller,
        key: tuple[str, str, str, str],
        now: float,
        decision: Decision,
    ) -> GraphError:
        """Graph's 429, with ``Retry-After`` and the throttle-scope headers; noted in stats."""
        header = self.throttler.format_retry_after(decision.retry_after)
        header_seconds = float(header)
        self.stats.note_throttled(
            key,
            ThrottleEvent(
                now,
                caller.tenant,
                caller.app_id,
                op.method,
                op.url,
                decision.retry_after,
                header,
                decision.bucket,
                op.in_batch,
            ),
            header_seconds,
        )
        log.info(
            "graph sandbox: throttled %s %s (bucket %s, Retry-After %s)",
            op.method,
            op.path,
            decision.bucket,
            header,
        )
        return GraphError(
            429,
            "TooManyRequests",
            f"Too many requests. The request was throttled; retry after {header} seconds.",
            headers={
                "Retry-After": header,
                "x-ms-throttle-scope": decision.scope,
                "x-ms-throttle-information": decision.information,
            },
        )

    def cost(self, route: Route, op: Operation, options: dict[str, str]) -> int:
        """Resource units of a request: ``$select`` and a small ``$top`` cost less, ``$expand``
        more (learn.microsoft.com/graph/throttling-limits, identity and access limits)."""
        c = self.config
        ru = route.ru
        if op.method == "GET":
            if "$select" in options:
                ru -= c.select_discount
            if "$expand" in options:
                ru += c.expand_surcharge
            top = options.get("$top", "")
            if top.isdigit() and int(top) < 20:
                ru -= c.small_top_discount
        return max(1, ru)
