"""``status`` against a real Azurite: run records, queue and poison depth, checkpoint age."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator

import pytest

from sandbox.azurite import Azurite
from shared.status import collect_status
from shared.storage import Checkpoint, RunRecord, StateStore, storage_connection

TENANT = "11111111-2222-3333-4444-555555555555"


@pytest.fixture
def env(azurite: Azurite) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "DAEMON_AUTH_MODE": "managed-identity",
        "DAEMON_TENANT_ID": TENANT,
        "DAEMON_JOBS_QUEUE": f"status-{uuid.uuid4().hex[:12]}",
    }


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[StateStore]:
    store = StateStore.from_env(env, table_prefix=f"s{uuid.uuid4().hex[:12]}")
    try:
        yield store
    finally:
        store.close()


async def test_empty_state_needs_no_attention(env: dict[str, str], store: StateStore) -> None:
    report = await collect_status(env, store=store)
    assert report.queue is not None
    assert report.queue.length == 0
    assert report.poison is not None
    assert report.poison.length == 0
    assert report.checkpoints[TENANT] == {"updated_at": None, "has_delta_link": False}
    assert report.runs == {f"{job} {TENANT}": [] for job in ("provision", "operations", "sweep")}
    assert report.attention == []
    assert "nothing needs attention" in report.render()


async def test_poison_old_delta_link_and_failed_run_need_attention(
    env: dict[str, str], store: StateStore
) -> None:
    connection = storage_connection(env)
    for name, count in ((env["DAEMON_JOBS_QUEUE"], 3), (env["DAEMON_JOBS_QUEUE"] + "-poison", 2)):
        queue = connection.queue_client(name, base64=True)
        queue.create_queue()
        for i in range(count):
            queue.send_message(json.dumps({"n": i}))
        queue.close()
    await store.put_checkpoint(
        Checkpoint(job="sweep", tenant=TENANT, delta_link="https://example.invalid/delta?t=x")
    )
    started = dt.datetime.now(dt.timezone.utc)
    await store.record_run(
        RunRecord(
            "provision",
            TENANT,
            "corr-1",
            started,
            ended_at=started,
            status="poisoned",
            error="Graph unreachable",
        )
    )
    later = started + dt.timedelta(days=8)
    report = await collect_status(env, store=store, now=later)
    assert report.queue is not None
    assert report.queue.length == 3
    assert report.queue.oldest_age_seconds is not None
    assert report.queue.oldest_age_seconds >= 8 * 86400 - 60
    assert report.poison is not None
    assert report.poison.length == 2
    assert report.checkpoints[TENANT]["has_delta_link"] is True
    runs = report.runs[f"provision {TENANT}"]
    assert [r["status"] for r in runs] == ["poisoned"]
    text = "\n".join(report.attention)
    assert "2 message(s) in" in text
    assert "requeue-poison" in text
    assert "has expired" in text
    assert "ended poisoned: Graph unreachable" in text
    assert len(report.attention) == 3
    assert json.loads(report.to_json())["poison"]["length"] == 2


async def test_unreachable_storage_is_reported_in_place(store: StateStore) -> None:
    env = {
        "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=a2V5;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1",
        "DAEMON_AUTH_MODE": "managed-identity",
        "DAEMON_TENANT_ID": TENANT,
    }
    report = await collect_status(env, store=store)
    assert report.queue is not None
    assert report.queue.error
    assert "a2V5" not in report.render()
    assert any("unreadable" in item for item in report.attention)
