"""The fleet budget on a real table (Azurite): instances leasing concurrently stay within the
bucket, ETag conflicts are real and retried, an unreachable table means pacing alone and the
work goes on, and the shared budget resumes once the table answers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from sandbox.azurite import Azurite
from shared.storage import storage_connection
from shared.webapi.fleet import FleetBudget, FleetConfig, FleetConflictError, TableBudgetStore
from shared.webapi.operations import Cost
from shared.webapi.pacing import PacingConfig, TenantPacer
from tests.clock import FakeClock

RATE = 50.0
_names = itertools.count(1)


@pytest.fixture
def store(azurite: Azurite) -> Iterator[TableBudgetStore]:
    connection = storage_connection({"AzureWebJobsStorage": azurite.connection_string})
    table = TableBudgetStore.from_connection(connection, table_name=f"fleettest{next(_names)}")
    yield table
    table.close()


def _budget(store: Any, clock: Any, **kwargs: Any) -> FleetBudget:
    return FleetBudget(
        store, "app-1", "tenant-a", FleetConfig(writes_per_second=RATE, **kwargs), clock=clock
    )


@pytest.mark.parametrize("instances", [2, 4])
async def test_instances_leasing_concurrently_stay_within_the_bucket(
    store: TableBudgetStore, instances: int
) -> None:
    clock = FakeClock(1_800_000_000.0)
    budgets = [_budget(store, clock) for _ in range(instances)]
    spent = [0] * instances
    rounds, step = 60, 0.1  # 6 s of (manual) time

    async def spend(i: int) -> None:
        while (await budgets[i].take(1)) == 0.0:
            spent[i] += 1
            if spent[i] % 7 == 0:
                await asyncio.sleep(0)  # let the others' leases interleave

    for r in range(rounds):
        # who asks first varies from round to round, as it does between machines
        order = [(i + r) % instances for i in range(instances)]
        await asyncio.gather(*(spend(i) for i in order))
        await asyncio.gather(*(b.settled() for b in budgets))
        clock.now += step
    config = budgets[0].config
    leased = sum(b.stats.leased_writes for b in budgets)
    assert sum(spent) <= leased
    assert leased <= config.capacity + config.rate * rounds * step + 1e-6
    assert sum(spent) >= 0.8 * config.rate * rounds * step  # the fleet gets its budget
    assert [b.stats.failures for b in budgets] == [0] * instances, [b.stats for b in budgets]
    assert all(s > 0 for s in spent)  # every instance got a share


class InterleavingStore:
    """The real table, with another instance's lease slipped in after this one's read."""

    def __init__(self, inner: TableBudgetStore, other: FleetBudget, times: int) -> None:
        self.inner = inner
        self.other = other
        self.times = times

    def read(self, partition: str, row: str) -> tuple[dict[str, Any], str] | None:
        found = self.inner.read(partition, row)
        if self.times:
            self.times -= 1
            self.other._lease(0.0)  # writes the entity: our ETag is now stale
        return found

    def create(self, entity: Mapping[str, Any]) -> str:
        return self.inner.create(entity)

    def update(self, entity: Mapping[str, Any], etag: str) -> str:
        return self.inner.update(entity, etag)


async def test_a_stale_etag_is_a_conflict_and_the_lease_is_retried(
    store: TableBudgetStore,
) -> None:
    clock = FakeClock(1_800_000_000.0)
    other = _budget(store, clock)
    assert await other.take(1) == 0.0  # the entity exists
    entity, etag = store.read("app-1", "tenant-a") or ({}, "")
    assert await _budget(store, clock).take(1) == 0.0  # another lease moves the ETag on
    with pytest.raises(FleetConflictError):
        store.update(entity, etag)

    clock.now += 10.0  # the bucket refills
    small = _budget(store, clock, slice_seconds=0.05)  # leaves room for ours
    budget = _budget(InterleavingStore(store, small, times=2), clock)
    assert await budget.take(1) == 0.0
    assert budget.stats.conflicts == 2
    assert budget.stats.leases == 1
    assert budget.active


async def test_storage_down_means_pacing_alone_then_the_fleet_budget_resumes(
    store: TableBudgetStore,
) -> None:
    # nothing listens on port 9 of this machine's loopback: connection refused at once
    dead = storage_connection(
        {
            "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            "AccountKey=a2V5;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        }
    )
    down = TableBudgetStore.from_connection(dead, timeout_seconds=1.0)
    time = FakeClock()
    budget = FleetBudget(
        down,
        "app-1",
        "tenant-a",
        FleetConfig(writes_per_second=RATE, retry_seconds=5.0),
        clock=time.clock,
    )
    pacer = TenantPacer(
        PacingConfig(writes_per_second=RATE), clock=time.clock, sleep=time.sleep, fleet=budget
    )
    for _ in range(300):  # 6 s of work at the budget: every request admitted
        await pacer.acquire(Cost(writes=1, resource_units=1))
    assert not budget.active
    assert budget.stats.leases == 0
    assert 1 <= budget.stats.failures <= 3  # retried every 5 s, not per request
    down.close()

    budget.table = store  # the table answers again
    time.now += 5.0
    for _ in range(100):
        await pacer.acquire(Cost(writes=1, resource_units=1))
    await budget.settled()
    assert budget.active
    assert budget.stats.recoveries == 1
    assert budget.stats.leases >= 1
    assert store.read("app-1", "tenant-a") is not None


def _settings_env(azurite: Azurite, **overrides: str) -> dict[str, str]:
    return {
        "DAEMON_AUTH_MODE": "keyvault-certificate",
        "DAEMON_TENANT_ID": "11111111-1111-1111-1111-111111111111",
        "DAEMON_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
        "DAEMON_KEY_VAULT_URL": "https://myvault.vault.azure.net/",
        "DAEMON_CERTIFICATE_NAME": "daemon-cert",
        "AzureWebJobsStorage": azurite.connection_string,
        **overrides,
    }


@pytest.mark.parametrize(("setting", "expected"), [("true", True), ("false", False)])
async def test_the_instance_wires_the_fleet_budget_when_storage_is_configured(
    azurite: Azurite, setting: str, expected: bool
) -> None:
    from shared.instance import Instance

    instance = Instance.from_env(_settings_env(azurite, DAEMON_FLEET_BUDGET=setting))
    try:
        pacer = instance.batch_engine().pacer
        assert (pacer.fleet is not None) is expected
        if pacer.fleet is not None:
            assert pacer.fleet.app == "22222222-2222-2222-2222-222222222222"
            assert pacer.fleet.tenant == "11111111-1111-1111-1111-111111111111"
            assert await pacer.fleet.take(1) == 0.0  # a real lease from Azurite
            assert pacer.fleet.stats.leases == 1
    finally:
        await instance.aclose()


async def test_without_storage_the_instance_paces_alone() -> None:
    from shared.instance import Instance
    from shared.settings import load_settings

    settings = load_settings(
        {
            "DAEMON_AUTH_MODE": "keyvault-certificate",
            "DAEMON_TENANT_ID": "11111111-1111-1111-1111-111111111111",
            "DAEMON_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
            "DAEMON_KEY_VAULT_URL": "https://myvault.vault.azure.net/",
            "DAEMON_CERTIFICATE_NAME": "daemon-cert",
        }
    )
    instance = Instance(settings)
    try:
        assert instance.batch_engine().pacer.fleet is None
    finally:
        await instance.aclose()
