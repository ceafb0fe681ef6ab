"""Logging for every entry point: one setup, and the run context on every record.

``configure_logging(verbose=...)`` is the one place the CLIs set up logging.
``run_context(job=..., tenant=..., correlation_id=...)`` is a context manager: every log
record emitted inside it (in this task and tasks it starts) carries ``job``, ``tenant`` and
``correlation_id`` attributes, and the default format shows them.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["RunContext", "configure_logging", "current_run", "run_context"]


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


class RunContextFilter(logging.Filter):
    """Adds ``job``, ``tenant``, ``correlation_id`` and ``run`` (a printable prefix)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        record.job = context.job if context else ""
        record.tenant = context.tenant if context else ""
        record.correlation_id = context.correlation_id if context else ""
        record.run = (
            f"[{context.job} {context.tenant} {context.correlation_id}] " if context else ""
        )
        return True


def configure_logging(*, verbose: bool = False) -> None:
    """Completed by the operators work (issue: never lose or corrupt a job)."""
    handler = logging.StreamHandler()
    handler.addFilter(RunContextFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(run)s%(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
