"""Logging: one setup for every CLI, and the run context on every record of a run."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest

from shared.logs import RunContextFilter, configure_logging, current_run, run_context


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    """A plain handler with no filter: what any other handler (the worker's) would see."""
    handler = _Records()
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_records_inside_a_run_carry_job_tenant_and_correlation_id(records: _Records) -> None:
    log = logging.getLogger("tests.logs")
    log.info("before")
    with run_context(job="provision", tenant="contoso.com", correlation_id="hr-1") as ctx:
        assert current_run() == ctx
        log.info("inside")
    log.info("after")
    before, inside, after = records.records
    assert (inside.job, inside.tenant, inside.correlation_id) == (  # type: ignore[attr-defined]
        "provision",
        "contoso.com",
        "hr-1",
    )
    assert inside.run == "[provision contoso.com hr-1] "  # type: ignore[attr-defined]
    for outside in (before, after):
        assert outside.tenant == ""  # type: ignore[attr-defined]
        assert outside.correlation_id == ""  # type: ignore[attr-defined]
    assert current_run() is None


def test_context_follows_tasks_and_threads_and_does_not_leak(records: _Records) -> None:
    log = logging.getLogger("tests.logs")

    async def one(tenant: str, correlation_id: str) -> None:
        with run_context(job="provision", tenant=tenant, correlation_id=correlation_id):
            await asyncio.sleep(0)
            log.info("in task")
            await asyncio.to_thread(log.info, "in thread")

    async def both() -> None:
        await asyncio.gather(one("t1", "c1"), one("t2", "c2"))
        log.info("outside")

    asyncio.run(both())
    pairs = sorted(
        (r.getMessage(), r.tenant, r.correlation_id)  # type: ignore[attr-defined]
        for r in records.records
    )
    assert pairs == [
        ("in task", "t1", "c1"),
        ("in task", "t2", "c2"),
        ("in thread", "t1", "c1"),
        ("in thread", "t2", "c2"),
        ("outside", "", ""),
    ]


def test_filter_stamps_records_made_elsewhere() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    with run_context(job="sweep", tenant="t", correlation_id="c"):
        assert RunContextFilter().filter(record) is True
    assert record.run == "[sweep t c] "  # type: ignore[attr-defined]


@pytest.mark.usefixtures("restore_logging")  # tests/cli_fixtures.py
def test_configure_logging_shows_info_summary_lines_with_the_run_prefix() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    log = logging.getLogger("shared.jobs.dispatch")
    with run_context(job="provision", tenant="contoso.com", correlation_id="hr-7"):
        log.info("provision hr-7: planned 3, applied 3")
    logging.getLogger("azure.core.pipeline").info("request noise")
    logging.getLogger("shared").debug("debug noise")
    text = stream.getvalue()
    assert "INFO shared.jobs.dispatch: [provision contoso.com hr-7] provision hr-7" in text
    assert "request noise" not in text
    assert "debug noise" not in text


@pytest.mark.usefixtures("restore_logging")  # tests/cli_fixtures.py
def test_configure_logging_twice_keeps_one_handler_and_others_handlers() -> None:
    root = logging.getLogger()
    foreign = _Records()
    root.addHandler(foreign)
    first, second = io.StringIO(), io.StringIO()
    configure_logging(stream=first)
    configure_logging(verbose=True, stream=second)
    logging.getLogger("shared").debug("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1
    assert foreign in root.handlers
    assert root.level == logging.DEBUG
