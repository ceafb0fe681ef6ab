"""The test pyramid: every test is marked ``unit`` or ``e2e``, automatically and checked.

``e2e``: the test (or a fixture it uses, or a function of its module it calls) starts a real
server or process: a sandbox on HTTPS, Azurite, a subprocess. ``unit``: everything else —
pure code, ``httpx.MockTransport`` fakes, in-process ASGI apps, injected clocks.

The classification reads the source of the test, of every fixture in its closure and of the
module-level functions it calls (transitively). A unit test is then *held* to it: while it
runs, listening on a socket or starting a subprocess fails the test, so a misclassified test
cannot hide in ``pytest -m unit``.

``make test`` runs both; ``pytest -m unit`` runs the fast layer (seconds); ``pytest -m e2e``
the rest.
"""

from __future__ import annotations

import functools
import inspect
import re
import socket
import subprocess
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Calls that start a server or a process (the sandbox, Azurite, the CLI in a subprocess).
_STARTS_SERVER = re.compile(
    r"\b(?:Sandbox|Azurite|running_sandbox|start_azurite|Popen|subprocess\.run|"
    r"subprocess\.check_output|create_subprocess_exec|uvicorn|run_chaos|run_demo|run_fresh)\b"
)
_SEEN_LIMIT = 200  # functions followed per test: the module graph is small, this bounds it


@functools.cache
def _source(function: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def _code_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_names(const)


def _starts_server(function: Callable[..., Any]) -> bool:
    """True when ``function`` or a function of its own module it calls starts a server."""
    function = inspect.unwrap(function)
    module = getattr(function, "__module__", None)
    if module == __name__:  # the guard below names what it refuses
        return False
    pending = [function]
    seen: set[int] = set()
    while pending and len(seen) < _SEEN_LIMIT:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if _STARTS_SERVER.search(_source(current)):
            return True
        code = getattr(current, "__code__", None)
        if code is None:
            continue
        namespace = getattr(current, "__globals__", {})
        for name in _code_names(code):
            called = namespace.get(name)
            if inspect.isfunction(called) and called.__module__ == module:
                pending.append(called)
    return False


def _is_e2e(item: pytest.Item) -> bool:
    if not isinstance(item, pytest.Function):
        return True
    if _starts_server(item.function):
        return True
    definitions = item._fixtureinfo.name2fixturedefs
    for name in item.fixturenames:
        for definition in definitions.get(name, ()):
            if _starts_server(definition.func):
                return True
    return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unit: fast, in-process: no server, no subprocess")
    config.addinivalue_line("markers", "e2e: starts a sandbox, Azurite or a subprocess")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e if _is_e2e(item) else pytest.mark.unit)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_server(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("unit") is None:
        yield
        return

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError(
            f"{request.node.nodeid} is marked unit but starts a server or a process; "
            "tests/markers.py's classification missed it"
        )

    patch = pytest.MonkeyPatch()
    patch.setattr(socket.socket, "listen", refuse)
    patch.setattr(subprocess.Popen, "__init__", refuse)
    try:
        yield
    finally:
        patch.undo()
