"""Azure Functions entry point (Python v2 programming model): glue only.

Nothing is read, built or connected at import: a missing setting or an import error here
would make the host index zero functions. Each function turns its binding into one call
into ``shared/``, where the per-instance objects are built on first use. Queue and schedule
names come from app settings (``%DAEMON_JOBS_QUEUE%``, ``%DAEMON_SWEEP_SCHEDULE%``).
What each outcome of a job does to its message is in ``shared/jobs/dispatch.py``.
"""

# No "from __future__ import annotations" here: the worker reads binding types from the
# function annotations at indexing time, and postponed (string) annotations break that.
import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(
    schedule="%DAEMON_SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def sweep_timer(timer: func.TimerRequest) -> None:
    """Plan the directory sweep and fan the leavers out to the jobs queue.

    The sweep sends its messages itself, before it saves its checkpoint (an output binding
    would send them only after the function returned: a crash in between would lose them).
    Raises when a tenant's sweep failed, so the invocation shows as failed.
    """
    from shared.jobs.dispatch import run_sweep_timer

    result = await run_sweep_timer(past_due=timer.past_due)
    result.raise_for_failures()


@app.queue_trigger(
    arg_name="msg", queue_name="%DAEMON_JOBS_QUEUE%", connection="AzureWebJobsStorage"
)
async def jobs_worker(msg: func.QueueMessage, context: func.Context) -> None:
    """Run one job message; raise when it must not be completed, so the host redelivers it
    (and, after maxDequeueCount deliveries, moves it to poison). The invocation's trace
    context makes the job's telemetry a child of the host's span."""
    from shared.jobs.dispatch import handle_queue_message

    await handle_queue_message(
        msg.get_body(),
        message_id=msg.id or "",
        dequeue_count=msg.dequeue_count or 1,
        traceparent=getattr(context.trace_context, "trace_parent", None),
        inserted_at=msg.insertion_time,
    )
