"""The whole app offline: sandbox (Entra ID, Key Vault, Graph) + Azurite + the host emulator
driving the real functions of function_app.py."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import function_app
from sandbox.azurite import Azurite
from sandbox.graph import GraphConfig
from shared.host import FunctionsHost, load_host_options
from shared.instance import reset_current_instance
from tests.sandbox_env import Env, running_sandbox
from tests.storage.conftest import start_azurite

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "contoso.example"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    yield from start_azurite()


class Stack(Env):
    """Env plus storage, the app settings in the process environment, and the host."""

    host: FunctionsHost
    queue: str
    app_settings: dict[str, str]

    @property
    def poison(self) -> str:
        return f"{self.queue}-poison"

    def configure(self, **settings: str) -> None:
        """Change app settings for this test; the next function run sees them (a new
        instance, as after an app-settings change in Azure)."""
        for name, value in settings.items():
            self._monkeypatch.setenv(name, value)
            self.app_settings[name] = value
        reset_current_instance()


@pytest.fixture
def stack(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    config = GraphConfig(
        app_tenant_write_limit=2000,
        app_tenant_write_window=1.0,
        ru_limits=(5000, 5000, 5000),
        ru_window=1.0,
    )
    with running_sandbox(config) as (sandbox, seed):
        env = Stack(sandbox, seed, monkeypatch)
        queue = f"jobs-{uuid.uuid4().hex[:12]}"
        settings = env.settings(
            "keyvault-certificate",
            AzureWebJobsStorage=azurite.connection_string,
            DAEMON_JOBS_QUEUE=queue,
            DAEMON_SWEEP_SCHEDULE="0 */15 * * * *",
            DAEMON_USER_DOMAIN=DOMAIN,
            DAEMON_API_WRITES_PER_SECOND="1000",
            DAEMON_API_RESOURCE_UNITS_PER_SECOND="4000",
        )
        # The functions read their settings from the process environment, as in Azure:
        # scoped to this test by monkeypatch.
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        reset_current_instance()
        options = load_host_options(ROOT / "host.json")
        # no 30 s visibility back-off in tests: counts, not timings
        options = dataclasses.replace(
            options, queues=dataclasses.replace(options.queues, visibility_timeout=0.0)
        )
        env.host = FunctionsHost(settings, app=function_app.app, host_json=options)
        env.queue = queue
        env.app_settings = settings
        try:
            yield env
        finally:
            env.host.close()
            reset_current_instance()
