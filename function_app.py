"""Azure Functions entry point (Python v2 programming model): glue only.

Nothing is read, built or connected at import: a missing setting or an import error here
would make the host index zero functions. Each function turns its binding into one call
into ``shared/``, where the per-instance objects are built on first use. Queue and schedule
names come from app settings (``%DAEMON_JOBS_QUEUE%``, ``%DAEMON_SWEEP_SCHEDULE%``).
"""

# No "from __future__ import annotations" here: the worker reads binding types from the
# function annotations at indexing time, and postponed (string) annotations break that.
import typing

import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(
    schedule="%DAEMON_SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
@app.queue_output(
    arg_name="jobs", queue_name="%DAEMON_JOBS_QUEUE%", connection="AzureWebJobsStorage"
)
async def sweep_timer(
    timer: func.TimerRequest,
    # typing.List, not list: the worker's indexer rejects Out[list[str]] ("invalid non-type
    # annotation") and a rejected function drops the whole app (tests/test_worker_indexing).
    jobs: func.Out[typing.List[str]],  # noqa: UP006
) -> None:
    """Plan the directory sweep and fan the leavers out to the jobs queue."""
    from shared.jobs.dispatch import run_sweep_timer

    jobs.set(await run_sweep_timer(past_due=timer.past_due))


@app.queue_trigger(
    arg_name="msg", queue_name="%DAEMON_JOBS_QUEUE%", connection="AzureWebJobsStorage"
)
async def jobs_worker(msg: func.QueueMessage) -> None:
    """Run one job message; raise on a retryable failure so the host redelivers it."""
    from shared.jobs.dispatch import handle_queue_message

    await handle_queue_message(
        msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1
    )
