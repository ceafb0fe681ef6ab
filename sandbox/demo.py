"""``python -m sandbox demo``: the daemon's main job, offline, end to end.

Starts the sandbox (Entra ID, Key Vault, a Graph-shaped directory API with Graph's throttling)
and Azurite, seeds a directory of thousands of users (some of them leavers), submits
provisioning jobs through the queue, runs the sweep timer (delta scan, fan-out), runs the
queue workers of function_app.py to completion through the offline host, and prints a
summary — with ``--json``, as one JSON object on the last line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox.azurite import Azurite
from sandbox.graph import GraphConfig
from sandbox.seed import USER_DOMAIN, seed_default, settings_for
from sandbox.server import Sandbox

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = USER_DOMAIN  # a verified domain of the seeded home tenant


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    users: int = 3000
    leavers: int = 400
    joiners: int = 300
    movers: int = 150
    groups: int = 3
    time_factor: float = 10.0  # Graph's budgets, compressed in time by this factor
    auth_mode: str = "keyvault-certificate"
    # seconds a new user or group is not yet readable or referenceable (not compressed)
    replication_delay: float = GraphConfig().replication_delay


def _graph_config(factor: float, replication_delay: float) -> GraphConfig:
    # Graph's identity-service budgets for a large tenant, every window ÷ factor
    config = GraphConfig().scaled(budget=1.0, time=1.0 / factor)
    config.replication_delay = replication_delay
    return config


def _jobs(
    tenant: str, users: list[dict[str, Any]], groups: list[str], cfg: DemoConfig
) -> list[str]:
    from shared.jobs.envelope import JobMessage

    texts = []
    joiners = [
        {
            "employeeId": f"N{i:05d}",
            "givenName": "New",
            "surname": f"Joiner{i:05d}",
            "department": "Engineering",
            "jobTitle": "Engineer",
            "groups": [groups[i % len(groups)]],
        }
        for i in range(cfg.joiners)
    ]
    for start in range(0, len(joiners), 100):
        texts.append(
            JobMessage.new(
                "provision",
                tenant,
                {"joiners": joiners[start : start + 100]},
                correlation_id=f"demo-joiners-{start // 100}",
            ).to_json()
        )
    movers = [
        {
            "employeeId": u["employeeId"],
            "department": "Marketing",
            "jobTitle": "Manager",
            "groups": [groups[0]],
        }
        for u in users[cfg.leavers : cfg.leavers + cfg.movers]
    ]
    for start in range(0, len(movers), 100):
        texts.append(
            JobMessage.new(
                "provision",
                tenant,
                {"movers": movers[start : start + 100]},
                correlation_id=f"demo-movers-{start // 100}",
            ).to_json()
        )
    return texts


async def _progress(
    graph: Any, host: Any, queue: str, stop: asyncio.Event, quiet: bool, expected: int
) -> None:
    start = time.monotonic()
    while not stop.is_set():
        if not quiet:
            waiting = await host.message_count(queue)
            stats = graph.stats
            width = 30
            done = min(width, stats.writes_applied * width // max(1, expected))
            sys.stderr.write(
                f"\r[{'#' * done}{'.' * (width - done)}] {stats.writes_applied:5d} writes "
                f"applied, {stats.throttled:3d} throttled, {waiting:2d} messages waiting, "
                f"{time.monotonic() - start:5.1f}s"
            )
            sys.stderr.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)
    if not quiet:
        sys.stderr.write("\n")


async def _run(cfg: DemoConfig, sandbox: Sandbox, azurite: Azurite, quiet: bool) -> dict[str, Any]:
    from shared.host import FunctionsHost, find_app_root, load_app
    from shared.instance import current_instance, reset_current_instance

    seed = seed_default(sandbox)
    tenant = seed.home_tenant_id
    users = sandbox.graph.directory.seed_users(
        tenant, cfg.users, leavers=cfg.leavers, domain=DOMAIN
    )
    groups = [g["id"] for g in sandbox.graph.directory.seed_groups(tenant, cfg.groups)]
    queue = f"demo-jobs-{uuid.uuid4().hex[:8]}"
    budget = _graph_config(cfg.time_factor, cfg.replication_delay)
    settings: dict[str, str] = {
        **settings_for(seed, sandbox, cfg.auth_mode),
        "AzureWebJobsStorage": azurite.connection_string,
        "DAEMON_JOBS_QUEUE": queue,
        "DAEMON_SWEEP_SCHEDULE": "0 */15 * * * *",
        "DAEMON_USER_DOMAIN": DOMAIN,
        "DAEMON_ALLOWED_TENANTS": tenant,
        "DAEMON_API_WRITES_PER_SECOND": str(
            budget.app_tenant_write_limit / budget.app_tenant_write_window
        ),
        "DAEMON_API_RESOURCE_UNITS_PER_SECOND": str(budget.ru_limits[0] / budget.ru_window),
    }
    # The functions read app settings from the environment, as in Azure (this is a process
    # of its own).
    os.environ.update(settings)
    reset_current_instance()
    # the repository is the Functions app root: its function_app.py and host.json
    root = find_app_root(ROOT, settings)
    host = FunctionsHost(settings, app=load_app("function_app:app", root), host_json=root.host_json)
    started = time.monotonic()
    stop = asyncio.Event()
    # joiners: create + group add; movers: update + group add; leavers: disable + revoke
    expected = 2 * (cfg.joiners + cfg.movers + cfg.leavers)
    progress = asyncio.create_task(_progress(sandbox.graph, host, queue, stop, quiet, expected))
    try:
        await host.enqueue(queue, *_jobs(tenant, users, groups, cfg))
        await host.run_timer("sweep_timer")
        drained = await host.run_queue_until_idle(queue, timeout=900)
    finally:
        stop.set()
        await progress
    seconds = time.monotonic() - started
    store = current_instance().store
    runs = [r for r in await store.list_runs("provision", tenant=tenant, limit=1000)]
    instance = current_instance()
    summary = {
        "planned": sum(r.planned for r in runs),
        "applied": sum(r.applied for r in runs),
        "failed": sum(r.failed for r in runs),
        "throttled": sum(r.throttled for r in runs),
        "token_requests": instance.token_cache.stats.token_requests,
        "seconds": round(seconds, 1),
        "jobs": len(runs),
        "messages_from_sweep": sum(1 for r in runs if r.correlation_id.startswith("sweep-")),
        "poisoned": drained.poisoned,
        "auth_mode": cfg.auth_mode,
        "users": cfg.users,
        "leavers_disabled": sum(
            1
            for u in users[: cfg.leavers]
            if not sandbox.graph.directory.tenant(tenant).users[u["id"]]["accountEnabled"]
        ),
        "duplicate_creates": len(sandbox.graph.stats.duplicate_creates()),
        "sandbox_token_requests": sandbox.state.counter("token_requests"),
        "graph_429s": sandbox.graph.stats.throttled,
        "time_factor": cfg.time_factor,
        "replication_delay": cfg.replication_delay,
    }
    await instance.aclose()
    host.close()
    reset_current_instance()
    return summary


def _render(summary: Mapping[str, Any]) -> str:
    return "\n".join(
        [
            "Demo summary (offline: sandbox + Azurite, Graph budgets compressed "
            f"{summary['time_factor']:g}x in time)",
            f"  directory          {summary['users']} users; {summary['jobs']} job runs "
            f"({summary['messages_from_sweep']} fanned out by the sweep timer)",
            f"  operations         planned {summary['planned']}, applied {summary['applied']}, "
            f"failed {summary['failed']}",
            f"  leavers disabled   {summary['leavers_disabled']}",
            f"  throttled items    {summary['throttled']} (Graph answered 429 "
            f"{summary['graph_429s']} times)",
            f"  token requests     {summary['token_requests']} (sandbox saw "
            f"{summary['sandbox_token_requests']})",
            f"  poison messages    {summary['poisoned']}; duplicate creates "
            f"{summary['duplicate_creates']}",
            f"  time               {summary['seconds']} s",
        ]
    )


def run_demo(*, as_json: bool = False, config: DemoConfig | None = None) -> int:
    cfg = config or DemoConfig()
    graph_config = _graph_config(cfg.time_factor, cfg.replication_delay)
    with Sandbox(graph_config=graph_config) as sandbox, Azurite() as azurite:
        summary = asyncio.run(_run(cfg, sandbox, azurite, quiet=False))
    print(_render(summary))
    if as_json:
        print(json.dumps(summary))
    ok = summary["applied"] == summary["planned"] and summary["failed"] == 0
    return 0 if ok else 1
