"""Crash-aware deliveries: a worker killed mid-message must not push a valid message to
poison on its own. The host (shared/host) on Azurite counts every delivery, crashed or not,
and poisons at maxDequeueCount without invoking the function; the attempt ledger hands the
message over to a fresh copy instead. A real worker process is SIGKILLed mid-run."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
from pathlib import Path

from shared.instance import current_instance
from shared.jobs.envelope import JobMessage
from tests.jobs.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]

# A worker whose job hangs after the delivery recorded its start: killed there.
CHILD = r"""
import asyncio, sys
from shared.jobs.dispatch import handle_queue_message

class Hang:
    name = "operations"
    async def plan(self, ctx):
        print("planning", flush=True)
        await asyncio.Event().wait()

body, message_id, delivery = sys.argv[1], sys.argv[2], int(sys.argv[3])
asyncio.run(handle_queue_message(
    body, message_id=message_id, dequeue_count=delivery, jobs={"operations": Hang()}
))
"""


async def _kill_mid_run(body: str, message_id: str, delivery: int) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        body,
        message_id,
        str(delivery),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if line.strip() != b"planning":
            assert process.stderr is not None
            raise AssertionError((await process.stderr.read()).decode()[-2000:])
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL


async def test_crashes_alone_never_poison_a_valid_message(stack: Stack) -> None:
    tenant = stack.seed.home_tenant_id
    [user] = stack.graph.directory.seed_users(tenant, 1)
    body = JobMessage.new(
        "operations",
        tenant,
        {
            "operations": [
                {
                    "id": "a",
                    "method": "PATCH",
                    "url": f"/users/{user['id']}",
                    "body": {"jobTitle": "Survivor"},
                }
            ]
        },
        correlation_id="crash-1",
    ).to_json()
    await stack.host.enqueue(stack.queue, body)
    client = stack.host.connection("AzureWebJobsStorage").queue_client(stack.queue)
    for delivery in (1, 2, 3):  # workers that died before they wrote anything
        [message] = list(client.receive_messages(max_messages=1, visibility_timeout=60))
        assert message.dequeue_count == delivery
        client.update_message(message.id, message.pop_receipt, visibility_timeout=0)
    # delivery 4: a worker killed in the middle of the run
    [message] = list(client.receive_messages(max_messages=1, visibility_timeout=60))
    assert message.dequeue_count == 4
    await _kill_mid_run(base64.b64decode(message.content).decode(), message.id, 4)
    store = current_instance().store
    [stale] = await store.list_runs("operations", tenant=tenant)
    assert (stale.status, stale.ended_at) == ("running", None)
    client.update_message(message.id, message.pop_receipt, visibility_timeout=0)  # lease over

    # delivery 5 is the host's last: handed over to a fresh copy, which succeeds
    drained = await stack.host.run_queue_until_idle(stack.queue, timeout=60)
    assert (drained.poisoned, drained.failed) == (0, 0)
    assert drained.invocations == 2
    assert await stack.host.message_count(stack.poison) == 0
    assert await stack.host.message_count(stack.queue) == 0
    assert stack.graph.directory.tenant(tenant).users[user["id"]]["jobTitle"] == "Survivor"
    assert stack.graph.stats.user_updates[f"{tenant}/{user['id']}"] == 1

    runs = sorted(await store.list_runs("operations", tenant=tenant), key=lambda r: r.started_at)
    assert [r.status for r in runs] == ["interrupted", "requeued", "succeeded"]
    assert runs[0].started_at == stale.started_at  # the stale record, closed
    assert "stopped before recording an outcome" in (runs[0].error or "")
    assert "handed over to message" in (runs[1].error or "")
    assert all(r.correlation_id == "crash-1" for r in runs)
    client.close()
