"""Batch throughput: 10,000 PATCHes in one tenant, against a Graph-shaped sandbox.

The sandbox (HTTPS on localhost, real sockets, in a thread of this process) gets Microsoft
Graph's real budget-to-latency ratio, compressed in time by a factor F (default 10): every
throttling window is divided by F (so every budget *rate* is multiplied by F, the bucket
capacities stay Graph's) and every injected latency is divided by F. Retry-After is sent
with fractions so that it compresses too (Graph's integer seconds would be ×F too long here).

Contenders, each on a fresh budget (``GraphService.reset()``: stats, token buckets and
faults; the faults are set again right after) and a fresh ``Instance`` (cold token cache):

- ``ours``: :class:`BatchEngine` with :class:`PacingConfig` set to the budget, product
  defaults otherwise (concurrency included);
- ``sequential``: what msgraph-sdk-python users get: batches of 20 sent one after another,
  no pacing, throttled items resent (alone) after the largest Retry-After of their batch;
- ``naive``: one PATCH at a time with the client's own retry (honours Retry-After), on a
  subset;
- ``direct``: ``BatchEngine(use_batch=False)`` (one request per operation), on a subset;
- ``sweep``: ``ours`` at other concurrency values, on a subset.

Figures are what the sandbox saw (item statuses, per-user update counts, early retries,
token requests) next to what the contender reported. The machine is shared and noisy: read
the ratios (to the budget, between contenders), not the absolute seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import inspect
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.output import default_path
from sandbox.graph import GraphConfig
from sandbox.seed import API_SCOPE, PLATFORM_SETTING_NAMES, Seed, seed_default, settings_for
from sandbox.server import Sandbox
from shared.errors import DaemonError
from shared.instance import Instance
from shared.settings import Settings, load_settings
from shared.webapi import (
    ApiClient,
    BatchEngine,
    Operation,
    Outcome,
    PacingConfig,
    Progress,
    parse_retry_after,
)

__all__ = ["FULL", "QUICK", "Params", "main", "run"]

logger = logging.getLogger(__name__)

AUTH_MODE = "keyvault-certificate"
BATCH_SIZE = 20

_GRAPH = GraphConfig()  # Graph's published budgets, unscaled
REAL_WRITE_RATE = _GRAPH.app_tenant_write_limit / _GRAPH.app_tenant_write_window  # 20/s
REAL_RU_RATE = _GRAPH.ru_limits[2] / _GRAPH.ru_window  # 800 RU/s (tenant > 500 users)
PRODUCT_CONCURRENCY: int = inspect.signature(BatchEngine).parameters["concurrency"].default

CONTENDERS = ("ours", "sequential", "naive", "direct", "sweep")
OPTIONAL_CONTENDERS = ("overbudget",)  # run only when named with --only


@dataclass(frozen=True)
class Params:
    """What one run measures. Latencies are Graph's real ones; the sandbox gets them ÷ F."""

    factor: float = 10.0
    users: int = 10_000
    operations: int = 10_000
    naive_operations: int = 1_000
    direct_operations: int = 1_500
    sweep_operations: int = 1_500
    sweep: tuple[int, ...] = (1, 2, 8)
    overbudget_operations: int = 10_000
    overbudget_factor: float = 2.0  # pacing told the budget is this many times Graph's
    concurrency: int = PRODUCT_CONCURRENCY
    real_latency_base: float = 0.1  # a single request: 0.1–0.3 s
    real_latency_jitter: float = 0.2
    real_latency_per_item: float = 0.04  # a batch of 20 writes: ≈ 0.9–1.1 s
    max_seconds: float = 240.0  # hard cap per contender
    seed: int = 1
    contenders: tuple[str, ...] = CONTENDERS
    label: str = "full"

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ValueError("factor must be positive")
        largest = max(
            self.operations,
            self.naive_operations,
            self.direct_operations,
            self.sweep_operations,
            self.overbudget_operations if "overbudget" in self.contenders else 0,
        )
        if largest > self.users:
            raise ValueError(f"{largest} operations need at least as many users ({self.users})")
        unknown = set(self.contenders) - set(CONTENDERS) - set(OPTIONAL_CONTENDERS)
        if unknown:
            raise ValueError(f"unknown contender(s): {', '.join(sorted(unknown))}")

    @property
    def write_rate(self) -> float:
        """The budget's sustained write rate in the compressed sandbox (writes/s)."""
        return REAL_WRITE_RATE * self.factor

    @property
    def ru_rate(self) -> float:
        return REAL_RU_RATE * self.factor

    def graph_config(self) -> GraphConfig:
        return GraphConfig(fractional_retry_after=True).scaled(budget=1.0, time=1.0 / self.factor)

    def faults(self) -> dict[str, float | int]:
        return {
            "seed": self.seed,
            "latency_base": self.real_latency_base / self.factor,
            "latency_jitter": self.real_latency_jitter / self.factor,
            "latency_per_item": self.real_latency_per_item / self.factor,
        }

    def pacing(self, over: float = 1.0) -> PacingConfig:
        """The budget as ours is told it (``over`` > 1: told more than the API allows)."""
        return PacingConfig(
            writes_per_second=self.write_rate * over, resource_units_per_second=self.ru_rate * over
        )


FULL = Params()
QUICK = Params(
    users=1_000,
    operations=1_000,
    naive_operations=100,
    direct_operations=300,
    sweep_operations=0,
    sweep=(),
    overbudget_operations=1_000,
    max_seconds=60.0,
    label="quick",
)


# -- the world ---------------------------------------------------------------------------


class World:
    """A started sandbox, seeded, with the daemon's settings and the users to update."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.sandbox = Sandbox(graph_config=params.graph_config()).start()
        try:
            self.seed: Seed = seed_default(self.sandbox)
            self.tenant = self.seed.home_tenant_id
            users = self.sandbox.graph.directory.seed_users(self.tenant, params.users)
            self.user_ids = [str(u["id"]) for u in users]
            values = settings_for(self.seed, self.sandbox, AUTH_MODE)
            # The SDKs read the platform variables from os.environ; this is a process of its
            # own, so set them for the whole process.
            for name in PLATFORM_SETTING_NAMES:
                if name in values:
                    os.environ[name] = values[name]
            self.settings: Settings = load_settings(values)
        except BaseException:
            self.sandbox.stop()
            raise

    def close(self) -> None:
        self.sandbox.stop()

    def fresh_budget(self) -> None:
        """Full token buckets, zeroed stats; the latency faults set again (reset clears them)."""
        graph = self.sandbox.graph
        graph.reset()
        graph.faults.set(**self.params.faults())

    def operations(self, n: int, label: str) -> list[Operation]:
        """PATCH ``department`` (a value per contender) on the first ``n`` users."""
        return [
            Operation(
                id=f"op{i:05d}",
                method="PATCH",
                url=f"/users/{uid}",
                body={"department": f"{label}-{i % 10}"},
            )
            for i, uid in enumerate(self.user_ids[:n])
        ]


# -- contenders ---------------------------------------------------------------------------


@dataclass
class RunOutcome:
    """What a contender reported: one outcome per operation id it settled."""

    results: dict[str, Outcome]
    time_capped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


Runner = Callable[[ApiClient, list[Operation], float], Awaitable[RunOutcome]]


def engine_runner(
    params: Params, *, concurrency: int, use_batch: bool = True, over: float = 1.0
) -> Runner:
    async def run_engine(client: ApiClient, ops: list[Operation], cap: float) -> RunOutcome:
        engine = BatchEngine(
            client, use_batch=use_batch, concurrency=concurrency, pacing=params.pacing(over)
        )
        seen: list[Progress] = []

        def progress(p: Progress) -> None:
            if seen:
                seen[0] = p
            else:
                seen.append(p)

        try:
            report = await asyncio.wait_for(engine.run(ops, progress=progress), timeout=cap)
        except asyncio.TimeoutError:
            done = seen[0].done if seen else 0
            logger.error("engine run hit the %.0fs cap with %d/%d settled", cap, done, len(ops))
            return RunOutcome({}, time_capped=True, extra={"settled_at_cap": done})
        pacer = engine.pacer
        return RunOutcome(
            {r.operation_id: r.outcome for r in report.results},
            extra={
                "concurrency": concurrency,
                "use_batch": use_batch,
                "engine_stats": dataclasses.asdict(report.stats),
                "pacer": {
                    "throttle_events": pacer.throttle_events,
                    "paused_seconds": round(pacer.paused_seconds, 3),
                    "final_fraction": round(pacer.fraction, 3),
                },
            },
        )

    return run_engine


def _batch_payload(ops: Sequence[Operation]) -> dict[str, Any]:
    """A ``$batch`` body as msgraph-sdk builds one: ids 1..n, JSON bodies."""
    return {
        "requests": [
            {
                "id": str(i + 1),
                "method": o.method,
                "url": o.url,
                "headers": {"Content-Type": "application/json"},
                "body": o.body,
            }
            for i, o in enumerate(ops)
        ]
    }


async def run_sequential(client: ApiClient, ops: list[Operation], cap: float) -> RunOutcome:
    """Batches of 20, one after another, no pacing; the throttled items of a batch are
    resent together after the largest Retry-After (at most 6 sends per batch)."""
    deadline = time.monotonic() + cap
    results: dict[str, Outcome] = {}
    round_trips: list[float] = []
    envelope_statuses: dict[str, int] = {}
    for start in range(0, len(ops), BATCH_SIZE):
        pending = ops[start : start + BATCH_SIZE]
        for _attempt in range(6):
            if time.monotonic() > deadline:
                return RunOutcome(results, time_capped=True, extra={"round_trips": round_trips})
            payload = _batch_payload(pending)
            sent = time.perf_counter()
            try:
                answer = await client.request("POST", "/$batch", json=payload)
            except DaemonError as exc:
                logger.warning("sequential: batch not answered: %s", exc)
                for o in pending:
                    results[o.id] = Outcome.FAILED
                pending = []
                break
            round_trips.append(time.perf_counter() - sent)
            key = str(answer.status)
            envelope_statuses[key] = envelope_statuses.get(key, 0) + 1
            responses = answer.body.get("responses") if isinstance(answer.body, dict) else None
            if answer.status != 200 or not isinstance(responses, list):
                for o in pending:
                    results[o.id] = Outcome.FAILED
                pending = []
                break
            by_id = {str(e.get("id")): e for e in responses if isinstance(e, dict)}
            throttled: list[Operation] = []
            wait = 0.0
            for i, o in enumerate(pending):
                entry = by_id.get(str(i + 1))
                status = entry.get("status") if entry is not None else None
                if entry is None or not isinstance(status, int):
                    results[o.id] = Outcome.FAILED
                elif 200 <= status < 300:
                    results[o.id] = Outcome.SUCCEEDED
                elif status == 429:
                    throttled.append(o)
                    headers = entry.get("headers")
                    after = parse_retry_after(headers if isinstance(headers, dict) else {})
                    wait = max(wait, 1.0 if after is None else after)
                else:
                    results[o.id] = Outcome.FAILED
            pending = throttled
            if not pending:
                break
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
        for o in pending:
            results[o.id] = Outcome.GAVE_UP
    return RunOutcome(
        results, extra={"round_trips": round_trips, "envelope_statuses": envelope_statuses}
    )


async def run_naive(client: ApiClient, ops: list[Operation], cap: float) -> RunOutcome:
    """One PATCH at a time; the client's own retry policy (honours Retry-After)."""
    deadline = time.monotonic() + cap
    results: dict[str, Outcome] = {}
    round_trips: list[float] = []
    for o in ops:
        if time.monotonic() > deadline:
            return RunOutcome(results, time_capped=True, extra={"round_trips": round_trips})
        sent = time.perf_counter()
        try:
            answer = await client.request(o.method, o.url, json=o.body)
        except DaemonError as exc:
            logger.warning("naive: %s not answered: %s", o.id, exc)
            results[o.id] = Outcome.FAILED
            continue
        round_trips.append(time.perf_counter() - sent)
        if answer.ok:
            results[o.id] = Outcome.SUCCEEDED
        elif answer.status in (429, 503, 504):
            results[o.id] = Outcome.GAVE_UP
        else:
            results[o.id] = Outcome.FAILED
    return RunOutcome(results, extra={"round_trips": round_trips})


# -- measuring ----------------------------------------------------------------------------


def _expected_seconds(params: Params, n: int, kind: str) -> float:
    if kind == "naive":
        per_request = (params.real_latency_base + params.real_latency_jitter / 2) / params.factor
        return n * per_request
    return n / params.write_rate


def _cap(params: Params, n: int, kind: str) -> float:
    return min(params.max_seconds, 30.0 + 4.0 * _expected_seconds(params, n, kind))


def _write_bound(config: GraphConfig, succeeded: int, wall: float) -> dict[str, float]:
    """Writes the sandbox could have admitted in ``wall`` seconds from full buckets: the
    tightest of the write buckets (capacity + rate × elapsed)."""
    buckets = [
        (config.app_tenant_write_limit, config.app_tenant_write_window),
        (config.tenant_write_limit, config.tenant_write_window),
        (config.app_write_limit, config.app_write_window),
    ]
    available = min(limit + limit / window * wall for limit, window in buckets)
    return {
        "available_writes": round(available, 1),
        "utilization_of_available": round(succeeded / available, 4) if available else 0.0,
    }


def _round_trip_summary(samples: Sequence[float]) -> dict[str, float] | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000, 2),
    }


_TOKEN_COUNTERS = {
    "graph_token_requests": f"token_requests.scope.{API_SCOPE}",
    "all_token_requests": "token_requests",
    "managed_identity_requests": "mi.requests",
    "key_vault_requests": "kv.requests",
}


async def measure(
    world: World, name: str, description: str, ops: list[Operation], runner: Runner, kind: str
) -> dict[str, Any]:
    """Run one contender on a fresh budget and a fresh instance; the figures as a dict."""
    params = world.params
    graph = world.sandbox.graph
    world.fresh_budget()
    before = world.sandbox.state.counters()
    instance = Instance(world.settings)
    client = instance.api_client()  # trusts the sandbox CA through SSL_CERT_FILE
    cap = _cap(params, len(ops), kind)
    logger.info("%s: %d operations (cap %.0fs)", name, len(ops), cap)
    start = time.perf_counter()
    try:
        outcome = await runner(client, ops, cap)
    finally:
        wall = time.perf_counter() - start
        await instance.aclose()
    after = world.sandbox.state.counters()
    stats = graph.stats

    counts = {o.value: 0 for o in Outcome}
    for value in outcome.results.values():
        counts[value.value] += 1
    op_ids = [o.id for o in ops]
    lost = sum(1 for i in op_ids if i not in outcome.results)
    keys = {o.id: f"{world.tenant}/{o.url.rsplit('/', 1)[1]}" for o in ops}
    updates = stats.user_updates
    duplicates = sum(1 for k in keys.values() if updates[k] > 1)
    succeeded_not_applied = sum(
        1 for i in op_ids if outcome.results.get(i) is Outcome.SUCCEEDED and updates[keys[i]] == 0
    )
    applied_not_succeeded = sum(
        1
        for i in op_ids
        if updates[keys[i]] > 0 and outcome.results.get(i) is not Outcome.SUCCEEDED
    )
    item_responses = stats.operations
    throttled = stats.statuses.get(429, 0)
    succeeded = counts[Outcome.SUCCEEDED.value]
    rate = succeeded / wall if wall > 0 else 0.0
    figures: dict[str, Any] = {
        "description": description,
        "operations": len(ops),
        "succeeded": succeeded,
        "failed": counts[Outcome.FAILED.value],
        "gave_up": counts[Outcome.GAVE_UP.value],
        "lost": lost,
        "time_capped": outcome.time_capped,
        "cap_seconds": round(cap, 1),
        "duplicates": duplicates,
        "succeeded_not_applied": succeeded_not_applied,
        "applied_not_succeeded": applied_not_succeeded,
        "writes_applied": stats.writes_applied,
        "wall_seconds": round(wall, 3),
        "writes_per_second": round(rate, 2),
        "ratio_to_sustained_rate": round(rate / params.write_rate, 4),
        **_write_bound(graph.config, succeeded, wall),
        "http_requests": stats.requests,
        "batch_requests": stats.batch_requests,
        "item_responses": item_responses,
        "item_responses_429": throttled,
        "item_429_percent": round(100.0 * throttled / item_responses, 3) if item_responses else 0.0,
        "throttled_by_bucket": dict(stats.throttled_by_bucket),
        "top_level_statuses": {str(k): v for k, v in sorted(stats.top_level_statuses.items())},
        "resends_seen": len(stats.retries),
        "early_retries": len(stats.early_retries),
        "token_cache": instance.token_cache.stats.as_dict(),
        "sandbox_identity": {
            label: after.get(key, 0) - before.get(key, 0) for label, key in _TOKEN_COUNTERS.items()
        },
    }
    extra = dict(outcome.extra)
    trips = extra.pop("round_trips", None)
    if trips is not None:
        figures["round_trip"] = _round_trip_summary(trips)
    figures.update(extra)
    logger.info(
        "%s: %d/%d succeeded in %.1fs (%.1f writes/s)", name, succeeded, len(ops), wall, rate
    )
    return figures


async def calibrate(world: World, samples: int = 10) -> dict[str, Any]:
    """The harness's own round trips (no injected latency): what every contender pays on
    top of the configured latencies (TLS, HTTP, JSON, sandbox and client in one process)."""
    world.sandbox.graph.reset()  # no faults
    instance = Instance(world.settings)
    client = instance.api_client()
    ops = world.operations(BATCH_SIZE, "calibration")
    payload = _batch_payload(ops)
    batch: list[float] = []
    single: list[float] = []
    try:
        await client.request("GET", "/users", params={"$top": "1"})  # token, connection
        for _ in range(samples):
            sent = time.perf_counter()
            await client.request("POST", "/$batch", json=payload)
            batch.append(time.perf_counter() - sent)
            sent = time.perf_counter()
            await client.request(ops[0].method, ops[0].url, json=ops[0].body)
            single.append(time.perf_counter() - sent)
    finally:
        await instance.aclose()
    return {
        "batch_of_20_ms": round(statistics.median(batch) * 1000, 2),
        "single_patch_ms": round(statistics.median(single) * 1000, 2),
    }


# -- the run ------------------------------------------------------------------------------


def _config(params: Params, world: World) -> dict[str, Any]:
    g = world.sandbox.graph.config
    f = params.faults()
    return {
        "factor": params.factor,
        "users": params.users,
        "operations": params.operations,
        "naive_operations": params.naive_operations,
        "direct_operations": params.direct_operations,
        "sweep_operations": params.sweep_operations,
        "sweep_concurrency": list(params.sweep),
        "product_default_concurrency": PRODUCT_CONCURRENCY,
        "ours_concurrency": params.concurrency,
        "auth_mode": AUTH_MODE,
        "client": "Instance(load_settings(settings_for(...))).api_client(), a fresh Instance "
        "(cold token cache) and a fresh budget per contender",
        "operation": "PATCH /users/{id} {department}",
        "budget": {
            "real_writes_per_second": REAL_WRITE_RATE,
            "writes_per_second": params.write_rate,
            "app_tenant_write_limit": g.app_tenant_write_limit,
            "app_tenant_write_window_s": g.app_tenant_write_window,
            "tenant_write_limit": g.tenant_write_limit,
            "tenant_write_window_s": g.tenant_write_window,
            "app_write_limit": g.app_write_limit,
            "app_write_window_s": g.app_write_window,
            "ru_limit_large_tenant": g.ru_limits[2],
            "ru_window_s": g.ru_window,
            "fractional_retry_after": g.fractional_retry_after,
        },
        "latency": {
            "real_base_s": params.real_latency_base,
            "real_jitter_s": params.real_latency_jitter,
            "real_per_item_s": params.real_latency_per_item,
            "sandbox_base_s": f["latency_base"],
            "sandbox_jitter_s": f["latency_jitter"],
            "sandbox_per_item_s": f["latency_per_item"],
            "sandbox_batch_of_20_s": round(
                f["latency_base"] + f["latency_jitter"] / 2 + BATCH_SIZE * f["latency_per_item"],
                4,
            ),
        },
        "pacing": dataclasses.asdict(params.pacing()),
    }


def _targets(ours: dict[str, Any]) -> dict[str, Any]:
    checks = {
        "ratio_to_sustained_rate >= 0.90": ours["ratio_to_sustained_rate"] >= 0.90,
        "lost == 0": ours["lost"] == 0,
        "item_429_percent < 2": ours["item_429_percent"] < 2.0,
        "duplicates == 0": ours["duplicates"] == 0,
    }
    return {"met": all(checks.values()), "checks": checks}


async def _run_contenders(world: World) -> dict[str, Any]:
    params = world.params
    out: dict[str, Any] = {"harness_overhead": await calibrate(world)}
    contenders: dict[str, Any] = {}
    if "ours" in params.contenders:
        contenders["ours"] = await measure(
            world,
            "ours",
            f"BatchEngine, paced at the budget, concurrency {params.concurrency}",
            world.operations(params.operations, "ours"),
            engine_runner(params, concurrency=params.concurrency),
            "batch",
        )
    if "sequential" in params.contenders:
        contenders["sequential"] = await measure(
            world,
            "sequential",
            "batches of 20 one after another, no pacing, 429 items resent after Retry-After",
            world.operations(params.operations, "sequential"),
            run_sequential,
            "batch",
        )
    if "naive" in params.contenders and params.naive_operations:
        contenders["naive"] = await measure(
            world,
            "naive",
            "one PATCH at a time, client retry (honours Retry-After)",
            world.operations(params.naive_operations, "naive"),
            run_naive,
            "naive",
        )
    if "direct" in params.contenders and params.direct_operations:
        contenders["direct"] = await measure(
            world,
            "direct",
            f"BatchEngine use_batch=False, paced, concurrency {params.concurrency}",
            world.operations(params.direct_operations, "direct"),
            engine_runner(params, concurrency=params.concurrency, use_batch=False),
            "batch",
        )
    if "overbudget" in params.contenders and params.overbudget_operations:
        over = params.overbudget_factor
        contenders["overbudget"] = await measure(
            world,
            "overbudget",
            f"BatchEngine told {over:g}× the real budget (another instance shares it): "
            "must adapt to 429s",
            world.operations(params.overbudget_operations, "overbudget"),
            engine_runner(params, concurrency=params.concurrency, over=over),
            "batch",
        )
    out["contenders"] = contenders
    if "sweep" in params.contenders and params.sweep_operations and params.sweep:
        sweep = []
        for c in sorted({*params.sweep, params.concurrency}):
            figures = await measure(
                world,
                f"sweep c={c}",
                f"BatchEngine, paced, concurrency {c}",
                world.operations(params.sweep_operations, f"c{c}"),
                engine_runner(params, concurrency=c),
                "batch",
            )
            sweep.append({"concurrency": c, **figures})
        out["concurrency_sweep"] = sweep
    ratios: dict[str, float] = {}
    ours = contenders.get("ours")
    if ours is not None:
        for other in ("sequential", "naive", "direct"):
            theirs = contenders.get(other)
            if theirs and theirs["writes_per_second"] > 0:
                ratios[f"ours_vs_{other}"] = round(
                    ours["writes_per_second"] / theirs["writes_per_second"], 3
                )
        out["targets"] = _targets(ours)
    out["ratios"] = ratios
    return out


def run(params: Params) -> dict[str, Any]:
    """Run the benchmark; the JSON-ready result."""
    started = time.perf_counter()
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    world = World(params)
    try:
        setup = time.perf_counter() - started
        body = asyncio.run(_run_contenders(world))
        config = _config(params, world)
    finally:
        world.close()
    return {
        "benchmark": "batch_throughput",
        "mode": params.label,
        "generated_at": when,
        "duration_seconds": round(time.perf_counter() - started, 1),
        "setup_seconds": round(setup, 1),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "note": "sandbox and client share one process (sandbox in a thread)",
        },
        "config": config,
        **body,
    }


# -- output -------------------------------------------------------------------------------


def _row(name: str, f: dict[str, Any]) -> str:
    tokens = f"{f['token_cache']['token_requests']}/{f['sandbox_identity']['graph_token_requests']}"
    outcome = f"{f['succeeded']}/{f['failed']}/{f['gave_up']}/{f['lost']}"
    return (
        f"{name:<12.12} {f['operations']:>6} {outcome:>18} {f['duplicates']:>4} "
        f"{f['wall_seconds']:>7.1f} {f['writes_per_second']:>8.1f} "
        f"{f['ratio_to_sustained_rate']:>7.1%} {f['utilization_of_available']:>7.1%} "
        f"{f['item_responses_429']:>6} {f['item_429_percent']:>6.2f}% {f['early_retries']:>5} "
        f"{tokens:>6}{'  CAPPED' if f['time_capped'] else ''}"
    )


def render(result: dict[str, Any]) -> str:
    c = result["config"]
    lines = [
        f"batch throughput ({result['mode']}): F={c['factor']:g}, budget "
        f"{c['budget']['writes_per_second']:g} writes/s sustained "
        f"({c['budget']['app_tenant_write_limit']} per {c['budget']['app_tenant_write_window_s']:g}"
        f" s; real Graph {c['budget']['real_writes_per_second']:g}/s), batch of 20 ≈ "
        f"{c['latency']['sandbox_batch_of_20_s'] * 1000:.0f} ms, single request "
        f"{c['latency']['sandbox_base_s'] * 1000:.0f}–"
        f"{(c['latency']['sandbox_base_s'] + c['latency']['sandbox_jitter_s']) * 1000:.0f} ms",
        "",
        f"{'contender':<12} {'ops':>6} {'ok/fail/gaveup/lost':>18} {'dup':>4} {'wall s':>7} "
        f"{'writes/s':>8} {'×rate':>7} {'×avail':>7} {'429s':>6} {'429 %':>7} {'early':>5} "
        f"{'tokens':>6}",
    ]
    for name, figures in result.get("contenders", {}).items():
        lines.append(_row(name, figures))
    for figures in result.get("concurrency_sweep", []):
        lines.append(_row(f"ours c={figures['concurrency']}", figures))
    lines.append("")
    h = result.get("harness_overhead")
    if h:
        lines.append(
            f"harness overhead (no injected latency): batch of 20 {h['batch_of_20_ms']:.1f} ms, "
            f"single PATCH {h['single_patch_ms']:.1f} ms"
        )
    lines.append(
        "×rate: writes/s ÷ the budget's sustained rate; ×avail: writes ÷ (bucket capacity + "
        "rate × wall); tokens: token cache requests / sandbox Graph-token requests"
    )
    for key, value in result.get("ratios", {}).items():
        lines.append(f"{key}: {value:.2f}×")
    targets = result.get("targets")
    if targets:
        verdict = "MET" if targets["met"] else "MISSED"
        failed = [k for k, ok in targets["checks"].items() if not ok]
        lines.append(
            f"target for ours (≥ 90% of sustained rate, 0 lost, < 2% 429s, 0 duplicates): "
            f"{verdict}" + (f" ({'; '.join(failed)})" if failed else "")
        )
    lines.append(f"took {result['duration_seconds']:.0f}s (setup {result['setup_seconds']:.0f}s)")
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> tuple[Params, Path, int]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Batch throughput against the sandbox."
    )
    parser.add_argument("--quick", action="store_true", help="a ~20 s smoke run")
    parser.add_argument("--factor", type=float, help="time compression F (default 10)")
    parser.add_argument("--operations", type=int, help="operations for ours and sequential")
    parser.add_argument("--concurrency", type=int, help="concurrency for ours")
    parser.add_argument(
        "--only",
        help=f"comma-separated contenders among {', '.join(CONTENDERS + OPTIONAL_CONTENDERS)}"
        f" (default: {', '.join(CONTENDERS)})",
    )
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    params = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.factor is not None:
        changes["factor"] = args.factor
    if args.operations is not None:
        changes["operations"] = args.operations
        changes["users"] = max(params.users, args.operations)
    if args.concurrency is not None:
        changes["concurrency"] = args.concurrency
    if args.only:
        changes["contenders"] = tuple(x.strip() for x in args.only.split(",") if x.strip())
    if changes:
        try:
            params = dataclasses.replace(params, **changes)
        except ValueError as exc:
            parser.error(str(exc))
    name = "batch_throughput.json" if not args.quick else "batch_throughput_quick.json"
    return params, args.output or default_path(name), args.verbose


def main(argv: Sequence[str] | None = None) -> int:
    params, output, verbose = _parse(argv)
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose == 0:
        logging.getLogger(__name__).setLevel(logging.INFO)
    result = run(params)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(render(result))
    print(f"results: {output}")
    # Timings on a shared machine do not fail the command; losing or duplicating does.
    ours = result.get("contenders", {}).get("ours")
    return 1 if ours is not None and (ours["lost"] or ours["duplicates"]) else 0


if __name__ == "__main__":
    sys.exit(main())
