"""Logging for every entry point: one setup, and the run context on every record.

``configure_logging(verbose=...)`` is the one place the CLIs (``python -m shared ...`` and
``python -m shared.host ...``) set up logging: one handler on stderr (stdout stays for the
command's own output, such as ``doctor --json``), INFO by default so each job's summary line
shows, DEBUG with ``--verbose``; the Azure SDKs and HTTP libraries stay at WARNING (INFO with
``--verbose``) so their request logs never flood the output.

``run_context(job=..., tenant=..., correlation_id=...)`` is a context manager: every log
record emitted inside it (in this task, in tasks it starts and in ``asyncio.to_thread``
calls, which copy the context) carries ``job``, ``tenant`` and ``correlation_id``
attributes, and the default format shows them as a ``[job tenant correlation-id]`` prefix.
The attributes are set by a log record factory installed when this module is imported, so
every handler sees them, including ones this module did not install (the Functions
worker's, or an OpenTelemetry exporter, which turns record attributes into custom
dimensions); :class:`RunContextFilter` does the same for a single handler.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = [
    "LOG_FORMAT",
    "RunContext",
    "RunContextFilter",
    "configure_logging",
    "current_run",
    "run_context",
]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(run)s%(message)s"

# Libraries whose INFO/DEBUG output is per request: kept at WARNING unless --verbose.
_NOISY = ("azure", "httpx", "httpcore", "urllib3", "msal")


@dataclass(frozen=True)
class RunContext:
    job: str
    tenant: str
    correlation_id: str


_current: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "daemon_run_context", default=None
)


def current_run() -> RunContext | None:
    return _current.get()


@contextlib.contextmanager
def run_context(*, job: str, tenant: str, correlation_id: str) -> Iterator[RunContext]:
    context = RunContext(job, tenant, correlation_id)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def _stamp(record: logging.LogRecord) -> None:
    context = _current.get()
    record.job = context.job if context else ""
    record.tenant = context.tenant if context else ""
    record.correlation_id = context.correlation_id if context else ""
    record.run = f"[{context.job} {context.tenant} {context.correlation_id}] " if context else ""


class RunContextFilter(logging.Filter):
    """Adds ``job``, ``tenant``, ``correlation_id`` and ``run`` (a printable prefix)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _stamp(record)
        return True


def _install_record_factory() -> None:
    """Wrap the current log record factory once so every record gets the run context."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_daemon_run_context", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _stamp(record)
        return record

    factory._daemon_run_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install_record_factory()


class _DaemonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure_logging installs (replaced, not stacked, on a second call)."""


def configure_logging(*, verbose: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """Set up logging for a command-line run; returns the handler it installed.

    Handlers installed by someone else (a test harness, the Functions worker) are kept; a
    handler from an earlier call is replaced, so calling this twice does not double lines.
    """
    _install_record_factory()
    handler = _DaemonHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(RunContextFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _DaemonHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    return handler
