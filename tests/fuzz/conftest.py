"""Fixtures for the fuzz tests that need the real services: one sandbox and one Azurite for
the whole module (each example is cheap; starting them per example would not be)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.azurite import Azurite
from sandbox.graph import GraphConfig
from sandbox.seed import PLATFORM_SETTING_NAMES, Seed, settings_for
from sandbox.server import Sandbox
from shared.instance import Instance
from shared.settings import load_settings
from shared.storage import StateStore
from tests.sandbox_env import running_sandbox
from tests.storage.conftest import start_azurite

DOMAIN = "contoso.example"


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    yield from start_azurite()


class Services:
    """Not a dataclass: a failing example's printout must not list the settings (secrets)."""

    def __init__(
        self,
        sandbox: Sandbox,
        seed: Seed,
        instance: Instance,
        settings: dict[str, str],
        groups: list[str],
        mover_employee_id: str,
        mover_id: str,
    ) -> None:
        self.sandbox = sandbox
        self.seed = seed
        self.instance = instance
        self.settings = settings
        self.groups = groups
        self.mover_employee_id = mover_employee_id
        self.mover_id = mover_id

    @property
    def tenant(self) -> str:
        return self.seed.home_tenant_id

    def __repr__(self) -> str:
        return f"Services(tenant={self.tenant}, groups={self.groups})"


@pytest.fixture(scope="module")
def services(azurite: Azurite) -> Iterator[Services]:
    config = GraphConfig(
        app_tenant_write_limit=100_000,
        app_tenant_write_window=1.0,
        ru_limits=(100_000, 100_000, 100_000),
        ru_window=1.0,
        # short, so examples that wait for replication stay fast (still inside it)
        replication_delay=0.2,
    )
    with running_sandbox(config) as (sandbox, seed), pytest.MonkeyPatch.context() as patch:
        settings = settings_for(seed, sandbox, "keyvault-certificate")
        settings.update(
            AzureWebJobsStorage=azurite.connection_string,
            DAEMON_JOBS_QUEUE="fuzz-jobs",
            DAEMON_SWEEP_SCHEDULE="0 */15 * * * *",
            DAEMON_USER_DOMAIN=DOMAIN,
            DAEMON_ALLOWED_TENANTS=seed.home_tenant_id,
            DAEMON_API_WRITES_PER_SECOND="5000",
            DAEMON_API_RESOURCE_UNITS_PER_SECOND="50000",
        )
        # the SDKs read the managed-identity endpoint and the CA bundle from the environment
        for name in PLATFORM_SETTING_NAMES:
            if name in settings:
                patch.setenv(name, settings[name])
        directory = sandbox.graph.directory
        tenant = seed.home_tenant_id
        groups = [g["id"] for g in directory.seed_groups(tenant, 2, prefix="Fuzz")]
        (mover,) = directory.seed_users(tenant, 1, domain=DOMAIN, prefix="fuzzmover")
        directory.add_member(tenant, groups[0], mover["id"])
        store = StateStore.from_env(settings, table_prefix="fuzz")
        instance = Instance(load_settings(settings), store=store)
        try:
            yield Services(
                sandbox, seed, instance, settings, groups, mover["employeeId"], mover["id"]
            )
        finally:
            instance.close()
