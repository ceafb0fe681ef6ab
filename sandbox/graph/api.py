"""Operations of the directory API, independent of HTTP: one call = one Graph request.

Top-level requests and ``$batch`` items both go through :meth:`GraphApi.execute`, so each is
routed, charged against the throttling buckets, authorized and applied the same way.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from .config import GraphConfig
from .directory import (
    GROUP_DEFAULT_SELECT,
    GROUP_PROPERTIES,
    USER_DEFAULT_SELECT,
    USER_NEVER_RETURNED,
    USER_PROPERTIES,
    Directory,
    TenantDirectory,
)
from .errors import GraphError, bad_request, error_body, forbidden, not_found
from .faults import Faults
from .odata import parse_filter, parse_select, parse_top
from .stats import GraphStats, ThrottleEvent, body_hash
from .throttle import Throttler
from .validation import check_password, check_upn, reference_id

log = logging.getLogger(__name__)

JSON_ODATA = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)

READ_USERS = frozenset(
    {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
)
WRITE_USERS = frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All"})
REVOKE_SESSIONS = frozenset(
    {"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
)
READ_GROUPS = frozenset(
    {
        "Group.Read.All",
        "Group.ReadWrite.All",
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
WRITE_GROUPS = frozenset({"Group.ReadWrite.All", "Directory.ReadWrite.All"})
WRITE_MEMBERS = frozenset(
    {"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}
)
LIFECYCLE_READ = frozenset({"User-LifeCycleInfo.Read.All", "User-LifeCycleInfo.ReadWrite.All"})
LIFECYCLE_WRITE = frozenset({"User-LifeCycleInfo.ReadWrite.All"})

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
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
# Graph's answer when a reference names an object that does not exist yet (or not yet in the
# replica that serves the request): "Add members" (learn.microsoft.com/graph/api/
# group-post-members) and "Designing for eventual consistency" in the Entra docs.
NOT_REPLICATED = "The source resource object or one of the objects being referenced do not exist."
ALREADY_MEMBERS = (
    "One or more added object references already exist for the following modified properties: "
    "'members'."
)


EXPAND_LIMIT = 20  # related objects returned by $expand


@dataclass
class Caller:
    tenant: str
    app_id: str
    roles: frozenset[str]


@dataclass
class Operation:
    method: str
    path: str  # relative to /v1.0, no leading slash, percent-decoded
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: Any
    api_base: str  # scheme://host:port/v1.0 as the client reached it
    in_batch: bool = False

    @property
    def url(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query)
        return self.path + (f"?{query}" if query else "")


@dataclass
class Result:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Route:
    name: str
    handler: Callable[[Operation, Caller, dict[str, str], list[str]], Result]
    roles: frozenset[str]
    ru: int
    writes: int
    args: list[str]


@dataclass
class PageState:
    tenant: str
    app_id: str
    kind: str  # "users", "groups", "members:<group id>", "delta"
    filter: str | None
    select: list[str] | None
    top: int
    count: bool
    cursor: str  # last id returned ("" = start)
    created: float
    ids: list[tuple[str, bool]] | None = None  # delta: (id, removed) in order
    offset: int = 0
    delta_seq: int = 0


@dataclass
class DeltaState:
    tenant: str
    app_id: str
    since: int
    select: list[str] | None
    issued: float


class GraphApi:
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
        self.pages: dict[str, PageState] = {}
        self.deltas: dict[str, DeltaState] = {}
        self.delta_cutoff = float("-inf")

    def reset(self) -> None:
        self.throttler.reset()
        self.pages.clear()
        self.deltas.clear()
        self.delta_cutoff = float("-inf")

    def expire_delta_tokens(self) -> None:
        """Every delta token (and delta page token) issued so far is expired from now on."""
        self.delta_cutoff = self.clock()

    # -- the pipeline --------------------------------------------------------------------------
    def execute(self, op: Operation, caller: Caller, request_id: str) -> Result:
        stats = self.stats
        stats.operations += 1
        now = self.clock()
        key = (caller.tenant, op.method, op.url, body_hash(op.body))
        stats.note_operation(key, now)
        try:
            result = self._execute(op, caller, request_id, key, now)
        except GraphError as exc:
            result = Result(
                exc.status, exc.body(request_id, op.headers.get("client-request-id")), exc.headers
            )
        stats.statuses[result.status] += 1
        if result.ok and op.method in WRITE_METHODS:
            stats.writes_applied += 1
        return result

    def _execute(
        self,
        op: Operation,
        caller: Caller,
        request_id: str,
        key: tuple[str, str, str, str],
        now: float,
    ) -> Result:
        route = self.resolve(op)
        options = self.options(op)
        injected = self.faults.server_error()
        if injected is not None:
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

        ru = self.cost(route, op, options)
        tenant = self.directory.tenant(caller.tenant)
        charges = self.throttler.charges(
            caller.app_id, caller.tenant, ru, route.writes, len(tenant.users)
        )
        decision = self.throttler.admit(charges)
        self.stats.resource_units += ru
        if not decision.admitted:
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
            raise GraphError(
                429,
                "TooManyRequests",
                f"Too many requests. The request was throttled; retry after {header} seconds.",
                headers={
                    "Retry-After": header,
                    "x-ms-throttle-scope": decision.scope,
                    "x-ms-throttle-information": decision.information,
                },
            )
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

    # -- routing -------------------------------------------------------------------------------
    def resolve(self, op: Operation) -> Route:
        segments = [s for s in op.path.split("/") if s != ""] if op.path else []
        lowered = [s.lower() for s in segments]
        method = op.method
        c = self.config
        table: list[tuple[list[str], dict[str, tuple[Any, frozenset[str], int, int]]]] = [
            (
                ["users"],
                {
                    "GET": (self.list_users, READ_USERS, c.cost_get_users, 0),
                    "POST": (self.create_user, WRITE_USERS, c.cost_write, c.write_cost),
                },
            ),
            (["users", "delta"], {"GET": (self.users_delta, READ_USERS, c.cost_get_other, 0)}),
            (
                ["users", "*"],
                {
                    "GET": (self.get_user, READ_USERS, c.cost_get_other, 0),
                    "PATCH": (self.update_user, WRITE_USERS, c.cost_write, c.write_cost),
                    "DELETE": (self.delete_user, WRITE_USERS, c.cost_write, c.write_cost),
                },
            ),
            (
                ["users", "*", "revokesigninsessions"],
                {
                    "POST": (self.revoke_sessions, REVOKE_SESSIONS, c.cost_write, c.write_cost),
                },
            ),
            (
                ["users", "*", "memberof"],
                {
                    "GET": (self.user_member_of, READ_USERS, 2, 0),
                },
            ),
            (
                ["groups"],
                {
                    "GET": (self.list_groups, READ_GROUPS, c.cost_get_other, 0),
                    "POST": (self.create_group, WRITE_GROUPS, c.cost_write, c.write_cost),
                },
            ),
            (
                ["groups", "*"],
                {
                    "GET": (self.get_group, READ_GROUPS, c.cost_get_other, 0),
                    "PATCH": (
                        self.update_group,
                        WRITE_GROUPS | WRITE_MEMBERS,
                        c.cost_write,
                        c.write_cost,
                    ),
                    "DELETE": (self.delete_group, WRITE_GROUPS, c.cost_write, c.write_cost),
                },
            ),
            (
                ["groups", "*", "members"],
                {
                    "GET": (self.list_members, READ_GROUPS, c.cost_get_members, 0),
                },
            ),
            (
                ["groups", "*", "members", "$ref"],
                {
                    "POST": (self.add_member, WRITE_MEMBERS, c.cost_write, c.write_cost),
                },
            ),
            (
                ["groups", "*", "members", "*", "$ref"],
                {
                    "DELETE": (self.remove_member, WRITE_MEMBERS, c.cost_write, c.write_cost),
                },
            ),
        ]
        for pattern, methods in table:
            if len(pattern) != len(lowered):
                continue
            args = []
            for want, got, raw in zip(pattern, lowered, segments, strict=True):
                if want == "*":
                    args.append(raw)
                elif want != got:
                    break
            else:
                if method not in methods:
                    raise GraphError(
                        405,
                        "Request_BadRequest",
                        "Specified HTTP method is not allowed for the request target.",
                    )
                handler, roles, ru, writes = methods[method]
                return Route(pattern[-1], handler, roles, ru, writes, args)
        if lowered == ["$batch"]:
            if not op.in_batch:
                raise GraphError(
                    405,
                    "Request_BadRequest",
                    "Specified HTTP method is not allowed for the request target.",
                )
            raise bad_request("A $batch request cannot be nested in a batch.", code="BadRequest")
        missing = next(
            (s for s in segments if s.lower() not in {"users", "groups", "members", "$ref"}),
            segments[0] if segments else "",
        )
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{missing}'.")

    def options(self, op: Operation) -> dict[str, str]:
        options: dict[str, str] = {}
        for name, value in op.query:
            if not name.startswith("$"):
                continue
            low = name.lower()
            if low not in KNOWN_OPTIONS:
                raise GraphError(
                    400, "BadRequest", f"The query parameter '{name}' is not supported."
                )
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

    def cost(self, route: Route, op: Operation, options: dict[str, str]) -> int:
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

    # -- helpers --------------------------------------------------------------------------------
    def tenant(self, caller: Caller) -> TenantDirectory:
        return self.directory.tenant(caller.tenant)

    def replicated(self, tenant: TenantDirectory, object_id: str) -> bool:
        """Whether an object created through the API is past the replication delay."""
        created = tenant.created_at.get(object_id)
        if created is None:
            return True
        if self.clock() - created >= self.config.replication_delay:
            del tenant.created_at[object_id]  # replicated for good
            return True
        return False

    def visible_user(self, tenant: TenantDirectory, key: str) -> dict[str, Any]:
        """GET by id or userPrincipalName: 404 until the user has replicated."""
        user = tenant.get_user(key)
        if not self.replicated(tenant, user["id"]):
            raise not_found(key)
        return user

    def visible_group(self, tenant: TenantDirectory, key: str) -> dict[str, Any]:
        group = tenant.get_group(key)
        if not self.replicated(tenant, group["id"]):
            raise not_found(key)
        return group

    def verified_domains(self, tenant: TenantDirectory) -> set[str]:
        return tenant.verified_domains or {d.lower() for d in self.config.verified_domains}

    def json_result(self, status: int, body: Any) -> Result:
        return Result(status, body, {"Content-Type": JSON_ODATA})

    def body_object(self, op: Operation) -> dict[str, Any]:
        if not isinstance(op.body, dict):
            raise GraphError(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set "
                "and payload is of valid JSON format.",
            )
        return op.body

    def user_select(self, caller: Caller, options: dict[str, str]) -> list[str] | None:
        if "$select" not in options:
            return None
        names = parse_select(options["$select"], USER_PROPERTIES, "User")
        for name in names:
            if name in USER_NEVER_RETURNED:
                raise bad_request(f"Property '{name}' cannot be selected.", code="BadRequest")
        if (
            self.config.require_lifecycle_role
            and "employeeLeaveDateTime" in names
            and not caller.roles & LIFECYCLE_READ
        ):
            raise forbidden()
        return names

    def shape_user(
        self,
        user: dict[str, Any],
        select: list[str] | None,
        tenant: TenantDirectory | None = None,
        expand: str | None = None,
    ) -> dict[str, Any]:
        names = select if select is not None else list(USER_DEFAULT_SELECT)
        out = {name: user.get(name) for name in names}
        if expand == "memberOf" and tenant is not None:
            out["memberOf"] = [
                {
                    "@odata.type": "#microsoft.graph.group",
                    "id": g["id"],
                    "displayName": g["displayName"],
                }
                # $expand returns at most 20 related objects and no next link: "$expand ...
                # only returns up to 20 objects" (https://learn.microsoft.com/graph/query-parameters
                # #expand-parameter); a caller must page /users/{id}/memberOf for the rest.
                for g in tenant.member_groups(user["id"])[:EXPAND_LIMIT]
            ]
        return out

    def shape_group(self, group: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
        names = select if select is not None else list(GROUP_DEFAULT_SELECT)
        return {name: group.get(name) for name in names}

    def context(
        self, op: Operation, entity_set: str, select: list[str] | None, entity: bool = False
    ) -> str:
        sel = f"({','.join(select)})" if select else ""
        return f"{op.api_base}/$metadata#{entity_set}{sel}" + ("/$entity" if entity else "")

    def check_expand(self, options: dict[str, str]) -> str | None:
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
                f"Could not find a property named '{expand.strip()}' on type "
                "'microsoft.graph.user'.",
            )
        return "memberOf"

    def check_count(self, op: Operation, options: dict[str, str]) -> bool:
        value = options.get("$count")
        if value is None:
            return False
        if value.lower() not in ("true", "false"):
            raise GraphError(400, "BadRequest", f"Invalid value '{value}' for $count.")
        if value.lower() == "true" and op.headers.get("consistencylevel", "").lower() != "eventual":
            raise bad_request("$count is not currently supported.")
        return value.lower() == "true"

    def compile_filter(
        self,
        op: Operation,
        text: str | None,
        schema: dict[str, str],
        type_name: str,
        count: bool,
        caller: Caller,
    ) -> Callable[[dict[str, Any]], bool]:
        if text is None:
            return lambda _obj: True
        predicate, info = parse_filter(text, schema, type_name)
        if info.advanced and self.config.require_advanced_query_headers:
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
            self.config.require_lifecycle_role
            and "employeeleavedatetime" in text.lower()
            and not caller.roles & LIFECYCLE_READ
        ):
            raise forbidden()
        return predicate

    def new_token(self) -> str:
        return secrets.token_urlsafe(24)

    def link(self, op: Operation, path: str, params: dict[str, str]) -> str:
        return f"{op.api_base}/{path}?" + urlencode(params, quote_via=quote, safe="$,'()")

    def take_page_state(self, token: str, caller: Caller, kind: str) -> PageState:
        state = self.pages.get(token)
        now = self.clock()
        if (
            state is None
            or state.tenant != caller.tenant
            or not state.kind.startswith(kind)
            or now - state.created > self.config.skiptoken_lifetime
        ):
            raise GraphError(
                400,
                "Directory_ExpiredPageToken",
                "The specified page token value has expired and can no longer be included in "
                "your request.",
            )
        return state

    def page_of(
        self,
        op: Operation,
        caller: Caller,
        objects: list[dict[str, Any]],
        state: PageState,
        path: str,
        link_params: dict[str, str],
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Cursor paging by object id: stable while objects change between pages."""
        ordered = sorted((o for o in objects if o["id"] > state.cursor), key=lambda o: o["id"])
        page = ordered[: state.top]
        more = len(ordered) > len(page)
        if more and self.faults.chance(self.faults.config.empty_page_rate):
            page, more = [], True
            self.stats.faults["empty_page"] += 1
        if not more:
            return page, None
        token = self.new_token()
        self.pages[token] = PageState(
            state.tenant,
            state.app_id,
            state.kind,
            state.filter,
            state.select,
            state.top,
            state.count,
            page[-1]["id"] if page else state.cursor,
            self.clock(),
        )
        return page, self.link(op, path, {**link_params, "$skiptoken": token})

    def list_params(self, state: PageState) -> dict[str, str]:
        params: dict[str, str] = {"$top": str(state.top)} if state.top else {}
        if state.select:
            params["$select"] = ",".join(state.select)
        if state.filter:
            params["$filter"] = state.filter
        if state.count:
            params["$count"] = "true"
        return params

    # -- users ------------------------------------------------------------------------------
    def list_state(
        self,
        op: Operation,
        caller: Caller,
        options: dict[str, str],
        kind: str,
        select: Callable[[], list[str] | None],
    ) -> PageState:
        """The paging state of a list request: from its $skiptoken, or a first page's."""
        if "$skiptoken" in options:
            return self.take_page_state(options["$skiptoken"], caller, kind)
        count = self.check_count(op, options)
        top = (
            parse_top(options["$top"], self.config.max_page_size)
            if "$top" in options
            else self.config.default_page_size
        )
        return PageState(
            caller.tenant,
            caller.app_id,
            kind,
            options.get("$filter"),
            select(),
            top,
            count,
            "",
            self.clock(),
        )

    def list_users(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.tenant(caller)
        expand = self.check_expand(options)
        state = self.list_state(
            op, caller, options, "users", lambda: self.user_select(caller, options)
        )
        count = state.count
        predicate = self.compile_filter(op, state.filter, USER_PROPERTIES, "User", count, caller)
        matching = [
            u for u in tenant.users.values() if predicate(u) and self.replicated(tenant, u["id"])
        ]
        page, next_link = self.page_of(
            op, caller, matching, state, "users", self.list_params(state)
        )
        body: dict[str, Any] = {"@odata.context": self.context(op, "users", state.select)}
        if count:
            body["@odata.count"] = len(matching)
        if next_link:
            body["@odata.nextLink"] = next_link
        body["value"] = [self.shape_user(u, state.select, tenant, expand) for u in page]
        return self.json_result(200, body)

    def get_user(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.tenant(caller)
        select = self.user_select(caller, options)
        expand = self.check_expand(options)
        user = self.visible_user(tenant, args[0])
        body = {"@odata.context": self.context(op, "users", select, entity=True)}
        body.update(self.shape_user(user, select, tenant, expand))
        return self.json_result(200, body)

    def check_lifecycle_write(self, caller: Caller, body: dict[str, Any]) -> None:
        if (
            self.config.require_lifecycle_role
            and "employeeLeaveDateTime" in body
            and not caller.roles & LIFECYCLE_WRITE
        ):
            raise forbidden()

    def create_user(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        body = self.body_object(op)
        self.check_lifecycle_write(caller, body)
        upn = str(body.get("userPrincipalName") or "").lower()
        key = f"{caller.tenant}/{upn}"
        self.stats.user_create_attempts[key] += 1
        tenant = self.tenant(caller)
        self.check_user_rules(tenant, body, creating=True)
        user = tenant.create_user(body)
        tenant.created_at[user["id"]] = self.clock()
        self.stats.user_creates[key] += 1
        out = {"@odata.context": self.context(op, "users", None, entity=True)}
        out.update(self.shape_user(user, None))
        result = self.json_result(201, out)
        result.headers["Location"] = f"{op.api_base}/users/{user['id']}"
        return result

    def check_user_rules(
        self, tenant: TenantDirectory, body: dict[str, Any], *, creating: bool
    ) -> None:
        """UPN syntax and verified domain, password policy (POST /users; PATCH when given).

        A missing required property is left to the directory's own check (its message names
        the property)."""
        upn = body.get("userPrincipalName")
        if upn not in (None, "") or (not creating and "userPrincipalName" in body):
            check_upn(upn, self.verified_domains(tenant))
        profile = body.get("passwordProfile")
        if isinstance(profile, dict) and profile.get("password") not in (None, ""):
            check_password(profile["password"])

    def update_user(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        body = self.body_object(op)
        self.check_lifecycle_write(caller, body)
        tenant = self.tenant(caller)
        self.check_user_rules(tenant, body, creating=False)
        user = tenant.update_user(args[0], body)
        self.stats.user_updates[f"{caller.tenant}/{user['id']}"] += 1
        return Result(204)

    def delete_user(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        user = self.tenant(caller).delete_user(args[0])
        self.stats.user_deletes[f"{caller.tenant}/{user['id']}"] += 1
        return Result(204)

    def revoke_sessions(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        user = self.tenant(caller).get_user(args[0])
        self.stats.revocations[f"{caller.tenant}/{user['id']}"] += 1
        return self.json_result(
            200, {"@odata.context": f"{op.api_base}/$metadata#Edm.Boolean", "value": True}
        )

    def user_member_of(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.tenant(caller)
        user = self.visible_user(tenant, args[0])
        value = [
            {"@odata.type": "#microsoft.graph.group", **self.shape_group(g, None)}
            for g in tenant.member_groups(user["id"])
        ]
        return self.json_result(
            200, {"@odata.context": f"{op.api_base}/$metadata#directoryObjects", "value": value}
        )

    # -- delta --------------------------------------------------------------------------------
    def users_delta(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.tenant(caller)
        now = self.clock()
        for unsupported in ("$top", "$count", "$expand"):
            if unsupported in options:
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    f"The query option '{unsupported}' is not supported with delta queries.",
                )
        if "$skiptoken" in options:
            state = self.take_page_state(options["$skiptoken"], caller, "delta")
            if state.created < self.delta_cutoff:
                raise self.sync_state_not_found()
        elif options.get("$deltatoken", "").lower() == "latest":
            select = self.user_select(caller, options)
            return self.delta_final(op, caller, [], select, tenant.seq)
        else:
            select = self.user_select(caller, options)
            if "$deltatoken" in options:
                delta = self.deltas.get(options["$deltatoken"])
                if (
                    delta is None
                    or delta.tenant != caller.tenant
                    or now - delta.issued > self.config.delta_token_lifetime
                    or delta.issued < self.delta_cutoff
                ):
                    raise self.sync_state_not_found()
                if "$select" not in options:
                    select = delta.select
                since = delta.since
                changed = [(uid, False, seq) for uid, seq in tenant.user_seq.items() if seq > since]
                changed += [(uid, True, seq) for uid, seq in tenant.removed.items() if seq > since]
                changed.sort(key=lambda item: item[2])
                ids = [(uid, removed) for uid, removed, _ in changed]
            else:
                ids = [(uid, False) for uid in sorted(tenant.users)]
            if "$filter" in options:
                raise GraphError(
                    400,
                    "Request_UnsupportedQuery",
                    "$filter is supported on users/delta only for id eq.",
                )
            page_size = self.page_size_preference(op) or self.config.delta_page_size
            state = PageState(
                caller.tenant,
                caller.app_id,
                "delta",
                None,
                select,
                page_size,
                False,
                "",
                now,
                ids=ids,
                offset=0,
                delta_seq=tenant.seq,
            )
        ids = state.ids or []
        page_ids = ids[state.offset : state.offset + state.top]
        next_offset = state.offset + len(page_ids)
        if next_offset < len(ids) and self.faults.chance(self.faults.config.empty_page_rate):
            page_ids, next_offset = [], state.offset
            self.stats.faults["empty_page"] += 1
        value = []
        for uid, removed in page_ids:
            user = tenant.users.get(uid)
            if removed or user is None:
                value.append({"id": uid, "@removed": {"reason": "changed"}})
            else:
                shaped = self.shape_user(user, state.select)
                shaped["id"] = uid
                value.append(shaped)
        if next_offset < len(ids):
            token = self.new_token()
            self.pages[token] = PageState(
                state.tenant,
                state.app_id,
                "delta",
                None,
                state.select,
                state.top,
                False,
                "",
                state.created,
                ids=ids,
                offset=next_offset,
                delta_seq=state.delta_seq,
            )
            return self.json_result(
                200,
                {
                    "@odata.context": self.context(op, "users", state.select),
                    "@odata.nextLink": f"{op.api_base}/users/delta?$skiptoken={token}",
                    "value": value,
                },
            )
        return self.delta_final(op, caller, value, state.select, state.delta_seq)

    def delta_final(
        self,
        op: Operation,
        caller: Caller,
        value: list[dict[str, Any]],
        select: list[str] | None,
        seq: int,
    ) -> Result:
        token = self.new_token()
        self.deltas[token] = DeltaState(caller.tenant, caller.app_id, seq, select, self.clock())
        return self.json_result(
            200,
            {
                "@odata.context": self.context(op, "users", select),
                "@odata.deltaLink": f"{op.api_base}/users/delta?$deltatoken={token}",
                "value": value,
            },
        )

    def sync_state_not_found(self) -> GraphError:
        return GraphError(
            self.config.delta_expired_status,
            self.config.delta_expired_code,
            "The sync state generation is not found. The delta token is expired and data must "
            "be synchronized again.",
        )

    def page_size_preference(self, op: Operation) -> int | None:
        prefer = op.headers.get("prefer", "")
        for part in prefer.split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
                return max(1, min(int(value.strip()), self.config.max_page_size))
        return None

    # -- groups -------------------------------------------------------------------------------
    def list_groups(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.tenant(caller)
        state = self.list_state(
            op,
            caller,
            options,
            "groups",
            lambda: (
                parse_select(options["$select"], GROUP_PROPERTIES, "Group")
                if "$select" in options
                else None
            ),
        )
        predicate = self.compile_filter(
            op, state.filter, GROUP_PROPERTIES, "Group", state.count, caller
        )
        matching = [
            g for g in tenant.groups.values() if predicate(g) and self.replicated(tenant, g["id"])
        ]
        page, next_link = self.page_of(
            op, caller, matching, state, "groups", self.list_params(state)
        )
        body: dict[str, Any] = {"@odata.context": self.context(op, "groups", state.select)}
        if state.count:
            body["@odata.count"] = len(matching)
        if next_link:
            body["@odata.nextLink"] = next_link
        body["value"] = [self.shape_group(g, state.select) for g in page]
        return self.json_result(200, body)

    def get_group(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        select = (
            parse_select(options["$select"], GROUP_PROPERTIES, "Group")
            if "$select" in options
            else None
        )
        group = self.visible_group(self.tenant(caller), args[0])
        body = {"@odata.context": self.context(op, "groups", select, entity=True)}
        body.update(self.shape_group(group, select))
        return self.json_result(200, body)

    def create_group(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        body = dict(self.body_object(op))
        binds = body.pop("members@odata.bind", None)
        tenant = self.tenant(caller)
        member_ids = self.bound_ids(op, tenant, binds)
        group = tenant.create_group(body)
        tenant.created_at[group["id"]] = self.clock()
        for member_id in member_ids:
            tenant.members[group["id"]][member_id] = None
        out = {"@odata.context": self.context(op, "groups", None, entity=True)}
        out.update(self.shape_group(group, None))
        return self.json_result(201, out)

    def update_group(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        """PATCH /groups/{id}; ``members@odata.bind`` adds up to 20 members in this one write,
        all or nothing (learn.microsoft.com/graph/api/group-update, example "Add multiple
        members to a group in a single request")."""
        body = dict(self.body_object(op))
        binds = body.pop("members@odata.bind", None)
        tenant = self.tenant(caller)
        group = tenant.get_group(args[0])
        if not self.replicated(tenant, group["id"]):
            if binds is not None:
                raise bad_request(NOT_REPLICATED)
            raise not_found(args[0])
        if body and not caller.roles & WRITE_GROUPS:
            raise forbidden()
        member_ids = self.bound_ids(op, tenant, binds)
        existing = tenant.members[group["id"]]
        if any(m in existing for m in member_ids):
            raise bad_request(ALREADY_MEMBERS)
        if body:
            tenant.update_group(group["id"], body)
        for member_id in member_ids:
            existing[member_id] = None
            self.stats.member_adds[f"{caller.tenant}/{group['id']}/{member_id}"] += 1
        return Result(204)

    def bound_ids(self, op: Operation, tenant: TenantDirectory, binds: Any) -> list[str]:
        """Object ids of a ``members@odata.bind`` list; 400 for any that is not there yet."""
        if binds is None:
            return []
        if not isinstance(binds, list):
            raise bad_request("Invalid URL format specified in @odata.bind for members.")
        if len(binds) > self.config.max_members_bind:
            # Graph's limit (group-update); the wording is ours.
            raise bad_request(
                f"The request contains {len(binds)} member references, more than "
                f"{self.config.max_members_bind}; add members in chunks of at most "
                f"{self.config.max_members_bind}."
            )
        ids: list[str] = []
        for ref in binds:
            kind, key = reference_id(ref, op.api_base, "@odata.bind for members")
            member_id = self.referenced_id(tenant, kind, key)
            if member_id is None:
                raise bad_request(NOT_REPLICATED)
            if member_id in ids:
                # The docs are silent on a member named twice: refused (the stricter reading).
                raise bad_request(ALREADY_MEMBERS)
            ids.append(member_id)
        return ids

    def referenced_id(self, tenant: TenantDirectory, kind: str, key: str) -> str | None:
        """The id of a referenced, replicated object (``users`` also by UPN), else None."""
        found: dict[str, Any] | None = None
        if kind in ("users", "directoryObjects"):
            found = tenant.find_user(key) if kind == "users" else tenant.users.get(key)
        if found is None and kind in ("groups", "directoryObjects"):
            found = tenant.groups.get(key)
        if found is None or not self.replicated(tenant, found["id"]):
            return None
        return str(found["id"])

    def delete_group(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        self.tenant(caller).delete_group(args[0])
        return Result(204)

    def list_members(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.tenant(caller)
        group = self.visible_group(tenant, args[0])
        kind = f"members:{group['id']}"
        state = self.list_state(
            op, caller, options, kind, lambda: self.user_select(caller, options)
        )
        if state.filter is not None:
            predicate = self.compile_filter(
                op, state.filter, USER_PROPERTIES, "User", state.count, caller
            )
        else:

            def predicate(_obj: dict[str, Any]) -> bool:
                return True

        objects: list[dict[str, Any]] = []
        for member_id in tenant.members[group["id"]]:
            obj = tenant.users.get(member_id) or tenant.groups.get(member_id)
            if obj is not None and predicate(obj):
                objects.append(obj)
        page, next_link = self.page_of(
            op, caller, objects, state, f"groups/{group['id']}/members", self.list_params(state)
        )
        value = []
        for obj in page:
            if obj["id"] in tenant.users:
                value.append(
                    {"@odata.type": "#microsoft.graph.user", **self.shape_user(obj, state.select)}
                )
            else:
                value.append(
                    {"@odata.type": "#microsoft.graph.group", **self.shape_group(obj, None)}
                )
        body: dict[str, Any] = {
            "@odata.context": f"{op.api_base}/$metadata#directoryObjects",
        }
        if state.count:
            body["@odata.count"] = len(objects)
        if next_link:
            body["@odata.nextLink"] = next_link
        body["value"] = value
        return self.json_result(200, body)

    def add_member(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        """POST /groups/{id}/members/$ref (learn.microsoft.com/graph/api/group-post-members).

        A group or member that does not exist at all answers 404; one created less than
        ``replication_delay`` ago answers Graph's 400 "... do not exist." (retry later)."""
        body = self.body_object(op)
        ref = body.get("@odata.id")
        if ref is None:
            raise bad_request("Property '@odata.id' value is required but is empty or missing.")
        kind, key = reference_id(ref, op.api_base, "@odata.id")
        tenant = self.tenant(caller)
        group = tenant.get_group(args[0])
        if not self.replicated(tenant, group["id"]):
            raise bad_request(NOT_REPLICATED)
        member_id = self.referenced_id(tenant, kind, key)
        if member_id is None:
            exists = tenant.find_user(key) if kind == "users" else None
            if exists is None and not tenant.object_exists(key):
                raise not_found(key)
            raise bad_request(NOT_REPLICATED)
        tenant.add_member(group["id"], member_id)
        self.stats.member_adds[f"{caller.tenant}/{args[0]}/{member_id}"] += 1
        return Result(204)

    def remove_member(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.tenant(caller)
        tenant.remove_member(tenant.get_group(args[0])["id"], args[1])
        self.stats.member_removes[f"{caller.tenant}/{args[0]}/{args[1]}"] += 1
        return Result(204)


def error_result(
    status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> Result:
    return Result(status, error_body(code, message, request_id), dict(headers or {}))
