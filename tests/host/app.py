"""A test-only function app: a timer fanning out through a queue output, a queue worker.

Queue names and the schedule come from app settings (``%TEST_QUEUE%``, ``%TEST_SCHEDULE%``)
so each test uses its own queue. Behaviour is steered by the message body (JSON):
``{"fail": true}`` raises, ``{"wait_for": N}`` holds the invocation until N run at once (or
a bound passes), ``{"forward": true}`` sends the body on to ``%TEST_OUT_QUEUE%``.
"""

# No "from __future__ import annotations": like function_app.py, binding types are read
# from the annotations.
import asyncio
import json
import threading
import time
from typing import Any

import azure.functions as func

app = func.FunctionApp()


class Recorder:
    """What the functions saw; reset by each test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.fan_out: list[str] = []
        self.fail_timer = False
        self.timer_calls: list[bool] = []
        self.messages: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


recorder = Recorder()


@app.timer_trigger(schedule="%TEST_SCHEDULE%", arg_name="timer", run_on_startup=False)
@app.queue_output(arg_name="out", queue_name="%TEST_QUEUE%", connection="AzureWebJobsStorage")
def plan(timer: func.TimerRequest, out: func.Out[list[str]]) -> None:
    recorder.timer_calls.append(timer.past_due)
    if recorder.fail_timer:
        out.set(["never sent"])
        raise RuntimeError("planning failed")
    out.set(list(recorder.fan_out))


@app.queue_trigger(arg_name="msg", queue_name="%TEST_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(
    arg_name="forward", queue_name="%TEST_OUT_QUEUE%", connection="AzureWebJobsStorage"
)
async def work(msg: func.QueueMessage, forward: func.Out[str]) -> None:
    text = msg.get_body().decode("utf-8")
    try:
        body = json.loads(text)
    except ValueError:
        body = {"text": text}
    recorder.messages.append(
        {"id": msg.id, "body": body, "dequeue_count": msg.dequeue_count, "pop": msg.pop_receipt}
    )
    recorder.enter()
    try:
        target = body.get("wait_for")
        if target:
            deadline = time.monotonic() + 5
            while recorder.max_active < target and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
        if body.get("fail"):
            raise ValueError(f"cannot process item {body.get('n')}")
        if body.get("forward"):
            forward.set(text)
    finally:
        recorder.leave()
