"""``sweep``: the timer's job. An incremental scan of the directory with the delta query,
and the built-in leaver policy: enabled accounts whose employeeLeaveDateTime has passed are
disabled and their sessions revoked.

The timer only *plans*: it runs the delta query from the checkpointed deltaLink (a full scan
the first time, or when the link expired), and fans the leavers out to the jobs queue as
``provision`` messages in chunks, so no invocation runs past functionTimeout however large
the directory. Queue workers apply them.

Delta reports changes only, so a leave date that passes later is remembered: accounts with a
future leave date are kept in a watch list in the checkpoint. A leaver stays on the list
until a later delta round shows it disabled; if it is still enabled an hour after it was
enqueued (a message lost or poisoned), it is enqueued again.

Crash consistency: the timer sends the plan's messages to the queue *before* it saves the
checkpoint (:func:`commit_sweep`). A sweep killed before the save leaves the old checkpoint,
so the next run replays the same delta round and finds the same leavers due (their
``enqueued`` time was never saved): they are sent again at once, not an hour later. Applying
a leaver twice changes nothing, so the sweep is resumable at any point.

One sweep at a time per tenant: before it sends anything, a run *claims* the tenant by
writing the checkpoint it read back unchanged (plus its run id) under that checkpoint's ETag
(:func:`claim_sweep`). A run that overlaps another one (a timer firing while the previous
sweep still runs, two `serve` processes) loses the claim and sends nothing: the other run
covers the same delta round. The claim does not advance the delta link, so a run killed
after claiming is replayed by the next one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.errors import DeltaTokenExpiredError, SafetyLimitError
from shared.jobs.envelope import JobMessage
from shared.storage import Checkpoint, StateStore
from shared.webapi import ApiClient

__all__ = [
    "SWEEP_SELECT",
    "SweepLimits",
    "SweepPlan",
    "SweepSource",
    "claim_sweep",
    "commit_sweep",
    "plan_sweep",
]

logger = logging.getLogger(__name__)

SWEEP_SELECT = "id,userPrincipalName,employeeId,accountEnabled,employeeLeaveDateTime"
REENQUEUE_AFTER = 3600.0  # seconds: a leaver still enabled this long after enqueueing


class SweepLimits(Protocol):
    """The two settings the sweep reads (``Settings`` and ``JobSettings`` have them)."""

    @property
    def max_changes_per_run(self) -> int: ...

    @property
    def sweep_chunk_size(self) -> int: ...


class SweepSource(Protocol):
    """What :func:`plan_sweep` needs: a tenant's API client and the limits (an ``Instance``
    is one; a test may pass a client on a fake transport)."""

    @property
    def settings(self) -> SweepLimits: ...

    def api_client(self, tenant: str | None = None) -> ApiClient: ...


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        logger.warning("sweep: ignoring malformed employeeLeaveDateTime %r", value[:40])
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


@dataclass
class SweepPlan:
    tenant: str
    run_id: str
    checkpoint: Checkpoint
    messages: list[JobMessage] = field(default_factory=list)
    due: list[str] = field(default_factory=list)
    scanned: int = 0
    full_scan: bool = False
    watched: int = 0
    previous: Checkpoint | None = None  # the checkpoint as read (with its ETag), if any

    @property
    def changes(self) -> int:
        return 2 * len(self.due)  # disable + revoke per leaver


@dataclass
class _Scan:
    watch: dict[str, dict[str, float]]
    scanned: int
    delta_link: str


async def _delta_round(client: ApiClient, previous: Checkpoint | None) -> _Scan:
    """One delta round, page by page (memory: one page plus the watch list, however large
    the directory): incremental from ``previous``'s link and watch list, else a full scan."""
    watch: dict[str, dict[str, float]] = {}
    if previous is not None:
        stored = previous.data.get("watch", {})
        if isinstance(stored, Mapping):
            watch = {
                str(k): {"leave": float(v.get("leave", 0)), "enqueued": float(v.get("enqueued", 0))}
                for k, v in stored.items()
                if isinstance(v, Mapping)
            }
        pages = client.delta_pages("/users/delta", previous.delta_link)
    else:
        pages = client.delta_pages("/users/delta", params={"$select": SWEEP_SELECT})
    scanned = 0
    async for items in pages:
        scanned += len(items)
        for item in items:
            uid = item.get("id")
            if not isinstance(uid, str):
                continue
            leave = _timestamp(item.get("employeeLeaveDateTime"))
            if "@removed" in item or item.get("accountEnabled") is False or leave is None:
                watch.pop(uid, None)
                continue
            entry = watch.get(uid)
            if entry is None or entry["leave"] != leave:
                watch[uid] = {"leave": leave, "enqueued": 0.0}
    assert pages.delta_link is not None  # the iterator raises when a round has none
    return _Scan(watch, scanned, pages.delta_link)


async def plan_sweep(
    instance: SweepSource, store: StateStore, tenant: str, *, now: float, run_id: str | None = None
) -> SweepPlan:
    """Run the delta round and decide which leavers to fan out (nothing is written yet).

    ``run_id`` names the run (its messages are ``sweep-<run_id>-<n>``); a new one by default.
    """
    settings = instance.settings
    client = instance.api_client(tenant)
    previous = await store.get_checkpoint("sweep", tenant)
    full = previous is None or not previous.delta_link
    scan: _Scan | None = None
    if not full and previous is not None:
        try:
            scan = await _delta_round(client, previous)
        except DeltaTokenExpiredError:
            logger.warning("sweep: the delta link for tenant %s expired; full scan", tenant)
            full = True
    if scan is None:
        scan = await _delta_round(client, None)
    watch = scan.watch

    due = [
        uid
        for uid, entry in watch.items()
        if entry["leave"] <= now
        and (entry["enqueued"] == 0.0 or now - entry["enqueued"] >= REENQUEUE_AFTER)
    ]
    run_id = run_id or uuid.uuid4().hex[:12]
    plan = SweepPlan(
        tenant=tenant,
        run_id=run_id,
        checkpoint=previous or Checkpoint("sweep", tenant),
        previous=previous,
        due=due,
        scanned=scan.scanned,
        full_scan=full,
        watched=len(watch),
    )
    if plan.changes > settings.max_changes_per_run:
        raise SafetyLimitError("sweep", plan.changes, settings.max_changes_per_run)
    size = settings.sweep_chunk_size
    for index in range(0, len(due), size):
        chunk = due[index : index + size]
        plan.messages.append(
            JobMessage.new(
                "provision",
                tenant,
                {"leavers": [{"id": uid} for uid in chunk]},
                correlation_id=f"sweep-{run_id}-{index // size}",
            )
        )
    for uid in due:
        watch[uid]["enqueued"] = now
    plan.checkpoint = dataclasses.replace(
        plan.checkpoint,
        delta_link=scan.delta_link,
        phase="planned",
        data={"watch": watch, "lastRun": run_id},
    )
    return plan


async def claim_sweep(store: StateStore, plan: SweepPlan) -> None:
    """Take the tenant's sweep for ``plan``'s run, before anything is sent.

    Writes the checkpoint as it was read (same delta link and watch list, plus
    ``claim: run id``) under its ETag — or creates an empty one if there was none — and
    keeps the new ETag for :func:`commit_sweep`. Raises
    :class:`~shared.storage.StateConflictError` when another run wrote the checkpoint since
    this one read it (that run covers the same round)."""
    previous = plan.previous
    if previous is None:
        claim = Checkpoint("sweep", plan.tenant, data={"claim": plan.run_id})
    else:
        claim = dataclasses.replace(previous, data={**previous.data, "claim": plan.run_id})
    written = await store.put_checkpoint(claim)  # conditional: create-only or If-Match
    plan.checkpoint = dataclasses.replace(plan.checkpoint, etag=written.etag)


async def commit_sweep(store: StateStore, plan: SweepPlan) -> None:
    """Save the new delta link and watch list — only after the plan's messages were sent
    (under the ETag of :func:`claim_sweep`'s write when the run claimed the tenant)."""
    await store.put_checkpoint(plan.checkpoint, force=plan.checkpoint.etag is None)
