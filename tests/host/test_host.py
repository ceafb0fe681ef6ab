"""The Functions host emulator driving a test-only app against a real Azurite."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from sandbox.azurite import Azurite
from shared.errors import SettingError
from shared.host import BindingError, FunctionsHost, HostError, HostOptions, QueueOptions
from tests.host import app as test_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _reset_recorder() -> Iterator[None]:
    test_app.recorder.reset()
    yield
    test_app.recorder.reset()


@pytest.fixture
def env(azurite: Azurite) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:12]
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "TEST_QUEUE": f"work-{suffix}",
        "TEST_OUT_QUEUE": f"out-{suffix}",
        "TEST_SCHEDULE": "0 0 0 1 1 *",
    }


def make_host(env: dict[str, str], **queues: object) -> FunctionsHost:
    options = HostOptions(queues=QueueOptions(**queues), function_timeout=60.0)
    return FunctionsHost(env, app=test_app.app, host_json=options)


def raw_client(env: dict[str, str], queue: str) -> QueueClient:
    return QueueClient.from_connection_string(env["AzureWebJobsStorage"], queue)


async def test_timer_fans_out_through_the_queue_output_base64_encoded(env: dict[str, str]) -> None:
    host = make_host(env)
    items = [json.dumps({"n": n}) for n in range(3)] + ["plain text é"]
    test_app.recorder.fan_out = items
    sent = await host.run_timer("plan")
    assert sent == {env["TEST_QUEUE"]: items}
    assert test_app.recorder.timer_calls == [False]

    raw = await host.peek(env["TEST_QUEUE"], decode=False)
    assert sorted(raw) == sorted(base64.b64encode(i.encode()).decode() for i in items)
    assert sorted(await host.peek(env["TEST_QUEUE"])) == sorted(items)

    result = await host.run_queue_until_idle(env["TEST_QUEUE"])
    assert (result.invocations, result.succeeded, result.failed) == (4, 4, 0)
    assert not result.timed_out
    assert await host.message_count(env["TEST_QUEUE"]) == 0
    seen = sorted(
        json.dumps(m["body"]) if "n" in m["body"] else m["body"]["text"]
        for m in test_app.recorder.messages
    )
    assert seen == sorted(items)
    first = test_app.recorder.messages[0]
    assert first["id"]
    assert first["pop"]
    assert first["dequeue_count"] == 1
    host.close()


async def test_a_failing_timer_sends_nothing(env: dict[str, str]) -> None:
    host = make_host(env)
    test_app.recorder.fail_timer = True
    with pytest.raises(RuntimeError, match="planning failed"):
        await host.run_timer("plan")
    assert await host.message_count(env["TEST_QUEUE"]) == 0
    host.close()


async def test_output_binding_of_a_queue_function(env: dict[str, str]) -> None:
    host = make_host(env)
    body = json.dumps({"forward": True, "n": 1})
    await host.enqueue(env["TEST_QUEUE"], body)
    result = await host.run_queue_until_idle(env["TEST_QUEUE"])
    assert result.succeeded == 1
    assert await host.peek(env["TEST_OUT_QUEUE"]) == [body]
    host.close()


async def test_queue_messages_run_concurrently_up_to_batch_size(env: dict[str, str]) -> None:
    host = make_host(env, batch_size=4, new_batch_threshold=0)
    await host.enqueue(env["TEST_QUEUE"], *(json.dumps({"wait_for": 4, "n": n}) for n in range(12)))
    result = await host.run_queue_until_idle(env["TEST_QUEUE"])
    assert result.succeeded == 12
    assert test_app.recorder.max_active == 4
    assert result.max_in_flight == 4
    host.close()


async def test_new_batch_threshold_bounds_concurrency(env: dict[str, str]) -> None:
    # Batch 1 is two quick and two held messages; once the quick ones are done, two are in
    # flight (= newBatchThreshold), so batch 2 is fetched: six run at once, never more.
    host = make_host(env, batch_size=4, new_batch_threshold=2)
    quick = [json.dumps({"n": n}) for n in range(2)]
    held = [json.dumps({"wait_for": 6, "n": n}) for n in range(2, 10)]
    await host.enqueue(env["TEST_QUEUE"], *quick, *held)
    result = await host.run_queue_until_idle(env["TEST_QUEUE"])
    assert result.succeeded == 10
    assert test_app.recorder.max_active == 6  # batchSize + newBatchThreshold
    host.close()


async def test_failing_message_is_retried_then_poisoned_with_its_reason_logged(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    host = make_host(env, max_dequeue_count=3)
    body = json.dumps({"fail": True, "n": 7})
    await host.enqueue(env["TEST_QUEUE"], body, json.dumps({"n": 8}))
    with caplog.at_level(logging.INFO, logger="shared.host"):
        result = await host.run_queue_until_idle(env["TEST_QUEUE"])
    assert (result.invocations, result.succeeded, result.failed, result.poisoned) == (4, 1, 3, 1)
    assert (host.poisoned, host.failed) == (1, 3)  # what drain/serve report to the CLI
    counts = [m["dequeue_count"] for m in test_app.recorder.messages if m["body"].get("fail")]
    assert counts == [1, 2, 3]
    poison = env["TEST_QUEUE"] + "-poison"
    assert await host.peek(poison) == [body]  # the same body
    assert await host.message_count(env["TEST_QUEUE"]) == 0

    failures = [r.getMessage() for r in caplog.records if "failed on message" in r.getMessage()]
    assert len(failures) == 3
    message_id = (
        test_app.recorder.messages[0]["id"]
        if test_app.recorder.messages[0]["body"].get("fail")
        else test_app.recorder.messages[1]["id"]
    )
    for count, line in enumerate(failures, start=1):
        assert line.startswith("Function work failed on message ")
        assert f"(dequeue count {count} of 3)" in line
        assert "ValueError: cannot process item 7" in line
    assert any(message_id in line for line in failures)
    moved = [r for r in caplog.records if "moved to" in r.getMessage()]
    assert len(moved) == 1
    assert moved[0].levelno == logging.ERROR
    assert poison in moved[0].getMessage()
    assert "function work failed 3 time(s)" in moved[0].getMessage()
    assert "cannot process item 7" in moved[0].getMessage()
    host.close()


async def test_non_base64_body_goes_to_poison_without_running_the_function(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    host = make_host(env)
    queue = env["TEST_QUEUE"]
    client = raw_client(env, queue)
    client.create_queue()
    client.send_message('{"n": 1} is not base64!')  # no TextBase64EncodePolicy
    with caplog.at_level(logging.INFO, logger="shared.host"):
        result = await host.run_queue_until_idle(queue)
    assert (result.invocations, result.poisoned) == (0, 1)
    assert test_app.recorder.messages == []
    assert await host.peek(queue + "-poison", decode=False) == ['{"n": 1} is not base64!']
    assert any("not valid base64" in r.getMessage() for r in caplog.records)
    client.close()
    host.close()


async def test_message_encoding_none(env: dict[str, str]) -> None:
    host = make_host(env, message_encoding="none")
    await host.enqueue(env["TEST_QUEUE"], "not json, not base64")
    assert await host.peek(env["TEST_QUEUE"]) == ["not json, not base64"]
    result = await host.run_queue_until_idle(env["TEST_QUEUE"])
    assert result.succeeded == 1
    assert test_app.recorder.messages[0]["body"] == {"text": "not json, not base64"}
    host.close()


async def test_visibility_timeout_hides_a_failed_message(env: dict[str, str]) -> None:
    host = make_host(env, visibility_timeout=3600.0, max_dequeue_count=5)
    await host.enqueue(env["TEST_QUEUE"], json.dumps({"fail": True}))
    result = await host.run_queue_until_idle(env["TEST_QUEUE"], wait_for_invisible=False)
    assert (result.invocations, result.failed, result.poisoned) == (1, 1, 0)
    assert await host.message_count(env["TEST_QUEUE"]) == 1  # still there...
    assert await host.peek(env["TEST_QUEUE"]) == []  # ...but invisible for an hour
    assert await host.message_count(env["TEST_QUEUE"] + "-poison") == 0
    # Waiting for it would only time out: the drain says so instead of hanging.
    result = await host.run_queue_until_idle(env["TEST_QUEUE"], timeout=0.5)
    assert result.timed_out
    assert result.invocations == 0
    host.close()


async def test_message_already_over_max_dequeue_count_goes_to_poison(env: dict[str, str]) -> None:
    host = make_host(env, max_dequeue_count=2)
    queue = env["TEST_QUEUE"]
    await host.enqueue(queue, json.dumps({"n": 1}))
    client = raw_client(env, queue)
    for _ in range(2):  # deliveries that never completed (a host that died mid-message)
        (message,) = client.receive_messages(max_messages=1)
        client.update_message(message, visibility_timeout=0)
    result = await host.run_queue_until_idle(queue)
    assert (result.invocations, result.poisoned) == (0, 1)
    assert await host.peek(queue + "-poison") == [json.dumps({"n": 1})]
    client.close()
    host.close()


async def test_serve_processes_until_stopped(env: dict[str, str]) -> None:
    host = make_host(env, max_polling_interval=0.2)
    stop = asyncio.Event()
    serving = asyncio.create_task(host.serve(stop, install_signal_handlers=False))
    await host.enqueue(env["TEST_QUEUE"], *(json.dumps({"n": n}) for n in range(5)))
    for _ in range(200):
        if (
            len(test_app.recorder.messages) == 5
            and await host.message_count(env["TEST_QUEUE"]) == 0
        ):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(serving, 10)
    assert host.stats["work"].succeeded == 5
    assert test_app.recorder.timer_calls == []  # the yearly timer did not fire
    host.close()


def test_daemon_stops_gracefully_on_sigterm(env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "host.log"
    child_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.host", "--app", "tests.host.app:app", "serve"],
            cwd=ROOT,
            env=child_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while "Host started" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "Received SIGTERM" in text
    assert "Host stopped" in text
    assert env["AzureWebJobsStorage"] not in text


def test_setting_expressions_name_the_missing_setting(env: dict[str, str]) -> None:
    del env["TEST_QUEUE"]
    with pytest.raises(SettingError) as info:
        make_host(env)
    assert info.value.setting == "TEST_QUEUE"
    assert "%TEST_QUEUE%" in str(info.value)
    assert "queueName" in str(info.value)


def test_invalid_queue_names_are_refused(env: dict[str, str]) -> None:
    env["TEST_QUEUE"] = "Upper_Case"
    with pytest.raises(BindingError, match="'Upper_Case' is not a valid queue name"):
        make_host(env)


async def test_unknown_functions_and_queues(env: dict[str, str]) -> None:
    host = make_host(env)
    with pytest.raises(HostError, match="no function named 'nope'"):
        await host.run_timer("nope")
    with pytest.raises(HostError, match="not timer-triggered"):
        await host.run_timer("work")
    with pytest.raises(HostError, match="no queue-triggered function listens on queue 'other'"):
        await host.run_queue_until_idle("other")
    host.close()


def test_the_project_app_loads(azurite: Azurite) -> None:
    import importlib

    import function_app

    # The sample settings name every setting the app's bindings refer to.
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    env = {**sample, "AzureWebJobsStorage": azurite.connection_string}
    importlib.reload(function_app)  # a fresh app object: get_functions() works once per app
    host = FunctionsHost(env, app=function_app.app, host_json=ROOT / "host.json")
    assert host.functions
    for spec in host.functions.values():
        assert spec.trigger.type in ("timerTrigger", "queueTrigger")
        assert "%" not in json.dumps(dict(spec.trigger.properties))
    host.close()


def test_cli_drain_with_its_own_azurite() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAEMON_", "AzureWebJobs"))}
    env.update(
        DAEMON_JOBS_QUEUE="cli-jobs",
        DAEMON_SWEEP_SCHEDULE="0 */15 * * * *",
        AzureWebJobsStorage="UseDevelopmentStorage=true",
    )
    result = subprocess.run(
        [sys.executable, "-m", "shared", "drain", "--azurite"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "invocations 0" in result.stdout


async def test_serve_counts_failed_timer_runs(env: dict[str, str]) -> None:
    env["TEST_SCHEDULE"] = "* * * * * *"  # every second
    host = make_host(env, max_polling_interval=0.2)
    test_app.recorder.fail_timer = True
    stop = asyncio.Event()
    serving = asyncio.create_task(host.serve(stop, install_signal_handlers=False))
    for _ in range(100):
        if host.timer_failures:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(serving, 10)
    assert host.timer_failures >= 1
    assert host.failed >= host.timer_failures
    assert await host.message_count(env["TEST_QUEUE"]) == 0  # a failed timer sends nothing
    host.close()
