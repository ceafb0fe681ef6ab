"""host.json, as far as the emulator honours it: ``functionTimeout`` and ``extensions.queues``.

Defaults are the storage extension's (v5): batchSize 16, newBatchThreshold batchSize/2,
maxDequeueCount 5, visibilityTimeout 0, maxPollingInterval 1 minute, messageEncoding base64.
Time spans are ``[d.]hh:mm:ss[.fff]`` strings or, as in host.json v2, integer milliseconds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import HostConfigError

__all__ = [
    "HostConfigError",
    "HostOptions",
    "QueueOptions",
    "load_host_options",
    "parse_timespan",
]

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")


def parse_timespan(key: str, value: Any) -> float | None:
    """Seconds for a host.json time span; None for ``-1`` (no limit)."""
    if isinstance(value, bool):
        raise HostConfigError(key, f"{value!r} is not a time span (expected 'hh:mm:ss')")
    if isinstance(value, int | float):
        return None if value == -1 else float(value) / 1000.0
    if isinstance(value, str):
        text = value.strip()
        if text == "-1":
            return None
        match = _TIMESPAN.match(text)
        if match:
            days, hours, minutes, seconds, fraction = match.groups()
            if int(minutes) < 60 and int(seconds) < 60:
                total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60
                return total + int(seconds) + float(f"0.{fraction or 0}")
    raise HostConfigError(key, f"{value!r} is not a time span (expected 'hh:mm:ss')")


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` of host.json."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    message_encoding: str = "base64"

    @property
    def base64(self) -> bool:
        return self.message_encoding == "base64"

    @property
    def max_concurrency(self) -> int:
        """At most this many messages are processed at once per function."""
        return self.batch_size + self.new_batch_threshold

    @classmethod
    def from_json(cls, queues: Mapping[str, Any]) -> QueueOptions:
        def key(name: str) -> str:
            return f"extensions.queues.{name}"

        def integer(name: str, default: int, low: int, high: int) -> int:
            value = queues.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int):
                raise HostConfigError(key(name), f"{value!r} is not an integer")
            if not low <= value <= high:
                raise HostConfigError(key(name), f"{value} is outside {low}..{high}")
            return value

        batch_size = integer("batchSize", 16, 1, 32)
        threshold = integer("newBatchThreshold", batch_size // 2, 0, 1000)
        max_dequeue = integer("maxDequeueCount", 5, 1, 1000)
        visibility = parse_timespan(key("visibilityTimeout"), queues.get("visibilityTimeout", 0))
        if visibility is None or visibility < 0:
            raise HostConfigError(key("visibilityTimeout"), "must be 0 or more")
        polling = parse_timespan(
            key("maxPollingInterval"), queues.get("maxPollingInterval", "00:01:00")
        )
        if polling is None or polling < 0.1:
            raise HostConfigError(key("maxPollingInterval"), "must be at least 100 ms")
        encoding = queues.get("messageEncoding", "base64")
        if not isinstance(encoding, str) or encoding.lower() not in ("base64", "none"):
            raise HostConfigError(key("messageEncoding"), f"{encoding!r}: expected base64 or none")
        unknown = sorted(
            set(queues)
            - {
                "batchSize",
                "newBatchThreshold",
                "maxDequeueCount",
                "visibilityTimeout",
                "maxPollingInterval",
                "messageEncoding",
            }
        )
        if unknown:
            raise HostConfigError(key(unknown[0]), "is not a queue setting the host knows")
        return cls(
            batch_size=batch_size,
            new_batch_threshold=threshold,
            max_dequeue_count=max_dequeue,
            visibility_timeout=visibility,
            max_polling_interval=polling,
            message_encoding=encoding.lower(),
        )


@dataclass(frozen=True)
class HostOptions:
    """What the emulator reads from host.json."""

    queues: QueueOptions = QueueOptions()
    function_timeout: float | None = 300.0  # Consumption plan default; None: no limit
    # not from host.json: how long beyond functionTimeout a received message stays invisible,
    # i.e. how soon a message whose worker died is delivered again (tests shorten it)
    lease_margin: float = 30.0

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> HostOptions:
        version = document.get("version")
        if version != "2.0":
            raise HostConfigError("version", f'{version!r}: expected "2.0"')
        extensions = document.get("extensions") or {}
        if not isinstance(extensions, Mapping):
            raise HostConfigError("extensions", "must be an object")
        queues = extensions.get("queues") or {}
        if not isinstance(queues, Mapping):
            raise HostConfigError("extensions.queues", "must be an object")
        timeout = parse_timespan("functionTimeout", document.get("functionTimeout", "00:05:00"))
        if timeout is not None and timeout <= 0:
            raise HostConfigError("functionTimeout", "must be positive (or -1 for no limit)")
        return cls(queues=QueueOptions.from_json(queues), function_timeout=timeout)


def load_host_options(path: Path) -> HostOptions:
    """The options of the host.json at ``path`` (its caller knows where the app root is)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise HostConfigError("(file)", f"{path} does not exist") from exc
    except json.JSONDecodeError as exc:
        raise HostConfigError("(file)", f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(document, Mapping):
        raise HostConfigError("(file)", f"{path} must hold a JSON object")
    return HostOptions.from_json(document)
