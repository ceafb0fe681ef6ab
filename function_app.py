"""Azure Functions entry point (Python v2 programming model): glue only.

Nothing is read, built or connected at import: a missing setting or an import error here
would make the host index zero functions. Each function turns its binding into one call
into ``shared/``, where the per-instance objects are built on first use.
"""

# No "from __future__ import annotations" here: the worker reads binding types from the
# function annotations at indexing time, and postponed (string) annotations break that.
import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="0 0 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
async def token_heartbeat(timer: func.TimerRequest) -> None:
    """Hourly: make sure the app can get its token (placeholder until the sweep job)."""
    from shared.heartbeat import heartbeat

    await heartbeat(past_due=timer.past_due)
