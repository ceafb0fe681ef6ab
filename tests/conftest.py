"""Session-wide fixtures: the log-hygiene watch over every test.

Every log record emitted during the whole session is kept (formatted, with exception text).
At the end, none may contain a token, assertion, client secret or private key that any
sandbox issued or saw. Sandboxes started by tests register their state with
``register_secret_source`` so the check knows what to look for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import pytest

pytest_plugins = ["tests.cli_fixtures", "tests.markers"]

_sources: list[Callable[[], Iterable[str]]] = []


def register_secret_source(source: Callable[[], Iterable[str]]) -> None:
    _sources.append(source)


class _Keeper(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.texts.append(self.format(record))
        except Exception:  # a record that cannot even be formatted still gets its raw parts
            self.texts.append(f"{record.msg!r} {record.args!r}")


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log_record() -> Iterator[_Keeper]:
    keeper = _Keeper()
    root = logging.getLogger()
    root.addHandler(keeper)
    previous = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield keeper
    finally:
        root.removeHandler(keeper)
        root.setLevel(previous)
    secrets = {s for source in _sources for s in source() if len(s) >= 16}
    leaks = [
        (text[:120], secret[:12] + "…")
        for text in keeper.texts
        for secret in secrets
        if secret in text
    ]
    assert not leaks, f"secret values found in {len(leaks)} log record(s): {leaks[:3]}"
