"""``GET /users/delta``: the initial sync, its pages, and the changes since a delta token.

As learn.microsoft.com/graph/delta-query-overview describes: pages carry
``@odata.nextLink`` (``$skiptoken``), the last page ``@odata.deltaLink`` (``$deltatoken``);
``$deltatoken=latest`` returns only a delta link; a removed object comes back as
``{"id", "@removed"}``. An expired token answers ``GraphConfig.delta_expired_status`` with
``delta_expired_code`` (``syncStateNotFound`` by default); ``$top``, ``$count``, ``$expand`` and
``$filter`` are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .context import GraphContext
from .directory import TenantDirectory
from .errors import GraphError
from .operation import Caller, Operation, Result, context_url, json_result
from .paging import Pager, PageState, new_token
from .query import page_size_preference, user_select
from .shaping import shape_user


@dataclass
class DeltaState:
    tenant: str
    app_id: str
    since: int
    select: list[str] | None
    issued: float


class DeltaHandlers:
    def __init__(self, ctx: GraphContext, pager: Pager) -> None:
        self.ctx = ctx
        self.pager = pager
        self.deltas: dict[str, DeltaState] = {}
        self.cutoff = float("-inf")

    def reset(self) -> None:
        self.deltas.clear()
        self.cutoff = float("-inf")

    def expire_tokens(self) -> None:
        """Every delta token (and delta page token) issued so far is expired from now on."""
        self.cutoff = self.ctx.clock()

    def users_delta(
        self, op: Operation, caller: Caller, options: dict[str, str], args: list[str]
    ) -> Result:
        tenant = self.ctx.tenant(caller)
        now = self.ctx.clock()
        refuse_unsupported(options)
        if "$skiptoken" in options:
            state = self.pager.take(options["$skiptoken"], caller, "delta")
            if state.created < self.cutoff:
                raise self.sync_state_not_found()
        elif options.get("$deltatoken", "").lower() == "latest":
            select = user_select(self.ctx.config, caller, options)
            return self.delta_final(op, caller, [], select, tenant.seq)
        else:
            state = self.first_state(op, caller, options, tenant, now)
        return self.serve_page(op, caller, tenant, state)

    def first_state(
        self,
        op: Operation,
        caller: Caller,
        options: dict[str, str],
        tenant: TenantDirectory,
        now: float,
    ) -> PageState:
        """The paging state of a round's first page: every user, or the changes since the
        delta token."""
        select = user_select(self.ctx.config, caller, options)
        if "$deltatoken" in options:
            delta = self.valid_delta(options["$deltatoken"], caller, now)
            if "$select" not in options:
                select = delta.select
            ids = changes_since(tenant, delta.since)
        else:
            ids = [(uid, False) for uid in sorted(tenant.users)]
        if "$filter" in options:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "$filter is supported on users/delta only for id eq.",
            )
        page_size = page_size_preference(self.ctx.config, op) or self.ctx.config.delta_page_size
        return PageState(
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

    def valid_delta(self, token: str, caller: Caller, now: float) -> DeltaState:
        delta = self.deltas.get(token)
        if (
            delta is None
            or delta.tenant != caller.tenant
            or now - delta.issued > self.ctx.config.delta_token_lifetime
            or delta.issued < self.cutoff
        ):
            raise self.sync_state_not_found()
        return delta

    def serve_page(
        self, op: Operation, caller: Caller, tenant: TenantDirectory, state: PageState
    ) -> Result:
        """One page of the round; a next link while more remain, else the delta link."""
        ids = state.ids or []
        page_ids = ids[state.offset : state.offset + state.top]
        next_offset = state.offset + len(page_ids)
        faults = self.ctx.faults
        if next_offset < len(ids) and faults.chance(faults.config.empty_page_rate):
            page_ids, next_offset = [], state.offset
            self.ctx.stats.faults["empty_page"] += 1
        value = [self.shape_change(tenant, uid, removed, state) for uid, removed in page_ids]
        if next_offset >= len(ids):
            return self.delta_final(op, caller, value, state.select, state.delta_seq)
        token = new_token()
        self.pager.pages[token] = PageState(
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
        return json_result(
            200,
            {
                "@odata.context": context_url(op, "users", state.select),
                "@odata.nextLink": f"{op.api_base}/users/delta?$skiptoken={token}",
                "value": value,
            },
        )

    @staticmethod
    def shape_change(
        tenant: TenantDirectory, uid: str, removed: bool, state: PageState
    ) -> dict[str, Any]:
        user = tenant.users.get(uid)
        if removed or user is None:
            return {"id": uid, "@removed": {"reason": "changed"}}
        shaped = shape_user(user, state.select)
        shaped["id"] = uid
        return shaped

    def delta_final(
        self,
        op: Operation,
        caller: Caller,
        value: list[dict[str, Any]],
        select: list[str] | None,
        seq: int,
    ) -> Result:
        token = new_token()
        self.deltas[token] = DeltaState(caller.tenant, caller.app_id, seq, select, self.ctx.clock())
        return json_result(
            200,
            {
                "@odata.context": context_url(op, "users", select),
                "@odata.deltaLink": f"{op.api_base}/users/delta?$deltatoken={token}",
                "value": value,
            },
        )

    def sync_state_not_found(self) -> GraphError:
        config = self.ctx.config
        return GraphError(
            config.delta_expired_status,
            config.delta_expired_code,
            "The sync state generation is not found. The delta token is expired and data must "
            "be synchronized again.",
        )


def refuse_unsupported(options: dict[str, str]) -> None:
    for unsupported in ("$top", "$count", "$expand"):
        if unsupported in options:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"The query option '{unsupported}' is not supported with delta queries.",
            )


def changes_since(tenant: TenantDirectory, since: int) -> list[tuple[str, bool]]:
    """(user id, removed) of every change after ``since``, in the order they happened."""
    changed = [(uid, False, seq) for uid, seq in tenant.user_seq.items() if seq > since]
    changed += [(uid, True, seq) for uid, seq in tenant.removed.items() if seq > since]
    changed.sort(key=lambda item: item[2])
    return [(uid, removed) for uid, removed, _ in changed]
