"""host.json options and timer schedules (pure, no I/O)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from shared.host import (
    HostConfigError,
    HostOptions,
    QueueOptions,
    load_host_options,
    parse_schedule,
)
from shared.host.config import parse_timespan


def test_defaults_are_the_storage_extensions() -> None:
    options = HostOptions.from_json({"version": "2.0"})
    assert options.queues == QueueOptions(
        batch_size=16,
        new_batch_threshold=8,
        max_dequeue_count=5,
        visibility_timeout=0.0,
        max_polling_interval=60.0,
        message_encoding="base64",
    )
    assert options.function_timeout == 300.0


def test_project_host_json_is_understood() -> None:
    options = load_host_options(Path(__file__).resolve().parents[2] / "host.json")
    assert options.function_timeout == 600.0


def test_queue_options_are_read() -> None:
    options = HostOptions.from_json(
        {
            "version": "2.0",
            "functionTimeout": "-1",
            "extensions": {
                "queues": {
                    "batchSize": 4,
                    "maxDequeueCount": 2,
                    "visibilityTimeout": "00:00:30",
                    "maxPollingInterval": 2000,
                    "messageEncoding": "None",
                }
            },
        }
    )
    assert options.function_timeout is None
    queues = options.queues
    assert (queues.batch_size, queues.new_batch_threshold, queues.max_concurrency) == (4, 2, 6)
    assert (queues.max_dequeue_count, queues.visibility_timeout) == (2, 30.0)
    assert queues.max_polling_interval == 2.0
    assert not queues.base64


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"version": "1.0"}, "version"),
        ({"version": "2.0", "functionTimeout": "ten"}, "functionTimeout"),
        ({"version": "2.0", "extensions": {"queues": {"batchSize": 64}}}, "batchSize"),
        ({"version": "2.0", "extensions": {"queues": {"batchSize": "8"}}}, "batchSize"),
        ({"version": "2.0", "extensions": {"queues": {"maxDequeueCount": 0}}}, "maxDequeueCount"),
        (
            {"version": "2.0", "extensions": {"queues": {"visibilityTimeout": "00:99:00"}}},
            "visibilityTimeout",
        ),
        (
            {"version": "2.0", "extensions": {"queues": {"messageEncoding": "utf8"}}},
            "messageEncoding",
        ),
        (
            {"version": "2.0", "extensions": {"queues": {"maxPollingInterval": 10}}},
            "maxPollingInterval",
        ),
        ({"version": "2.0", "extensions": {"queues": {"batchsize": 4}}}, "batchsize"),
    ],
)
def test_bad_options_name_the_key(document: dict[str, object], key: str) -> None:
    with pytest.raises(HostConfigError) as info:
        HostOptions.from_json(document)
    assert key in info.value.key
    assert str(info.value).startswith("host.json ")


def test_timespans() -> None:
    assert parse_timespan("k", "1.02:03:04.5") == 93784.5
    assert parse_timespan("k", 1500) == 1.5
    assert parse_timespan("k", -1) is None


def test_ncrontab_schedules() -> None:
    start = datetime(2026, 3, 6, 10, 7, 30, tzinfo=timezone.utc)  # a Friday
    every_five = parse_schedule("0 */5 * * * *")
    assert every_five.next_after(start) == datetime(2026, 3, 6, 10, 10, tzinfo=timezone.utc)
    weekdays = parse_schedule("0 30 9 * * Mon-Fri")
    assert weekdays.next_after(start) == datetime(2026, 3, 9, 9, 30, tzinfo=timezone.utc)
    yearly = parse_schedule("0 0 0 1 Jan *")
    assert yearly.next_after(start) == datetime(2027, 1, 1, tzinfo=timezone.utc)
    interval = parse_schedule("00:15:00")
    assert interval.next_after(start) == datetime(2026, 3, 6, 10, 22, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 fields"),
        ("0 61 * * * *", "minute field"),
        ("0 0 0 31 Feb *", "never fires"),
        ("0 */0 * * * *", "step"),
        ("00:00:00", "must be positive"),
    ],
)
def test_bad_schedules(expression: str, message: str) -> None:
    with pytest.raises(HostConfigError, match=message):
        parse_schedule(expression).next_after(datetime(2026, 1, 1, tzinfo=timezone.utc))
