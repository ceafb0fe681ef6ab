"""``/users``: list, get, create, update, delete, ``revokeSignInSessions`` and ``memberOf``.

Creates follow ``POST /users`` (learn.microsoft.com/graph/api/user-post-users): verified UPN
domain, UPN characters and the password policy (``validation.py``); a new user is invisible
until it has replicated (``GraphConfig.replication_delay``).
"""

from __future__ import annotations

from typing import Any

from .context import GraphContext
from .directory import TenantDirectory
from .errors import forbidden
from .operation import (
    Caller,
    Operation,
    Result,
    body_object,
    context_url,
    json_result,
)
from .paging import Pager
from .permissions import LIFECYCLE_WRITE
from .query import check_expand, compile_filter, user_select
from .schema import USER_PROPERTIES
from .shaping import shape_group, shape_user
from .validation import check_password, check_upn


class UserHandlers:
    def __init__(self, ctx: GraphContext, pager: Pager) -> None:
        self.ctx = ctx
        self.pager = pager

    def list_users(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        ctx = self.ctx
        tenant = ctx.tenant(caller)
        expand = check_expand(options)
        state = self.pager.list_state(
            op, caller, options, "users", lambda: user_select(ctx.config, caller, options)
        )
        count = state.count
        predicate = compile_filter(
            ctx.config, op, state.filter, USER_PROPERTIES, "User", count, caller
        )
        indexed = tenant.users_with(*predicate.equals) if predicate.equals else None
        candidates = tenant.users.values() if indexed is None else indexed
        matching = [u for u in candidates if predicate(u) and ctx.replicated(tenant, u["id"])]
        page, next_link = self.pager.page_of(op, matching, state, "users")
        body: dict[str, Any] = {"@odata.context": context_url(op, "users", state.select)}
        if count:
            body["@odata.count"] = len(matching)
        if next_link:
            body["@odata.nextLink"] = next_link
        body["value"] = [shape_user(u, state.select, tenant, expand) for u in page]
        return json_result(200, body)

    def get_user(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.ctx.tenant(caller)
        select = user_select(self.ctx.config, caller, options)
        expand = check_expand(options)
        user = self.ctx.visible_user(tenant, args[0])
        body = {"@odata.context": context_url(op, "users", select, entity=True)}
        body.update(shape_user(user, select, tenant, expand))
        return json_result(200, body)

    def check_lifecycle_write(self, caller: Caller, body: dict[str, Any]) -> None:
        if (
            self.ctx.config.require_lifecycle_role
            and "employeeLeaveDateTime" in body
            and not caller.roles & LIFECYCLE_WRITE
        ):
            raise forbidden()

    def create_user(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        ctx = self.ctx
        body = body_object(op)
        self.check_lifecycle_write(caller, body)
        upn = str(body.get("userPrincipalName") or "").lower()
        key = f"{caller.tenant}/{upn}"
        ctx.stats.user_create_attempts[key] += 1
        tenant = ctx.tenant(caller)
        self.check_user_rules(tenant, body, creating=True)
        user = tenant.create_user(body)
        tenant.created_at[user["id"]] = ctx.clock()
        ctx.stats.user_creates[key] += 1
        out = {"@odata.context": context_url(op, "users", None, entity=True)}
        out.update(shape_user(user, None))
        result = json_result(201, out)
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
            check_upn(upn, self.ctx.verified_domains(tenant))
        profile = body.get("passwordProfile")
        if isinstance(profile, dict) and profile.get("password") not in (None, ""):
            check_password(profile["password"])

    def update_user(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        body = body_object(op)
        self.check_lifecycle_write(caller, body)
        tenant = self.ctx.tenant(caller)
        self.check_user_rules(tenant, body, creating=False)
        user = tenant.update_user(args[0], body)
        self.ctx.stats.user_updates[f"{caller.tenant}/{user['id']}"] += 1
        return Result(204)

    def delete_user(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        user = self.ctx.tenant(caller).delete_user(args[0])
        self.ctx.stats.user_deletes[f"{caller.tenant}/{user['id']}"] += 1
        return Result(204)

    def revoke_sessions(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        user = self.ctx.tenant(caller).get_user(args[0])
        self.ctx.stats.revocations[f"{caller.tenant}/{user['id']}"] += 1
        return json_result(
            200, {"@odata.context": f"{op.api_base}/$metadata#Edm.Boolean", "value": True}
        )

    def user_member_of(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.ctx.tenant(caller)
        user = self.ctx.visible_user(tenant, args[0])
        value = [
            {"@odata.type": "#microsoft.graph.group", **shape_group(g, None)}
            for g in tenant.member_groups(user["id"])
        ]
        return json_result(
            200, {"@odata.context": f"{op.api_base}/$metadata#directoryObjects", "value": value}
        )
