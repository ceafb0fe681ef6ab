"""Joiners: each a create plus two group adds, member adds coalesced vs one by one.

Against the sandbox (HTTPS on localhost, strict batches, replication delay on), with the
daemon configured as in production (``keyvault-certificate``, app-only token). Two
contenders under the same write budget, each on a fresh budget and fresh groups:

- ``coalesced``: :class:`BatchEngine` as shipped — the group adds that are ready together
  go out as ``PATCH /groups/{id}`` with ``members@odata.bind`` (one write for up to 20);
- ``per_member``: the same engine with ``coalesce_members=False`` — one
  ``POST /groups/{id}/members/$ref`` (one write) per add, as before.

Each joiner: ``POST /users`` (CreateIdentity on employeeId), then adds to two groups that
every joiner shares ("All staff" and "New starters"), each depending on the create. The
budget is Graph's sustained write rate compressed in time by F (20 writes/s → 200/s at
F = 10) with a *small starting bucket* (1.5 s of the rate instead of Graph's 150 s) so
that the run is spent in the sustained regime it is meant to measure; the replication
delay is a real 2 s compressed by F. The token is fetched before the clock starts.
Figures: joiners per second; write requests per second after the starting bucket, as a
fraction of the sustained rate (``(write requests − bucket) ÷ (rate × wall)``); 429s; and
what the sandbox holds at the end (every membership present, no user created twice, no
member added twice).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.batch_throughput import AUTH_MODE, REAL_WRITE_RATE
from benchmarks.output import default_path
from sandbox.graph import GraphConfig
from sandbox.seed import PLATFORM_SETTING_NAMES, seed_default, settings_for
from sandbox.server import Sandbox
from shared.instance import Instance
from shared.settings import load_settings
from shared.webapi import (
    DEFAULT_REPLICATION_SECONDS,
    BatchEngine,
    CreateIdentity,
    Operation,
    Outcome,
    PacingConfig,
    RetryPolicy,
    user_url,
)

__all__ = ["FULL", "QUICK", "JoinersParams", "main", "run"]

logger = logging.getLogger(__name__)

DOMAIN = "contoso.example"


@dataclass(frozen=True)
class JoinersParams:
    factor: float = 10.0
    joiners: int = 3_000
    bucket_seconds: float = 1.5  # starting bucket: this many seconds of the sustained rate
    real_replication_delay: float = 2.0
    real_latency_base: float = 0.1
    real_latency_jitter: float = 0.2
    real_latency_per_item: float = 0.04
    concurrency: int = 4
    max_seconds: float = 240.0
    label: str = "full"

    @property
    def write_rate(self) -> float:
        return REAL_WRITE_RATE * self.factor

    def graph_config(self) -> GraphConfig:
        graph = GraphConfig(fractional_retry_after=True)
        # windows ÷ F (rates × F); then the write windows shortened to bucket_seconds with
        # their limits scaled alike, so the rates stay and the starting bucket is small
        compressed = graph.scaled(budget=1.0, time=1.0 / self.factor)
        window = compressed.app_tenant_write_window
        shrink = self.bucket_seconds / window
        small = compressed.scaled(budget=shrink, time=shrink)
        return dataclasses.replace(
            small, replication_delay=self.real_replication_delay / self.factor
        )

    def faults(self) -> dict[str, float | int]:
        return {
            "seed": 1,
            "latency_base": self.real_latency_base / self.factor,
            "latency_jitter": self.real_latency_jitter / self.factor,
            "latency_per_item": self.real_latency_per_item / self.factor,
        }


FULL = JoinersParams()
QUICK = JoinersParams(joiners=300, max_seconds=60.0, label="quick")


def joiner_operations(prefix: str, n: int, groups: Sequence[str], base: str) -> list[Operation]:
    """Each joiner: a create, then one add per group that depends on it and references the
    created user by the id the create returned (the strict sandbox refuses a UPN there)."""
    ops: list[Operation] = []
    for i in range(n):
        eid = f"{prefix}{i:05d}"
        upn = f"{prefix.lower()}{i:05d}@{DOMAIN}"
        create = Operation(
            f"create-{eid}",
            "POST",
            "/users",
            {
                "accountEnabled": True,
                "displayName": f"Joiner {eid}",
                "mailNickname": f"{prefix.lower()}{i:05d}",
                "userPrincipalName": upn,
                "employeeId": eid,
                "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": "Xy!9" * 4},
            },
            headers={"Content-Type": "application/json"},
            idempotency=CreateIdentity(
                f"/users?$filter=employeeId eq '{eid}'&$select=id,employeeId", "employeeId", eid
            ),
        )
        ops.append(create)
        for g, gid in enumerate(groups):
            ops.append(
                Operation(
                    f"add-{eid}-{g}",
                    "POST",
                    f"/groups/{gid}/members/$ref",
                    {"@odata.id": user_url(base, upn)},
                    headers={"Content-Type": "application/json"},
                    depends_on=(create.id,),
                    reference_from=create.id,
                )
            )
    return ops


async def _contender(
    params: JoinersParams, sandbox: Sandbox, settings: Any, tenant: str, name: str, coalesce: bool
) -> dict[str, Any]:
    graph = sandbox.graph
    graph.reset()
    graph.faults.set(**params.faults())
    directory = graph.directory
    groups = [directory.add_group(tenant, f"{name} {label}")["id"] for label in ("All", "New")]
    instance = Instance(settings)
    client = instance.api_client()
    prefix = "C" if coalesce else "P"
    ops = joiner_operations(prefix, params.joiners, groups, instance.settings.api_base_url)
    f = params.factor
    engine = BatchEngine(
        client,
        concurrency=params.concurrency,
        pacing=PacingConfig(
            writes_per_second=params.write_rate,
            resource_units_per_second=graph.config.ru_limits[2] / graph.config.ru_window,
        ),
        retry=RetryPolicy(max_attempts=6, max_total_seconds=900.0 / f, base=1.0 / f, cap=30 / f),
        replication_seconds=DEFAULT_REPLICATION_SECONDS / f,
        coalesce_members=coalesce,
    )
    # token and connection first (no write): the clock measures the writes alone
    await client.request("GET", "/users", params={"$top": "1", "$select": "id"})
    start = time.perf_counter()
    try:
        report = await asyncio.wait_for(engine.run(ops), timeout=params.max_seconds)
    finally:
        wall = time.perf_counter() - start
        await instance.aclose()
    results = report.by_id()
    s = report.stats
    complete = sum(
        1
        for i in range(params.joiners)
        if all(
            results[k].outcome is Outcome.SUCCEEDED
            for k in (f"create-{prefix}{i:05d}", *(f"add-{prefix}{i:05d}-{g}" for g in range(2)))
        )
    )
    tenant_dir = directory.tenant(tenant)
    missing = 0
    for i in range(params.joiners):
        user = tenant_dir.find_user(f"{prefix.lower()}{i:05d}@{DOMAIN}")
        for gid in groups:
            if user is None or user["id"] not in tenant_dir.members[gid]:
                missing += 1
    stats = graph.stats
    write_requests = s.items_sent - s.members_coalesced + s.member_binds
    bucket = graph.config.app_tenant_write_limit
    sustained = (write_requests - bucket) / (params.write_rate * wall) if wall else 0.0
    figures = {
        "joiners": params.joiners,
        "operations": len(ops),
        "succeeded": report.count(Outcome.SUCCEEDED),
        "failed": report.count(Outcome.FAILED),
        "gave_up": report.count(Outcome.GAVE_UP),
        "joiners_complete": complete,
        "memberships_missing": missing,
        "duplicate_creates": sum(1 for v in stats.user_creates.values() if v > 1),
        "duplicate_member_adds": sum(1 for v in stats.member_adds.values() if v > 1),
        "wall_seconds": round(wall, 3),
        "joiners_per_second": round(complete / wall, 2) if wall else 0.0,
        "write_requests": write_requests,
        "write_requests_per_second": round(write_requests / wall, 2) if wall else 0.0,
        "starting_bucket_writes": bucket,
        "sustained_fraction_after_bucket": round(sustained, 4),
        "member_binds": s.member_binds,
        "members_coalesced": s.members_coalesced,
        "bind_fallbacks": s.bind_fallbacks,
        "replication_retries": s.replication_retries,
        "item_responses_429": stats.statuses.get(429, 0),
        "early_retries": len(stats.early_retries),
        "batch_shapes": dict(stats.batch_shapes),
        "engine_stats": dataclasses.asdict(s),
    }
    logger.info(
        "%s: %d/%d joiners in %.1fs (%.1f joiners/s, %d write requests)",
        name,
        complete,
        params.joiners,
        wall,
        figures["joiners_per_second"],
        write_requests,
    )
    return figures


async def _run(params: JoinersParams, sandbox: Sandbox, settings: Any, tenant: str) -> Any:
    coalesced = await _contender(params, sandbox, settings, tenant, "coalesced", True)
    per_member = await _contender(params, sandbox, settings, tenant, "per_member", False)
    return coalesced, per_member


def run(params: JoinersParams) -> dict[str, Any]:
    started = time.perf_counter()
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    sandbox = Sandbox(graph_config=params.graph_config()).start()
    try:
        seed = seed_default(sandbox)
        values = settings_for(seed, sandbox, AUTH_MODE)
        for name in PLATFORM_SETTING_NAMES:
            if name in values:
                os.environ[name] = values[name]
        settings = load_settings(values)
        config = sandbox.graph.config
        coalesced, per_member = asyncio.run(_run(params, sandbox, settings, seed.home_tenant_id))
    finally:
        sandbox.stop()
    ratio = (
        coalesced["joiners_per_second"] / per_member["joiners_per_second"]
        if per_member["joiners_per_second"]
        else 0.0
    )
    checks = {
        "coalesced ÷ per_member joiners/s >= 2.5": ratio >= 2.5,
        "coalesced sustained_fraction_after_bucket >= 0.90": (
            coalesced["sustained_fraction_after_bucket"] >= 0.90
        ),
        "every membership present (both)": coalesced["memberships_missing"] == 0
        and per_member["memberships_missing"] == 0,
        "nothing duplicated (both)": not any(
            c[k]
            for c in (coalesced, per_member)
            for k in ("duplicate_creates", "duplicate_member_adds")
        ),
    }
    return {
        "benchmark": "joiners",
        "mode": params.label,
        "generated_at": when,
        "duration_seconds": round(time.perf_counter() - started, 1),
        "config": {
            **dataclasses.asdict(params),
            "write_rate": params.write_rate,
            "app_tenant_write_limit": config.app_tenant_write_limit,
            "app_tenant_write_window_s": config.app_tenant_write_window,
            "replication_delay_s": config.replication_delay,
            "groups_per_joiner": 2,
        },
        "contenders": {"coalesced": coalesced, "per_member": per_member},
        "ratio_joiners_per_second": round(ratio, 3),
        "targets": {"met": all(checks.values()), "checks": checks},
    }


def render(result: dict[str, Any]) -> str:
    c = result["config"]
    lines = [
        f"joiners ({result['mode']}): {c['joiners']} joiners × (create + 2 group adds), "
        f"F={c['factor']:g}, {c['write_rate']:g} writes/s sustained, starting bucket "
        f"{c['app_tenant_write_limit']} writes, replication delay {c['replication_delay_s']:g} s",
        f"{'contender':<11} {'complete':>8} {'missing':>7} {'wall s':>7} {'joiners/s':>9} "
        f"{'writes':>7} {'×rate':>6} {'binds':>6} {'repl':>5} {'429s':>5}",
    ]
    for name, f in result["contenders"].items():
        lines.append(
            f"{name:<11} {f['joiners_complete']:>8} {f['memberships_missing']:>7} "
            f"{f['wall_seconds']:>7.1f} {f['joiners_per_second']:>9.1f} {f['write_requests']:>7} "
            f"{f['sustained_fraction_after_bucket']:>6.1%} {f['member_binds']:>6} "
            f"{f['replication_retries']:>5} {f['item_responses_429']:>5}"
        )
    t = result["targets"]
    failed = [k for k, ok in t["checks"].items() if not ok]
    lines.append(
        f"coalesced ÷ per_member joiners/s: {result['ratio_joiners_per_second']:.2f}×; targets "
        + ("MET" if t["met"] else f"MISSED ({'; '.join(failed)})")
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks joiners",
        description="Joiners with coalesced vs per-member group adds against the sandbox.",
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.joiners} joiners")
    parser.add_argument("--joiners", type=int)
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    params = QUICK if args.quick else FULL
    if args.joiners:
        params = dataclasses.replace(params, joiners=args.joiners)
    level = logging.WARNING if args.verbose == 0 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).setLevel(logging.INFO)
    result = run(params)
    output = args.output or default_path("joiners_quick.json" if args.quick else "joiners.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"results: {output}")
    bad = result["targets"]["checks"]
    return (
        1
        if not (bad["every membership present (both)"] and bad["nothing duplicated (both)"])
        else 0
    )


if __name__ == "__main__":
    sys.exit(main())
