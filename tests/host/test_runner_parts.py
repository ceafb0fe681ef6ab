"""The runner's parts without storage: invocation and outputs, the listener's decisions
(complete, release, poison) against a fake queue, timers on a fake clock, the counts."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import azure.functions as func
import pytest
from azure.storage.queue import QueueMessage

from shared.host.config import HostOptions, QueueOptions
from shared.host.context import InvocationContext, Out
from shared.host.functions import Binding, FunctionSpec
from shared.host.invocation import invoke, output_texts
from shared.host.listener import QueueListener, decode_body, lease_seconds
from shared.host.stats import DrainResult, QueueStats
from shared.host.timers import TimerLoop
from tests.clock import FakeClock

QUEUE = "work"
OUT = Binding("out", "queue", "OUT", {"queueName": "out-q"})


def _spec(function: Callable[..., Any], *, outputs: tuple[Binding, ...] = ()) -> FunctionSpec:
    trigger = Binding("msg", "queueTrigger", "IN", {"queueName": QUEUE})
    return FunctionSpec("work", trigger, outputs, function, wants_context=False)


class FakeQueues:
    """What a listener did to each message, by message id."""

    def __init__(self, batches: list[list[QueueMessage]] | None = None) -> None:
        self.batches = batches or []
        self.done: dict[str, str] = {}
        self.leases: list[int] = []

    async def receive(
        self, connection: str, queue: str, count: int, *, lease: int
    ) -> list[QueueMessage]:
        self.leases.append(lease)
        return self.batches.pop(0)[:count] if self.batches else []

    async def complete(self, connection: str, queue: str, message: QueueMessage) -> None:
        self.done[message.id] = "completed"

    async def release(
        self, connection: str, queue: str, message: QueueMessage, *, visibility_timeout: int
    ) -> None:
        self.done[message.id] = f"released for {visibility_timeout}s"

    async def move_to_poison(self, connection: str, queue: str, message: QueueMessage) -> str:
        self.done[message.id] = "poisoned"
        return queue + "-poison"


def _message(text: str, *, count: int = 1, encode: bool = True, id: str = "m1") -> QueueMessage:
    content = base64.b64encode(text.encode()).decode() if encode else text
    return QueueMessage(content=content, id=id, dequeue_count=count, pop_receipt="pop")


def _listener(
    queues: FakeQueues, calls: list[bytes], *, fail: bool = False, **options: Any
) -> QueueListener:
    async def fake_invoke(spec: FunctionSpec, trigger: func.QueueMessage) -> None:
        calls.append(trigger.get_body())
        if fail:
            raise ValueError("cannot process")

    return QueueListener(
        _spec(lambda msg: None), queues, QueueOptions(**options), fake_invoke, lease=330
    )


# -- the listener's decisions ---------------------------------------------------------------


async def test_a_message_that_succeeds_is_completed() -> None:
    queues, calls, stats = FakeQueues(), list[bytes](), QueueStats()
    await _listener(queues, calls).process(_message('{"n": 1}'), stats)
    assert calls == [b'{"n": 1}']
    assert queues.done == {"m1": "completed"}
    assert (stats.invocations, stats.succeeded, stats.failed) == (1, 1, 0)


async def test_a_failure_below_max_dequeue_count_releases_it_for_the_visibility_timeout() -> None:
    queues, calls, stats = FakeQueues(), list[bytes](), QueueStats()
    listener = _listener(queues, calls, fail=True, visibility_timeout=30.0, max_dequeue_count=3)
    await listener.process(_message("x", count=2), stats)
    assert queues.done == {"m1": "released for 30s"}
    assert (stats.failed, stats.poisoned) == (1, 0)


async def test_the_last_failed_delivery_goes_to_poison(caplog: pytest.LogCaptureFixture) -> None:
    queues, calls, stats = FakeQueues(), list[bytes](), QueueStats()
    listener = _listener(queues, calls, fail=True, max_dequeue_count=3)
    await listener.process(_message("x", count=3), stats)
    assert queues.done == {"m1": "poisoned"}
    assert (stats.failed, stats.poisoned) == (1, 1)
    assert "function work failed 3 time(s)" in caplog.text
    assert "ValueError: cannot process" in caplog.text


async def test_over_max_dequeue_count_or_not_base64_is_poisoned_without_a_call() -> None:
    queues, calls, stats = FakeQueues(), list[bytes](), QueueStats()
    listener = _listener(queues, calls, max_dequeue_count=2)
    await listener.process(_message("x", count=3, id="late"), stats)
    await listener.process(_message("{not base64", encode=False, id="raw"), stats)
    assert calls == []
    assert queues.done == {"late": "poisoned", "raw": "poisoned"}
    assert (stats.invocations, stats.poisoned) == (0, 2)


async def test_message_encoding_none_passes_the_text_as_it_is() -> None:
    queues, calls, stats = FakeQueues(), list[bytes](), QueueStats()
    listener = _listener(queues, calls, message_encoding="none")
    await listener.process(_message("{not base64", encode=False), stats)
    assert calls == [b"{not base64"]


async def test_listen_processes_a_batch_then_reports_idle() -> None:
    batch = [_message(f"m{n}", id=f"m{n}") for n in range(3)]
    queues, calls, stats = FakeQueues([batch]), list[bytes](), QueueStats()
    stop = asyncio.Event()
    idle: list[bool] = []

    def mark(is_idle: bool) -> None:
        idle.append(is_idle)
        if is_idle:
            stop.set()

    await _listener(queues, calls).listen(stop, stats, idle=mark, poll_interval=0.0)
    assert sorted(calls) == [b"m0", b"m1", b"m2"]
    assert set(queues.done.values()) == {"completed"}
    assert (stats.received, stats.succeeded, stats.max_in_flight) == (3, 3, 3)
    assert idle[0] is False
    assert idle[-1] is True
    assert queues.leases[0] == 330


def test_lease_is_function_timeout_plus_margin_within_the_service_limits() -> None:
    assert lease_seconds(HostOptions(function_timeout=300.0, lease_margin=30.0)) == 330
    assert lease_seconds(HostOptions(function_timeout=None, lease_margin=0.0)) == 3600
    assert lease_seconds(HostOptions(function_timeout=10**9)) == 7 * 24 * 3600


def test_decode_body() -> None:
    assert decode_body(base64.b64encode(b"hi").decode(), base64_encoded=True) == b"hi"
    assert decode_body("hi!", base64_encoded=True) is None
    assert decode_body("é", base64_encoded=True) is None
    assert decode_body("é", base64_encoded=False) == "é".encode()


# -- one invocation -------------------------------------------------------------------------


async def test_outputs_are_sent_after_the_function_returned() -> None:
    sent: list[tuple[str, str, list[str]]] = []

    async def send(connection: str, queue: str, texts: Any) -> None:
        sent.append((connection, queue, list(texts)))

    def function(msg: str, out: func.Out[list[str]]) -> None:
        out.set(["a", "b"])

    result = await invoke(_spec(function, outputs=(OUT,)), "m", timeout=5.0, send=send)
    assert result == {"out-q": ["a", "b"]}
    assert sent == [("AzureWebJobsStorage", "out-q", ["a", "b"])]


async def test_a_function_that_raises_sends_nothing() -> None:
    sent: list[Any] = []

    async def send(connection: str, queue: str, texts: Any) -> None:
        sent.append(texts)

    async def function(msg: str, out: func.Out[str]) -> None:
        out.set("never")
        raise RuntimeError("failed")

    with pytest.raises(RuntimeError, match="failed"):
        await invoke(_spec(function, outputs=(OUT,)), "m", timeout=5.0, send=send)
    assert sent == []


def test_output_texts_accepts_text_bytes_and_queue_messages() -> None:
    spec = _spec(lambda msg: None)
    message = func.QueueMessage(body=b"q")
    assert output_texts(spec, "out", ["a", b"b", message]) == ["a", "b", "q"]
    assert output_texts(spec, "out", "one") == ["one"]
    with pytest.raises(TypeError, match="was set to int"):
        output_texts(spec, "out", 3)
    with pytest.raises(TypeError, match="holds a int"):
        output_texts(spec, "out", [3])


def test_each_context_has_its_own_w3c_trace() -> None:
    first, second = InvocationContext("work", "/app"), InvocationContext("work", "/app")
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", first.trace_context.trace_parent)
    assert first.trace_context.trace_parent != second.trace_context.trace_parent
    assert first.invocation_id != second.invocation_id
    assert first.function_name == "work"
    out: Out[str] = Out()
    assert not out.was_set
    out.set("x")
    assert (out.get(), out.was_set) == ("x", True)


# -- timers ---------------------------------------------------------------------------------


def _timer(schedule: str, run: Any, clock: FakeClock, **props: Any) -> TimerLoop:
    trigger = Binding("timer", "timerTrigger", "IN", {"schedule": schedule, **props})
    spec = FunctionSpec("tick", trigger, (), lambda timer: None)
    return TimerLoop(
        spec,
        run,
        now=lambda: datetime.fromtimestamp(clock(), timezone.utc),
        wait=lambda stop, seconds: clock.sleep(seconds),
    )


async def test_a_timer_fires_at_its_next_occurrence_and_on_startup() -> None:
    clock = FakeClock(start=datetime(2026, 1, 1, 0, 0, 50, tzinfo=timezone.utc).timestamp())
    stop = asyncio.Event()
    runs: list[tuple[str, bool, float]] = []

    async def run(name: str, past_due: bool) -> None:
        runs.append((name, past_due, clock()))
        if len(runs) == 3:
            stop.set()

    loop = _timer("0 * * * * *", run, clock, runOnStartup=True)
    await loop(stop)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    assert runs == [
        ("tick", False, start + 50),  # runOnStartup
        ("tick", False, start + 60),
        ("tick", False, start + 120),
    ]
    assert clock.sleeps == [10.0, 60.0]


def test_a_run_more_than_a_minute_late_is_past_due() -> None:
    clock = FakeClock(start=1_000_000.0)
    loop = _timer("0 * * * * *", None, clock)
    due = datetime.fromtimestamp(1_000_000.0, timezone.utc)
    assert not loop.is_past_due(due)
    clock.advance(61)
    assert loop.is_past_due(due)


# -- counts ---------------------------------------------------------------------------------


def test_stats_add_and_drain_totals() -> None:
    total = QueueStats(received=1, failed=1, max_in_flight=4)
    total.add(QueueStats(received=2, poisoned=1, max_in_flight=2))
    assert (total.received, total.failed, total.poisoned, total.max_in_flight) == (3, 1, 1, 4)
    result = DrainResult(queues=("a", "b"), stats={"f": total, "g": QueueStats(succeeded=5)})
    assert (result.failed, result.poisoned, result.succeeded, result.max_in_flight) == (
        1,
        1,
        5,
        4,
    )
