"""``python -m shared requeue-poison``: after a fix, move the messages of ``<queue>-poison``
back to the queue, bodies unchanged (so their correlation ids too).

A poison message's stored text is already what the host expects (base64 by default), so it
is sent unchanged. A text that is not base64 is left in the poison queue: the host would
poison it again at once (its producer needs fixing instead).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.errors import UsageError
from shared.storage import storage_connection

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

__all__ = ["POISON_SUFFIX", "RequeueResult", "requeue_poison", "run_requeue"]

logger = logging.getLogger("shared.cli")

POISON_SUFFIX = "-poison"
_REQUEUE_LEASE = 300  # seconds a poison message stays invisible while it is being moved
_PAGE = 32  # the queue service's most messages per receive or peek


@dataclass
class RequeueResult:
    """What ``requeue-poison`` did (or, with ``dry_run``, would do)."""

    queue: str
    poison: str
    moved: int = 0
    skipped: int = 0  # not base64: the host would poison them again at once
    left: int = 0  # approximate count still in the poison queue afterwards
    dry_run: bool = False
    correlation_ids: tuple[str, ...] = ()

    def line(self) -> str:
        verb = "would move" if self.dry_run else "moved"
        text = f"{verb} {self.moved} message(s) from {self.poison} to {self.queue}"
        if self.skipped:
            text += (
                f"; left {self.skipped} that are not base64 in {self.poison} (the host would "
                "poison them again at once: fix the producer and send them anew)"
            )
        return text + f"; {self.left} left in {self.poison}"


def _correlation_id(raw: str) -> str | None:
    """The correlationId of a stored (base64) job message, or None; never raises."""
    try:
        body = json.loads(base64.b64decode(raw.encode("ascii"), validate=True))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        return None
    value = body.get("correlationId") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def _is_base64(raw: str) -> bool:
    try:
        base64.b64decode(raw.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeError):
        return False
    return True


def _count(source: QueueClient) -> int:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return int(source.get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:
        return 0


def _dry_run(source: QueueClient, result: RequeueResult, limit: int | None) -> None:
    """Count and list what a move would do (from the first 32 messages), moving nothing."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        peeked = source.peek_messages(max_messages=_PAGE)
    except ResourceNotFoundError:
        peeked = []
    count = int(source.get_queue_properties().approximate_message_count or 0) if peeked else 0
    movable = [m for m in peeked if _is_base64(str(m.content or ""))]
    result.skipped = len(peeked) - len(movable)
    result.moved = max(count - result.skipped, 0)
    if limit is not None:
        result.moved = min(result.moved, limit)
    ids = [cid for m in movable[: result.moved] if (cid := _correlation_id(str(m.content)))]
    result.left = count
    result.correlation_ids = tuple(ids)


def _receive(source: QueueClient, want: int) -> list[QueueMessage]:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        page = next(
            source.receive_messages(
                messages_per_page=want, max_messages=want, visibility_timeout=_REQUEUE_LEASE
            ).by_page(),
            None,
        )
    except ResourceNotFoundError:
        page = None
    return list(page or [])


def _move_one(
    source: QueueClient, target: QueueClient, message: QueueMessage, result: RequeueResult
) -> str | None:
    """Send the stored text unchanged, then delete the poison copy; its correlation id."""
    raw = str(message.content or "")
    # Delete the poison copy only once the send succeeded (a crash in between leaves a
    # duplicate, never a loss; the jobs are idempotent).
    target.send_message(raw)
    source.delete_message(message.id, message.pop_receipt)
    result.moved += 1
    cid = _correlation_id(raw)
    logger.info(
        "requeued message %s of %s to %s (correlation id %s)",
        message.id,
        result.poison,
        result.queue,
        cid or "?",
    )
    return cid


def _move(
    source: QueueClient, target: QueueClient, result: RequeueResult, limit: int | None
) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        target.create_queue()
    ids: list[str] = []
    skipped: set[str] = set()
    while limit is None or result.moved < limit:
        want = _PAGE if limit is None else min(_PAGE, limit - result.moved)
        messages = _receive(source, want)
        if not messages or all(m.id in skipped for m in messages):
            break
        for message in messages:
            if _is_base64(str(message.content or "")):
                if cid := _move_one(source, target, message, result):
                    ids.append(cid)
            elif message.id not in skipped:
                # Left where it is (invisible for the lease, then back): moving it would
                # only poison it again.
                skipped.add(message.id)
                result.skipped += 1
    result.left = _count(source)
    result.correlation_ids = tuple(ids)


async def requeue_poison(
    env: Mapping[str, str],
    queue: str,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    connection: str = "AzureWebJobsStorage",
) -> RequeueResult:
    """Move the messages of ``<queue>-poison`` back to ``queue`` (see the module doc)."""
    parsed = storage_connection(env, connection)
    result = RequeueResult(queue=queue, poison=queue + POISON_SUFFIX, dry_run=dry_run)
    source = parsed.queue_client(result.poison)
    target = parsed.queue_client(queue)  # raw text: the poison copy is already base64
    try:
        if dry_run:
            await asyncio.to_thread(_dry_run, source, result, limit)
        else:
            await asyncio.to_thread(_move, source, target, result, limit)
    finally:
        source.close()
        target.close()
    return result


def run_requeue(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """The ``requeue-poison`` command: exit status 0 once done."""
    from shared.doctor import probe_storage
    from shared.settings import QUEUE_NAME_RE

    queue = args.queue or (env.get("DAEMON_JOBS_QUEUE") or "").strip()
    where = "--queue" if args.queue else "DAEMON_JOBS_QUEUE"
    if not queue:
        raise UsageError("requeue-poison: pass --queue or set DAEMON_JOBS_QUEUE")
    if not QUEUE_NAME_RE.match(queue) or len(queue) + len(POISON_SUFFIX) > 63:
        raise UsageError(
            f"{where} {queue!r} is not a storage queue name with room for its -poison queue "
            "(3-56 lowercase letters, digits and single dashes)"
        )
    if args.max is not None and args.max < 1:
        raise UsageError(f"--max {args.max}: expected a whole number of at least 1")
    asyncio.run(probe_storage(env, queues=(queue, queue + POISON_SUFFIX), tables=False))
    result = asyncio.run(requeue_poison(env, queue, limit=args.max, dry_run=args.dry_run))
    print(result.line())
    if result.correlation_ids:
        print("correlation ids: " + ", ".join(result.correlation_ids))
    return 0
