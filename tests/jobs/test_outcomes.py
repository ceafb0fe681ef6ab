"""The outcome table of a job run (shared/jobs/dispatch.py), row by row: what the run record
says and whether the message is completed, redelivered or poisoned. Against the sandbox and
Azurite; jobs that fail on purpose are passed in (``jobs=``), as a host would load a plugin."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Sequence

import pytest

from shared.errors import RetryableJobError
from shared.instance import current_instance
from shared.jobs.base import JobContext, Plan, RunStatus
from shared.jobs.dispatch import (
    HANDOVER_LIMIT,
    INVALID_JOB,
    JOBS,
    Decision,
    DeliveryHistory,
    handle_queue_message,
)
from shared.jobs.envelope import JobMessage
from shared.storage import DeliveryAttempt, DeliveryLedger, RunRecord
from tests.jobs.conftest import Stack

MAX = 5  # host.json maxDequeueCount


class FailingJob:
    """Plans by raising ``error`` (counting its calls)."""

    name = "operations"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def plan(self, ctx: JobContext) -> Plan:
        self.calls += 1
        raise self.error


def _ops_message(stack: Stack, correlation: str, job_title: str = "x") -> str:
    tenant = stack.seed.home_tenant_id
    [user] = stack.graph.directory.seed_users(tenant, 1)
    return JobMessage.new(
        "operations",
        tenant,
        {
            "operations": [
                {
                    "id": "a",
                    "method": "PATCH",
                    "url": f"/users/{user['id']}",
                    "body": {"jobTitle": job_title},
                }
            ]
        },
        correlation_id=correlation,
    ).to_json()


async def _runs(correlation: str, job: str = "operations") -> list[RunRecord]:
    runs = await current_instance().store.list_runs(job, limit=200)
    return sorted((r for r in runs if r.correlation_id == correlation), key=lambda r: r.started_at)


def _statuses(runs: Sequence[RunRecord]) -> list[str]:
    return [r.status for r in runs]


# -- the decision at the start of a delivery (pure) ------------------------------------------


def _ledger(*statuses: str | None, carried_failures: int = 0, carried: int = 0) -> DeliveryLedger:
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    attempts = {
        n: DeliveryAttempt(started_at=now, status=status)
        for n, status in enumerate(statuses, start=1)
        if status != "-"  # "-": a delivery that died before it wrote anything
    }
    return DeliveryLedger(
        "c", "m", attempts, carried_failures=carried_failures, carried_deliveries=carried
    )


@pytest.mark.parametrize(
    ("statuses", "delivery", "carried_failures", "carried", "decision"),
    [
        ((), 1, 0, 0, Decision.RUN),
        (("retrying",) * 4, 5, 0, 0, Decision.RUN),  # four real failures: last try, then poison
        (("retrying", None, "-", "failed"), 5, 0, 0, Decision.HAND_OVER),  # two crashes
        (("-", "-", "-", "-"), 5, 0, 0, Decision.HAND_OVER),  # killed before writing anything
        (("-", "-"), 3, 0, 0, Decision.RUN),  # crashes, but not the last delivery yet
        (("retrying", "retrying"), 3, 3, 5, Decision.EXHAUSTED),  # 3 carried + 2 = 5 failures
        (("-",) * 4, 5, 0, HANDOVER_LIMIT * MAX - 5, Decision.RUN),  # crashes forever: stop
        (("succeeded",), 2, 0, 0, Decision.DONE),  # completed, then the host died before delete
        (("requeued",), 2, 0, 0, Decision.DONE),
    ],
)
def test_the_decision_at_the_start_of_a_delivery(
    statuses: tuple[str | None, ...],
    delivery: int,
    carried_failures: int,
    carried: int,
    decision: Decision,
) -> None:
    ledger = _ledger(*statuses, carried_failures=carried_failures, carried=carried)
    assert DeliveryHistory.of(ledger, delivery).decide(MAX) is decision


def test_history_counts_failures_and_interruptions() -> None:
    history = DeliveryHistory.of(_ledger("retrying", None, "-", "failed"), 5)
    assert (history.failures, history.interrupted, history.deliveries) == (2, 2, 4)


# -- rows of the table -------------------------------------------------------------------------


async def test_success_is_recorded_succeeded(stack: Stack) -> None:
    body = _ops_message(stack, "ok-1", "Lead")
    summary = await handle_queue_message(body, message_id="m-ok-1", dequeue_count=1)
    assert summary is not None
    assert summary.status is RunStatus.SUCCEEDED
    assert summary.applied == 1
    [run] = await _runs("ok-1")
    assert (run.status, run.applied, run.error) == ("succeeded", 1, None)
    ledger = await current_instance().store.get_deliveries("ok-1", "m-ok-1")
    assert ledger.attempts[1].status == "succeeded"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("[" * 5000 + "]" * 5000, ""),  # nesting far deeper than any parser allows
        ('{"version": 1, "job": "operations", "n": ' + "9" * 5000 + "}", ""),  # huge integer
        ('{"version": 1, "job": "operations"', "not JSON"),
        (json.dumps({"version": 1, "job": "nope"}), "unknown job"),
    ],
)
async def test_permanently_invalid_messages_complete_at_once_named_in_log_and_record(
    stack: Stack, caplog: pytest.LogCaptureFixture, body: str, fragment: str
) -> None:
    message_id = f"m-{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.ERROR):
        assert await handle_queue_message(body, message_id=message_id, dequeue_count=1) is None
    [line] = [r.getMessage() for r in caplog.records if "without retry" in r.getMessage()]
    assert message_id in line
    assert fragment in line
    [run] = [
        r
        for r in await current_instance().store.list_runs(INVALID_JOB)
        if r.correlation_id == message_id
    ]
    assert run.status == "invalid"
    assert run.error
    assert run.error in line  # the same problem, named in both


async def test_an_operation_that_can_never_succeed_completes_named(stack: Stack) -> None:
    tenant = stack.seed.home_tenant_id
    body = JobMessage.new(
        "operations",
        tenant,
        {"operations": [{"id": "a", "method": "DELETE", "url": "/users/x"}]},
        correlation_id="bad-op",
    ).to_json()
    # DELETE is not in DAEMON_OPERATIONS_ALLOWED_METHODS: it can never succeed
    summary = await handle_queue_message(body, message_id="m-bad-op", dequeue_count=1)
    assert summary is None or summary.status.completes
    runs = await _runs("bad-op")
    if summary is not None:  # a run record names it (an envelope problem: the invalid table)
        [run] = runs
        assert run.status in ("invalid", "completed-with-errors")
        assert "DELETE" in (run.error or "")


async def test_unexpected_exception_is_recorded_failed_with_its_type_then_poisoned(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    body = _ops_message(stack, "boom-1")
    job = FailingJob(ZeroDivisionError("boom in plan"))
    with pytest.raises(ZeroDivisionError):
        await handle_queue_message(
            body, message_id="m-boom", dequeue_count=1, jobs={"operations": job}
        )
    [run] = await _runs("boom-1")
    assert run.status == "failed"
    assert "ZeroDivisionError: boom in plan" in (run.error or "")
    assert run.ended_at is not None
    assert any(r.exc_info for r in caplog.records if "failed unexpectedly" in r.getMessage())
    for delivery in range(2, MAX + 1):
        with pytest.raises(ZeroDivisionError):
            await handle_queue_message(
                body, message_id="m-boom", dequeue_count=delivery, jobs={"operations": job}
            )
    runs = await _runs("boom-1")
    assert _statuses(runs) == ["failed"] * (MAX - 1) + ["poisoned"]
    assert "ZeroDivisionError" in (runs[-1].error or "")
    assert job.calls == MAX


async def test_graph_outage_is_retried_not_completed_and_nothing_is_done_twice(
    stack: Stack,
) -> None:
    tenant = stack.seed.home_tenant_id
    body = _ops_message(stack, "outage-1", "Manager")
    uid = json.loads(body)["payload"]["operations"][0]["url"].rsplit("/", 1)[1]
    # Graph answers 503 to everything, with "Retry-After: 0" (no real backoff in tests)
    stack.graph.faults.set(error_rate=1.0, error_retry_after_rate=1.0, error_retry_after=0.0)
    with pytest.raises(RetryableJobError, match="will be redelivered"):
        await handle_queue_message(body, message_id="m-outage", dequeue_count=1)
    [run] = await _runs("outage-1")
    assert run.status == "retrying"
    assert "could not be applied now" in (run.error or "")
    stack.graph.faults.set(error_rate=0.0)
    summary = await handle_queue_message(body, message_id="m-outage", dequeue_count=2)
    assert summary is not None
    assert summary.status is RunStatus.SUCCEEDED
    assert stack.graph.directory.tenant(tenant).users[uid]["jobTitle"] == "Manager"
    assert _statuses(await _runs("outage-1")) == ["retrying", "succeeded"]


async def test_a_missing_setting_is_retried_then_poisoned_with_its_cause(stack: Stack) -> None:
    tenant = stack.seed.home_tenant_id
    body = JobMessage.new(
        "provision",
        tenant,
        {"joiners": [{"employeeId": "N1", "givenName": "Nora", "surname": "Noset"}]},
        correlation_id="nodomain-1",
    ).to_json()
    stack.configure(DAEMON_USER_DOMAIN="")  # joiners need it
    await stack.host.enqueue(stack.queue, body)
    drained = await stack.host.run_queue_until_idle(stack.queue, timeout=60)
    assert (drained.invocations, drained.failed, drained.poisoned) == (MAX, MAX, 1)
    assert stack.host.poisoned == 1
    assert await stack.host.peek(stack.poison) == [body]
    runs = await _runs("nodomain-1", job="provision")
    assert _statuses(runs) == ["retrying"] * (MAX - 1) + ["poisoned"]
    assert all("DAEMON_USER_DOMAIN" in (r.error or "") for r in runs)
    assert stack.graph.stats.writes_applied == 0


async def test_a_credential_failure_is_retried_then_poisoned_with_its_cause(
    stack: Stack,
) -> None:
    body = _ops_message(stack, "cred-1")
    stack.configure(DAEMON_CLIENT_ID=str(uuid.uuid4()))  # an app Entra ID does not know
    await stack.host.enqueue(stack.queue, body)
    drained = await stack.host.run_queue_until_idle(stack.queue, timeout=60)
    assert (drained.invocations, drained.failed, drained.poisoned) == (MAX, MAX, 1)
    runs = await _runs("cred-1")
    assert _statuses(runs) == ["retrying"] * (MAX - 1) + ["poisoned"]
    assert all("AADSTS700016" in (r.error or "") for r in runs)
    assert stack.graph.stats.writes_applied == 0


async def test_real_failures_add_up_across_a_hand_over_and_still_poison(stack: Stack) -> None:
    body = _ops_message(stack, "mixed-1")
    job = FailingJob(RetryableJobError("a read gave up"))
    jobs = {"operations": job}
    for delivery in (1, 2):  # two real failures
        with pytest.raises(RetryableJobError):
            await handle_queue_message(body, message_id="m-a", dequeue_count=delivery, jobs=jobs)
    # deliveries 3 and 4 died before writing anything; 5 is the host's last: handed over
    summary = await handle_queue_message(body, message_id="m-a", dequeue_count=5, jobs=jobs)
    assert summary is not None
    assert summary.status is RunStatus.REQUEUED
    client = stack.host.connection("AzureWebJobsStorage").queue_client(stack.queue, base64=True)
    [fresh] = list(client.receive_messages(max_messages=5, visibility_timeout=60))
    assert base64.b64decode(fresh.content).decode() == body  # base64, as the host expects
    ledger = await current_instance().store.get_deliveries("mixed-1", fresh.id)
    carried = (ledger.carried_failures, ledger.carried_deliveries, ledger.carried_from)
    assert carried == (2, 5, "m-a")
    for delivery in (1, 2, 3):  # three more real failures: five in all
        with pytest.raises(RetryableJobError):
            await handle_queue_message(body, message_id=fresh.id, dequeue_count=delivery, jobs=jobs)
    assert job.calls == 5
    for delivery in (4, 5):  # not run again; the last delivery records poisoned
        with pytest.raises(RetryableJobError, match=r"already failed \d time"):
            await handle_queue_message(body, message_id=fresh.id, dequeue_count=delivery, jobs=jobs)
    assert job.calls == 5
    runs = await _runs("mixed-1")
    statuses = _statuses(runs)
    assert statuses == ["retrying"] * 2 + ["requeued"] + ["retrying"] * 4 + ["poisoned"]
    assert "last: RetryableJobError: a read gave up" in (runs[-1].error or "")
    client.close()


async def test_run_records_and_log_lines_carry_tenant_and_correlation_id(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    body = _ops_message(stack, "ctx-1", "Chief")
    with caplog.at_level(logging.DEBUG):
        await handle_queue_message(body, message_id="m-ctx", dequeue_count=1)
    mine = [r for r in caplog.records if getattr(r, "correlation_id", None) == "ctx-1"]
    assert mine, "no record carried the run context"
    tenant = stack.seed.home_tenant_id
    assert all(r.tenant == tenant for r in mine)  # type: ignore[attr-defined]
    assert any("job operations tenant" in r.getMessage() for r in mine)


def test_every_status_is_in_the_outcome_table() -> None:
    import shared.jobs.dispatch as dispatch

    table = dispatch.__doc__ or ""
    for status in RunStatus:
        if status not in (RunStatus.RUNNING, RunStatus.PLANNED):
            assert f"``{status.value}" in table, status
    assert set(JOBS) == {"provision", "operations"}
