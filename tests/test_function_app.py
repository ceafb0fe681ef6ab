"""function_app.py: imports with no settings, and its functions' bindings are consistent."""

from __future__ import annotations

import inspect
import json
import os

import azure.functions as func

from tests.fresh_python import run_fresh


def _functions() -> list[func.Function]:
    # A fresh import in a subprocess proves nothing is read at import; here we build the
    # app object once per test via importlib so get_functions() is called once per app.
    import importlib

    module = importlib.import_module("function_app")
    module = importlib.reload(module)
    functions: list[func.Function] = module.app.get_functions()
    return functions


def test_imports_with_no_settings_and_nothing_heavy() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAEMON_")}
    code = (
        "import sys, function_app; "
        "heavy = [m for m in ('shared.instance', 'azure.identity', 'azure.keyvault.certificates',"
        " 'httpx') if m in sys.modules]; "
        "print(len(function_app.app.get_functions()), heavy)"
    )
    count, heavy = run_fresh(code, env).stdout.strip().split(" ", 1)
    assert int(count) >= 1
    assert heavy == "[]"


def test_parameter_names_match_binding_names() -> None:
    """What the real worker's validate_function_params checks; a mismatch drops the app."""
    for function in _functions():
        user_function = function.get_user_function()
        # "context" is the worker's own (the invocation context), not a binding
        params = set(inspect.signature(user_function).parameters) - {"context"}
        bindings = {b.name for b in function.get_bindings() if b.name != "$return"}
        assert params == bindings, function.get_function_name()
        assert inspect.iscoroutinefunction(user_function), "functions must be async"


def test_binding_json_is_setting_driven_and_identity_capable() -> None:
    bindings = {
        f.get_function_name(): json.loads(f.get_function_json())["bindings"] for f in _functions()
    }
    assert set(bindings) == {"sweep_timer", "jobs_worker"}
    timer = {b["name"]: b for b in bindings["sweep_timer"]}
    assert timer["timer"]["type"] == "timerTrigger"
    assert timer["timer"]["schedule"] == "%DAEMON_SWEEP_SCHEDULE%"
    assert timer["timer"]["runOnStartup"] is False
    # the sweep sends its fan-out itself, before saving its checkpoint: no output binding
    assert set(timer) == {"timer"}
    [trigger] = bindings["jobs_worker"]
    assert trigger["type"] == "queueTrigger"
    assert trigger["direction"] == "IN"
    assert trigger["name"] == "msg"
    assert trigger["queueName"] == "%DAEMON_JOBS_QUEUE%"
    # AzureWebJobsStorage works as a connection string or identity-based
    # (AzureWebJobsStorage__accountName + __credential=managedidentity)
    assert trigger["connection"] == "AzureWebJobsStorage"
