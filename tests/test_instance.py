"""Where the per-instance objects find the app's host.json: given by the host, never guessed
from the package's own location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.instance import app_host_json
from tests.fresh_python import run_fresh


def test_host_json_is_in_the_script_root_the_host_names(tmp_path: Path) -> None:
    assert app_host_json({"AzureWebJobsScriptRoot": str(tmp_path)}) == tmp_path / "host.json"


def test_without_a_script_root_it_is_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert app_host_json({}) == tmp_path / "host.json"
    assert app_host_json({"AzureWebJobsScriptRoot": "  "}) == tmp_path / "host.json"


def test_the_first_api_call_does_not_import_storage_or_the_engine() -> None:
    """Cold start: an instance builds its API client without the storage SDK, the batch
    engine or the fleet budget, which load when first used (here: the state store)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAEMON_", "AzureWeb"))}
    env.update(
        {
            "DAEMON_AUTH_MODE": "client-secret",
            "DAEMON_TENANT_ID": "11111111-1111-1111-1111-111111111111",
            "DAEMON_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
            "DAEMON_CLIENT_SECRET": "not-a-real-secret",
            "DAEMON_JOBS_QUEUE": "daemon-jobs",
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        }
    )
    code = (
        "import asyncio, os, sys\n"
        "from shared.instance import Instance\n"
        "instance = Instance.from_env(os.environ)\n"
        "async def first_call():\n"
        "    instance.api_client()\n"
        "asyncio.run(first_call())\n"
        "heavy = ('azure.data.tables', 'azure.storage.queue', 'shared.webapi.engine',\n"
        "         'shared.webapi.fleet', 'shared.webapi.pacing', 'shared.storage.store')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "instance.store\n"
        "print('azure.data.tables' in sys.modules)\n"
    )
    before, after = run_fresh(code, env).stdout.strip().splitlines()
    assert before == "[]"
    assert after == "True"
