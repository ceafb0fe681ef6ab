"""The command lines' parts that need no storage: where the app root is, a clear error when
function_app cannot be imported, ``--azurite`` in an installation without the development
package, payload reading and the requeue bookkeeping."""

from __future__ import annotations

import base64
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import cli
from shared.commands.dev_storage import with_azurite
from shared.commands.enqueue import read_payload
from shared.commands.requeue import RequeueResult, _correlation_id
from shared.errors import ConfigurationError, HostConfigError, UsageError
from shared.host import __main__ as host_cli
from shared.host.app_root import SCRIPT_ROOT_SETTING, find_app_root, load_app
from shared.host.config import load_host_options

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def module_name() -> Iterator[str]:
    """A module name nothing else uses; forgotten afterwards (with the path it came from)."""
    name = f"app_{uuid.uuid4().hex[:12]}"
    path = list(sys.path)
    yield name
    sys.modules.pop(name, None)
    sys.path[:] = path


# -- the app root ---------------------------------------------------------------------------


def test_app_root_is_the_option_then_the_script_root_setting_then_the_cwd(tmp_path: Path) -> None:
    option, setting, cwd = (tmp_path / n for n in ("option", "setting", "cwd"))
    for folder in (option, setting, cwd):
        folder.mkdir()
    env = {SCRIPT_ROOT_SETTING: str(setting)}
    assert find_app_root(option, env, cwd=cwd).path == option.resolve()
    assert find_app_root(None, env, cwd=cwd).path == setting.resolve()
    found = find_app_root(None, {SCRIPT_ROOT_SETTING: " "}, cwd=cwd)
    assert (found.path, found.source) == (cwd.resolve(), "the current directory")
    assert found.host_json == cwd.resolve() / "host.json"


def test_a_missing_app_root_names_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"{SCRIPT_ROOT_SETTING} .*: no such directory"):
        find_app_root(None, {SCRIPT_ROOT_SETTING: str(tmp_path / "gone")})


def test_load_app_imports_from_the_app_root(tmp_path: Path, module_name: str) -> None:
    (tmp_path / f"{module_name}.py").write_text("app = 'the app'\nother = 2\n")
    root = find_app_root(tmp_path, {})
    assert load_app(f"{module_name}:app", root) == "the app"
    assert load_app(module_name, root) == "the app"
    assert load_app(f"{module_name}:other", root) == 2
    with pytest.raises(ConfigurationError, match="has no attribute 'nope'") as info:
        load_app(f"{module_name}:nope", root)
    assert isinstance(info.value.__cause__, AttributeError)


def test_a_missing_function_app_says_how_to_point_at_the_app_root(
    tmp_path: Path, module_name: str
) -> None:
    root = find_app_root(tmp_path, {})
    with pytest.raises(ConfigurationError) as info:
        load_app(f"{module_name}:app", root)
    message = str(info.value)
    assert f"there is no {module_name} in {tmp_path.resolve()} (--app-root)" in message
    assert "--app-root DIR" in message
    assert SCRIPT_ROOT_SETTING in message
    assert isinstance(info.value.__cause__, ImportError)


def test_an_app_whose_import_fails_names_the_missing_dependency(
    tmp_path: Path, module_name: str
) -> None:
    missing = f"dep_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module_name}.py").write_text(f"import {missing}\n")
    with pytest.raises(ConfigurationError, match=f"importing {module_name} from .* failed: No "):
        load_app(module_name, find_app_root(tmp_path, {}))


def test_the_runner_command_exits_2_in_one_line_for_a_bad_app_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert host_cli.main(["--app-root", str(tmp_path / "gone"), "drain"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --app-root {tmp_path / 'gone'}: no such directory\n"


def test_a_missing_host_json_keeps_the_os_error_as_its_cause(tmp_path: Path) -> None:
    with pytest.raises(HostConfigError, match="does not exist") as info:
        load_host_options(tmp_path / "host.json")
    assert isinstance(info.value.__cause__, FileNotFoundError)


# -- --azurite without the development package -----------------------------------------------


def test_azurite_option_without_the_sandbox_package_is_a_clear_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sandbox", None)  # as in a deployed app: no sandbox/
    monkeypatch.setitem(sys.modules, "sandbox.azurite", None)
    ran: list[bool] = []

    def command() -> int:
        ran.append(True)
        return 0

    with pytest.raises(UsageError, match="--azurite is a development option") as info:
        with_azurite(True, command)
    assert "clone of the repository" in str(info.value)
    assert ran == []
    assert with_azurite(False, lambda: 7) == 7  # without the option: just the command
    assert cli.main(["doctor", "--azurite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --azurite is a development option")
    assert err.count("\n") == 1


# -- enqueue and requeue-poison bookkeeping ------------------------------------------------


def test_payload_errors_are_one_line_and_keep_their_cause(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file") as missing:
        read_payload(str(tmp_path / "missing.json"))
    assert isinstance(missing.value.__cause__, FileNotFoundError)
    with pytest.raises(UsageError, match="is a directory"):
        read_payload(str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UsageError, match=r"is not JSON") as not_json:
        read_payload(str(bad))
    assert isinstance(not_json.value.__cause__, json.JSONDecodeError)
    good = tmp_path / "good.json"
    good.write_text('{"leavers": []}')
    assert read_payload(str(good)) == {"leavers": []}


def test_correlation_id_of_a_stored_message_never_raises() -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    assert _correlation_id(b64('{"correlationId": "hr-1"}')) == "hr-1"
    assert _correlation_id(b64('{"correlationId": 5}')) is None
    assert _correlation_id(b64("[1]")) is None
    assert _correlation_id("not base64 {") is None


def test_requeue_result_line() -> None:
    result = RequeueResult(queue="jobs", poison="jobs-poison", moved=2, skipped=1, left=1)
    assert result.line().startswith("moved 2 message(s) from jobs-poison to jobs; left 1 that")
    assert result.line().endswith("; 1 left in jobs-poison")
    dry = RequeueResult(queue="jobs", poison="jobs-poison", moved=3, left=3, dry_run=True)
    assert dry.line() == "would move 3 message(s) from jobs-poison to jobs; 3 left in jobs-poison"
