"""End to end: timer → fan-out → queue workers → the directory as expected, on Azurite and
the sandbox, through the real functions of function_app.py."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import time

import pytest

from sandbox.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, Azurite
from shared.errors import JobError
from shared.instance import current_instance
from shared.jobs.envelope import JobMessage
from shared.jobs.sweep import claim_sweep, commit_sweep, plan_sweep
from shared.storage import StateConflictError
from tests.jobs.conftest import DOMAIN, Stack


def _leaver_counts(stack: Stack) -> dict[str, int]:
    return dict(stack.graph.stats.user_updates)


def _seed_leavers(stack: Stack, users: int, leavers: int) -> list[dict[str, object]]:
    return stack.graph.directory.seed_users(stack.seed.home_tenant_id, users, leavers=leavers)


async def test_timer_fans_out_and_workers_disable_each_leaver_once(stack: Stack) -> None:
    tenant = stack.seed.home_tenant_id
    users = _seed_leavers(stack, 300, 40)
    leavers = {str(u["id"]) for u in users if u.get("employeeLeaveDateTime")}
    assert len(leavers) == 40

    await stack.host.run_timer("sweep_timer")
    assert len(await stack.host.peek(stack.queue)) == 1  # 40 leavers, chunks of 100
    drained = await stack.host.run_queue_until_idle(stack.queue)
    assert drained.failed == 0
    assert drained.poisoned == 0

    directory = stack.graph.directory.tenant(tenant)
    for uid in leavers:
        assert directory.users[uid]["accountEnabled"] is False
        assert stack.graph.stats.revocations[f"{tenant}/{uid}"] == 1
    assert sum(1 for u in directory.users.values() if not u["accountEnabled"]) == 40
    updates = stack.graph.stats.user_updates
    assert all(updates[f"{tenant}/{uid}"] == 1 for uid in leavers)

    # the next sweep is incremental, sees the disabled accounts, and enqueues nothing
    await stack.host.run_timer("sweep_timer")
    assert await stack.host.message_count(stack.queue) == 0
    runs = await current_instance().store.list_runs("sweep", tenant=tenant)
    assert [r.status for r in runs] == ["planned", "planned"]


async def test_redelivered_message_changes_nothing(stack: Stack) -> None:
    tenant = stack.seed.home_tenant_id
    group = stack.graph.directory.add_group(tenant, "Engineering")
    message = JobMessage.new(
        "provision",
        tenant,
        {
            "joiners": [
                {
                    "employeeId": f"J{i}",
                    "givenName": "Ada",
                    "surname": f"L{i}",
                    "department": "R&D",
                    "groups": [group["id"]],
                }
                for i in range(5)
            ],
        },
        correlation_id="hr-1",
    ).to_json()
    await stack.host.enqueue(stack.queue, message, message)
    drained = await stack.host.run_queue_until_idle(stack.queue)
    assert drained.failed == 0
    directory = stack.graph.directory.tenant(tenant)
    assert len(directory.members[group["id"]]) == 5
    assert stack.graph.stats.duplicate_creates() == []
    created = [u for u in directory.users.values() if u.get("employeeId", "").startswith("J")]
    assert len(created) == 5
    assert all(u["userPrincipalName"].endswith("@" + DOMAIN) for u in created)
    writes_after_first = stack.graph.stats.writes_applied
    # a third delivery of the same message: planned from state, nothing left to write
    await stack.host.enqueue(stack.queue, message)
    await stack.host.run_queue_until_idle(stack.queue)
    assert stack.graph.stats.writes_applied == writes_after_first


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("{not json", "not JSON"),
        (
            json.dumps(
                {"version": 1, "job": "nope", "tenant": "x", "correlationId": "c", "payload": {}}
            ),
            "unknown job",
        ),
        (
            json.dumps(
                {
                    "version": 9,
                    "job": "provision",
                    "tenant": "x",
                    "correlationId": "c",
                    "payload": {},
                }
            ),
            "version 9",
        ),
        ("TENANT", "not in DAEMON_ALLOWED_TENANTS"),
        ("OVERSIZED", "over the"),
    ],
)
async def test_invalid_messages_complete_at_once_with_a_clear_log_line(
    stack: Stack, caplog: pytest.LogCaptureFixture, body: str, fragment: str
) -> None:
    if body == "TENANT":
        body = JobMessage.new("provision", stack.seed.unconsented_tenant_id, {}).to_json()
    if body == "OVERSIZED":
        body = json.dumps(
            {
                "version": 1,
                "job": "provision",
                "tenant": "x",
                "correlationId": "c",
                "payload": {"pad": "x" * 45_000},
            }
        )
    await stack.host.enqueue(stack.queue, body)
    with caplog.at_level(logging.ERROR):
        drained = await stack.host.run_queue_until_idle(stack.queue)
    assert drained.invocations == 1  # no retries wasted
    assert drained.poisoned == 0
    assert await stack.host.message_count(stack.poison) == 0
    assert any(
        fragment in r.getMessage() and "without retry" in r.getMessage() for r in caplog.records
    )


async def test_non_base64_body_goes_to_poison_without_running(stack: Stack) -> None:
    client = stack.host.connection("AzureWebJobsStorage").queue_client(stack.queue)
    client.create_queue()
    client.send_message("this is not base64 !!!")
    drained = await stack.host.run_queue_until_idle(stack.queue)
    assert drained.invocations == 0
    assert drained.poisoned == 1


async def test_sweep_killed_midway_then_rerun_disables_each_leaver_once(stack: Stack) -> None:
    tenant = stack.seed.home_tenant_id
    users = _seed_leavers(stack, 200, 30)
    leavers = {str(u["id"]) for u in users if u.get("employeeLeaveDateTime")}
    # small chunks, and the workers die after the first messages
    stack.configure(DAEMON_SWEEP_CHUNK_SIZE="5")
    await stack.host.run_timer("sweep_timer")
    assert await stack.host.message_count(stack.queue) == 6
    # "kill": only two messages are processed, the rest stay in the queue
    client = stack.host.connection("AzureWebJobsStorage").queue_client(stack.queue, base64=True)
    taken = [client.receive_message(visibility_timeout=300) for _ in range(2)]
    from shared.jobs.dispatch import handle_queue_message

    for m in taken:
        assert m is not None
        summary = await handle_queue_message(base64.b64decode(m.content), message_id=m.id)
        assert summary is not None
        assert summary.applied == 10
        client.delete_message(m)
    # the timer runs again (it would re-enqueue only leavers older than an hour)
    await stack.host.run_timer("sweep_timer")
    drained = await stack.host.run_queue_until_idle(stack.queue)
    assert drained.failed == 0
    directory = stack.graph.directory.tenant(tenant)
    assert [uid for uid in leavers if directory.users[uid]["accountEnabled"]] == []
    updates = {uid: stack.graph.stats.user_updates[f"{tenant}/{uid}"] for uid in leavers}
    assert {uid: n for uid, n in updates.items() if n != 1} == {}


async def test_expired_delta_link_falls_back_to_full_scan(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = stack.seed.home_tenant_id
    _seed_leavers(stack, 50, 0)
    await stack.host.run_timer("sweep_timer")
    stack.graph.expire_delta_tokens()
    # a user whose leave date passed, changed while the link was expiring
    user = stack.graph.directory.seed_users(tenant, 1)[0]
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).isoformat()
    stack.graph.directory.tenant(tenant).update_user(user["id"], {"employeeLeaveDateTime": past})
    with caplog.at_level(logging.INFO):
        await stack.host.run_timer("sweep_timer")
    assert any("expired; full scan" in r.getMessage() for r in caplog.records)
    assert await stack.host.message_count(stack.queue) == 1
    await stack.host.run_queue_until_idle(stack.queue)
    assert stack.graph.directory.tenant(tenant).users[user["id"]]["accountEnabled"] is False


async def test_cli_enqueue_then_workers_apply_it(stack: Stack) -> None:
    import os
    import subprocess
    import sys

    tenant = stack.seed.home_tenant_id
    users = stack.graph.directory.seed_users(tenant, 3)
    payload = {"movers": [{"employeeId": u["employeeId"], "jobTitle": "Lead"} for u in users]}
    env = {**os.environ, **stack.app_settings}
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "shared",
            "enqueue",
            "--job",
            "provision",
            "--payload",
            "-",
            "--correlation-id",
            "cli-1",
        ],
        input=json.dumps(payload),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "cli-1" in result.stdout
    [text] = await stack.host.peek(stack.queue)
    assert json.loads(text)["correlationId"] == "cli-1"
    drained = await stack.host.run_queue_until_idle(stack.queue)
    assert drained.succeeded == 1
    directory = stack.graph.directory.tenant(tenant)
    assert all(directory.users[u["id"]]["jobTitle"] == "Lead" for u in users)

    bad = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "shared",
            "enqueue",
            "--job",
            "provision",
            "--payload",
            "-",
            "--tenant",
            stack.seed.unconsented_tenant_id,
        ],
        input="{}",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "DAEMON_ALLOWED_TENANTS" in bad.stderr


async def test_sweep_safety_limit_enqueues_nothing_and_keeps_the_checkpoint(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = stack.seed.home_tenant_id
    _seed_leavers(stack, 100, 30)  # 30 leavers = 60 writes
    stack.configure(DAEMON_MAX_CHANGES_PER_RUN="50")
    with caplog.at_level(logging.ERROR), pytest.raises(JobError, match="aborted"):
        await stack.host.run_timer("sweep_timer")
    assert await stack.host.message_count(stack.queue) == 0
    assert any("DAEMON_MAX_CHANGES_PER_RUN=50" in r.getMessage() for r in caplog.records)
    store = current_instance().store
    assert await store.get_checkpoint("sweep", tenant) is None
    [run] = await store.list_runs("sweep", tenant=tenant)
    assert run.status == "aborted"
    assert stack.graph.stats.writes_applied == 0


async def test_provision_safety_limit_and_dry_run(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = stack.seed.home_tenant_id
    joiners = [{"employeeId": f"S{i}", "givenName": "Sam", "surname": f"S{i}"} for i in range(12)]
    stack.configure(DAEMON_MAX_CHANGES_PER_RUN="10")
    big = JobMessage.new("provision", tenant, {"joiners": joiners}, correlation_id="big")
    dry = JobMessage.new(
        "provision", tenant, {"joiners": joiners[:3]}, correlation_id="dry", dry_run=True
    )
    await stack.host.enqueue(stack.queue, big.to_json(), dry.to_json())
    with caplog.at_level(logging.INFO):
        drained = await stack.host.run_queue_until_idle(stack.queue)
    assert drained.invocations == 2  # neither is retried
    assert drained.poisoned == 0
    assert stack.graph.stats.writes_applied == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("big aborted" in m and "nothing was applied" in m for m in messages)
    assert sum("dry run dry: would create" in m for m in messages) == 3
    runs = {r.correlation_id: r for r in await current_instance().store.list_runs("provision")}
    assert runs["big"].status == "aborted"
    assert runs["dry"].status == "dry-run"
    assert runs["dry"].planned == 3


async def test_movers_and_leavers_by_employee_id(stack: Stack) -> None:
    tenant = stack.seed.home_tenant_id
    directory = stack.graph.directory
    users = directory.seed_users(tenant, 4)
    old_group = directory.add_group(tenant, "Old team")
    new_group = directory.add_group(tenant, "New team")
    mover, leaver, already_disabled, ghost_free = users
    directory.add_member(tenant, old_group["id"], mover["id"])
    directory.tenant(tenant).update_user(already_disabled["id"], {"accountEnabled": False})
    message = JobMessage.new(
        "provision",
        tenant,
        {
            "movers": [
                {
                    "employeeId": mover["employeeId"],
                    "department": "Finance",
                    "groups": [new_group["id"]],
                    "removeGroups": [old_group["id"]],
                },
                {"employeeId": "NOBODY", "department": "x"},
            ],
            "leavers": [
                {"employeeId": leaver["employeeId"]},
                {"employeeId": already_disabled["employeeId"]},
            ],
        },
        correlation_id="hr-moves",
    ).to_json()
    await stack.host.enqueue(stack.queue, message)
    await stack.host.run_queue_until_idle(stack.queue)
    state = directory.tenant(tenant)
    assert state.users[mover["id"]]["department"] == "Finance"
    assert mover["id"] in state.members[new_group["id"]]
    assert mover["id"] not in state.members[old_group["id"]]
    assert state.users[leaver["id"]]["accountEnabled"] is False
    revocations = stack.graph.stats.revocations
    assert revocations[f"{tenant}/{leaver['id']}"] == 1
    # disabled earlier by someone else, never signed out: the sessions are revoked once
    assert revocations[f"{tenant}/{already_disabled['id']}"] == 1
    assert state.users[ghost_free["id"]]["accountEnabled"] is True
    [run] = await current_instance().store.list_runs("provision", tenant=tenant)
    assert run.status == "completed-with-errors"
    assert run.failed == 1
    assert "mover NOBODY: no user with this employeeId" in (run.error or "")

    # delivered again: nothing left to do
    writes = stack.graph.stats.writes_applied
    await stack.host.enqueue(stack.queue, message)
    await stack.host.run_queue_until_idle(stack.queue)
    assert stack.graph.stats.writes_applied == writes
    assert revocations[f"{tenant}/{leaver['id']}"] == 1


async def test_sweep_killed_before_saving_its_checkpoint_is_resent_at_once(stack: Stack) -> None:
    tenant = stack.seed.home_tenant_id
    users = _seed_leavers(stack, 100, 12)
    leavers = {str(u["id"]) for u in users if u.get("employeeLeaveDateTime")}
    instance = current_instance()
    store = instance.store
    plan = await plan_sweep(instance, store, tenant, now=time.time())
    assert len(plan.due) == 12
    await instance.job_queue().send_all([m.to_json() for m in plan.messages])
    # killed here: the fan-out was sent, the checkpoint never saved
    assert await store.get_checkpoint("sweep", tenant) is None

    await stack.host.run_timer("sweep_timer")  # the next run finds the same leavers due
    assert await stack.host.message_count(stack.queue) == 2
    assert await store.get_checkpoint("sweep", tenant) is not None
    drained = await stack.host.run_queue_until_idle(stack.queue)
    assert (drained.failed, drained.poisoned) == (0, 0)
    directory = stack.graph.directory.tenant(tenant)
    assert [uid for uid in leavers if directory.users[uid]["accountEnabled"]] == []
    # both copies may run at once and each disable the account: harmless, never lost
    updates = {uid: stack.graph.stats.user_updates[f"{tenant}/{uid}"] for uid in leavers}
    assert set(updates.values()) <= {1, 2}

    await stack.host.run_timer("sweep_timer")
    assert await stack.host.message_count(stack.queue) == 0


async def test_a_sweep_that_cannot_send_saves_nothing_and_fails_visibly(
    stack: Stack, azurite: Azurite
) -> None:
    tenant = stack.seed.home_tenant_id
    _seed_leavers(stack, 50, 5)
    # the queue endpoint is the blob service: every queue request is refused
    broken = (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT_NAME};"
        f"AccountKey={DEV_ACCOUNT_KEY};BlobEndpoint={azurite.blob_endpoint};"
        f"QueueEndpoint={azurite.blob_endpoint};TableEndpoint={azurite.table_endpoint}"
    )
    stack.configure(AzureWebJobsStorage=broken)
    with pytest.raises(JobError, match=r"failed for 1 of \d tenant"):
        await stack.host.run_timer("sweep_timer")
    store = current_instance().store
    claimed = await store.get_checkpoint("sweep", tenant)  # only the run's claim: no progress
    assert claimed is not None
    assert claimed.delta_link is None
    assert "watch" not in claimed.data
    [run] = await store.list_runs("sweep", tenant=tenant)
    assert run.status == "failed"
    assert "Queue storage failed" in (run.error or "")
    assert DEV_ACCOUNT_KEY not in (run.error or "")

    stack.configure(AzureWebJobsStorage=azurite.connection_string)
    await stack.host.run_timer("sweep_timer")
    assert await stack.host.message_count(stack.queue) == 1


async def test_overlapping_sweeps_fan_out_once(stack: Stack) -> None:
    """A timer firing while the previous sweep still runs: both read the same checkpoint,
    only the first to claim it sends; the other sends nothing (found by the chaos run:
    overlapping sweeps used to enqueue every due leaver twice)."""
    tenant = stack.seed.home_tenant_id
    _seed_leavers(stack, 60, 6)
    instance = current_instance()
    store = instance.store
    await stack.host.run_timer("sweep_timer")  # a first round: the checkpoint exists
    drained = await stack.host.run_queue_until_idle(stack.queue)
    assert (drained.failed, drained.poisoned) == (0, 0)
    more = _seed_leavers(stack, 20, 4)
    assert len([u for u in more if u.get("employeeLeaveDateTime")]) == 4
    first = await plan_sweep(instance, store, tenant, now=time.time(), run_id="first")
    second = await plan_sweep(instance, store, tenant, now=time.time(), run_id="second")
    assert len(first.due) == len(second.due) == 4
    await claim_sweep(store, first)
    with pytest.raises(StateConflictError):
        await claim_sweep(store, second)
    await commit_sweep(store, first)  # the claim's ETag carries through to the commit
    saved = await store.get_checkpoint("sweep", tenant)
    assert saved is not None
    assert saved.delta_link == first.checkpoint.delta_link
    # and through the timer: a run that lost the claim sends nothing and does not fail
    racing = await plan_sweep(instance, store, tenant, now=time.time(), run_id="racing")
    await stack.host.run_timer("sweep_timer")
    with pytest.raises(StateConflictError):
        await claim_sweep(store, racing)
