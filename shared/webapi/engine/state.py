"""The engine's bookkeeping: one ``Op`` per operation, one ``Item`` per request sent.

An ``Item`` is what takes one slot of a batch (or one direct request):

- ``single``: the operation's own request;
- ``members``: member adds to one group, coalesced into one
  ``PATCH /groups/{id}`` with ``members@odata.bind`` (one member: sent as its own
  ``POST …/members/$ref``);
- ``readback``: the GET that resolves a create conflict (see ``readback.py``).
"""

from __future__ import annotations

import enum
from typing import Any

from shared.webapi.operations import Cost, Prepared, Result, estimate_cost

__all__ = ["Item", "Kind", "Op", "Phase"]

_NONE: list[Op] = []  # shared, never appended to
_NO_REFS: set[str] = set()


class Phase(enum.Enum):
    SEND = "send"  # the operation's own request is (re)sent
    READBACK = "readback"  # a create conflict is being resolved by reading the object back


class Kind(enum.Enum):
    SINGLE = "single"
    MEMBERS = "members"
    READBACK = "readback"


class Op:
    """One validated operation and everything the run knows about it."""

    __slots__ = (
        "after_post",
        "attempts",
        "body_override",
        "conflict",
        "dependants",
        "deps",
        "final",
        "free_sends",
        "isolate",
        "last_body",
        "last_code",
        "last_error",
        "last_status",
        "maybe_applied",
        "member",
        "not_before",
        "phase",
        "prep",
        "queued",
        "readback_sends",
        "replication_since",
        "replication_tries",
        "solo",
        "throttles",
        "unknown",
        "waiting",
    )

    def __init__(self, prep: Prepared, member: tuple[str, str] | None) -> None:
        self.prep = prep
        self.member = member  # (group id, @odata.id) of a coalescable member add
        self.body_override: Any = None  # the body with the created object's id referenced
        self.attempts = 0  # sends of the operation's own request
        self.throttles = 0  # of them answered 429: bounded by time, not by max_attempts
        self.free_sends = 0  # sends that do not count (a refused bind, replication delay)
        self.final: Result | None = None
        self.not_before = 0.0
        self.unknown = False  # a send's outcome was unknown (reported on a final failure)
        self.maybe_applied = False  # unknown outcome or 429: a resend may find it done
        self.last_status: int | None = None
        self.last_body: Any = None
        self.last_error: str | None = None
        self.last_code: str | None = None
        self.deps: list[Op] = _NONE  # lists only for operations with dependencies: fewer
        self.dependants: list[Op] = _NONE  # objects for the garbage collector to walk
        self.waiting = 0  # dependencies that have not succeeded yet
        self.after_post = False  # depends (transitively) on a POST that succeeded in this run
        self.isolate = False  # sent alone, after a batch answered 400 as a whole
        self.solo = False  # never coalesced again (its group's bind was refused)
        self.phase = Phase.SEND
        self.conflict: tuple[int, Any] | None = None  # (status, body) of a create conflict
        self.readback_sends = 0
        self.replication_since: float | None = None  # first "does not exist" answer
        self.replication_tries = 0
        self.queued = 0  # sequence number of its live ready-queue entry (0: not queued)

    @property
    def id(self) -> str:
        return self.prep.id

    @property
    def index(self) -> int:
        return self.prep.index


class Item:
    """One request of a batch (or one direct request) and the operations it settles."""

    __slots__ = ("group", "kind", "ops", "refs")

    def __init__(self, kind: Kind, ops: list[Op], group: str | None = None) -> None:
        self.kind = kind
        self.ops = ops
        self.group = group
        self.refs: set[str] = (
            {o.member[1] for o in ops if o.member is not None} if kind is Kind.MEMBERS else _NO_REFS
        )

    @property
    def coalesced(self) -> bool:
        return self.kind is Kind.MEMBERS and len(self.ops) > 1

    def request(self) -> tuple[str, str, Any, dict[str, str]]:
        """(method, relative url, body, headers) of this item."""
        if self.kind is Kind.READBACK:
            ident = self.ops[0].prep.op.idempotency
            assert ident is not None
            return "GET", ident.path, None, dict(ident.headers)
        if self.coalesced:
            assert self.group is not None
            refs = [o.member[1] for o in self.ops if o.member is not None]
            return (
                "PATCH",
                f"/groups/{self.group}",
                {"members@odata.bind": refs},
                {"Content-Type": "application/json"},
            )
        op = self.ops[0]
        prep = op.prep
        body = op.body_override if op.body_override is not None else prep.op.body
        return prep.method, prep.url, body, dict(prep.op.headers)

    @property
    def cost(self) -> Cost:
        if self.kind is Kind.READBACK:
            method, url, _, _ = self.request()
            return estimate_cost(method, url)
        if self.coalesced:
            return Cost(writes=1, resource_units=1)  # one write for up to 20 members
        return self.ops[0].prep.cost

    @property
    def resendable(self) -> bool:
        return self.kind is not Kind.SINGLE or self.ops[0].prep.resendable
