"""Server-side paging: ``$top``, ``@odata.nextLink`` and its opaque ``$skiptoken``.

Pages follow a cursor (the last object id returned), so they stay stable while objects change
between pages; a page token expires after ``GraphConfig.skiptoken_lifetime``
(learn.microsoft.com/graph/paging). The faults may answer an empty page with a next link, as
Graph may.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from .context import GraphContext
from .errors import GraphError
from .odata import parse_top
from .operation import Caller, Operation
from .query import check_count


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


def new_token() -> str:
    return secrets.token_urlsafe(24)


def link(op: Operation, path: str, params: dict[str, str]) -> str:
    return f"{op.api_base}/{path}?" + urlencode(params, quote_via=quote, safe="$,'()")


def list_params(state: PageState) -> dict[str, str]:
    """The query of a next link: the first page's options, which the token stands for."""
    params: dict[str, str] = {"$top": str(state.top)} if state.top else {}
    if state.select:
        params["$select"] = ",".join(state.select)
    if state.filter:
        params["$filter"] = state.filter
    if state.count:
        params["$count"] = "true"
    return params


class Pager:
    """The page tokens handed out, and how a list request reads and continues them."""

    def __init__(self, ctx: GraphContext) -> None:
        self.ctx = ctx
        self.pages: dict[str, PageState] = {}

    def reset(self) -> None:
        self.pages.clear()

    def take(self, token: str, caller: Caller, kind: str) -> PageState:
        """The state a ``$skiptoken`` stands for; Graph's 400 when unknown or expired."""
        state = self.pages.get(token)
        now = self.ctx.clock()
        if (
            state is None
            or state.tenant != caller.tenant
            or not state.kind.startswith(kind)
            or now - state.created > self.ctx.config.skiptoken_lifetime
        ):
            raise GraphError(
                400,
                "Directory_ExpiredPageToken",
                "The specified page token value has expired and can no longer be included in "
                "your request.",
            )
        return state

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
            return self.take(options["$skiptoken"], caller, kind)
        config = self.ctx.config
        count = check_count(op, options)
        top = (
            parse_top(options["$top"], config.max_page_size)
            if "$top" in options
            else config.default_page_size
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
            self.ctx.clock(),
        )

    def page_of(
        self,
        op: Operation,
        objects: list[dict[str, Any]],
        state: PageState,
        path: str,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Cursor paging by object id: stable while objects change between pages."""
        ordered = sorted((o for o in objects if o["id"] > state.cursor), key=lambda o: o["id"])
        page = ordered[: state.top]
        more = len(ordered) > len(page)
        faults = self.ctx.faults
        if more and faults.chance(faults.config.empty_page_rate):
            page, more = [], True
            self.ctx.stats.faults["empty_page"] += 1
        if not more:
            return page, None
        token = new_token()
        self.pages[token] = PageState(
            state.tenant,
            state.app_id,
            state.kind,
            state.filter,
            state.select,
            state.top,
            state.count,
            page[-1]["id"] if page else state.cursor,
            self.ctx.clock(),
        )
        return page, link(op, path, {**list_params(state), "$skiptoken": token})
