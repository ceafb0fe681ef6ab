"""Scale-out: 1, 2 and 4 worker processes draining one queue against one tenant's budget.

Each worker is a process of its own, started the way an operator starts one
(``python -m shared drain QUEUE``: the app's queue function through the offline Functions
host, host.json's concurrency), all against one Azurite queue and one sandbox tenant
(HTTPS, strict batches, replication delay on), with the app settings of production
(``keyvault-certificate``, ``DAEMON_FLEET_BUDGET=true`` unless ``--no-fleet``). Graph's
budget is compressed in time by F (20 writes/s → 200/s at F = 10) with a small starting
bucket (1.5 s of the rate instead of Graph's 150 s) so the run measures the sustained regime.

The queue holds provisioning jobs (joiners: a create plus a group add each) and operations
jobs (a PATCH of one user each); every worker count gets fresh people and fresh targets on a
fresh Graph budget. Per worker count: writes applied per second between the first and the
last write, after the starting bucket, as a fraction of the budget; 429s; lost operations
(a joiner missing or not in its group, a PATCH not applied) and duplicated ones (a user
created twice, a member added twice, a user patched twice); the drain's invocations,
failures and poisoned messages. Targets: 4 workers ≥ 90 % of the budget, their 429s ≤ 2×
those of 1 worker (+ 10 items of slack: 2 × 0 is a bar no run can be held to), nothing
lost or duplicated.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.batch_throughput import AUTH_MODE, REAL_WRITE_RATE
from benchmarks.output import default_path
from benchmarks.results_math import series
from sandbox.azurite import Azurite
from sandbox.graph import GraphConfig
from sandbox.seed import USER_DOMAIN, seed_default, settings_for
from sandbox.server import Sandbox

__all__ = ["FULL", "QUICK", "ScaleOutParams", "main", "run"]

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ScaleOutParams:
    factor: float = 10.0
    workers: tuple[int, ...] = (1, 2, 4)
    provision_messages: int = 48
    joiners_per_message: int = 40
    operations_messages: int = 60
    patches_per_message: int = 100
    groups: int = 3
    bucket_seconds: float = 1.5
    real_replication_delay: float = 2.0
    drain_timeout: float = 240.0
    fleet: bool = True
    label: str = "full"

    @property
    def write_rate(self) -> float:
        return REAL_WRITE_RATE * self.factor

    @property
    def targets(self) -> int:
        return self.operations_messages * self.patches_per_message

    @property
    def joiners(self) -> int:
        return self.provision_messages * self.joiners_per_message

    def graph_config(self) -> GraphConfig:
        graph = GraphConfig(fractional_retry_after=True)
        compressed = graph.scaled(budget=1.0, time=1.0 / self.factor)
        shrink = self.bucket_seconds / compressed.app_tenant_write_window
        small = compressed.scaled(budget=shrink, time=shrink)
        return dataclasses.replace(
            small, replication_delay=self.real_replication_delay / self.factor
        )


FULL = ScaleOutParams()
QUICK = ScaleOutParams(
    provision_messages=24,
    joiners_per_message=40,
    operations_messages=32,
    patches_per_message=100,
    drain_timeout=100.0,
    label="quick",
)


class _Sampler(threading.Thread):
    """Samples the sandbox's counters (writes applied, 429s) every 50 ms."""

    def __init__(self, graph: Any) -> None:
        super().__init__(daemon=True)
        self.graph = graph
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.wait(0.05):
            s = self.graph.stats
            self.samples.append((time.monotonic() - start, s.writes_applied, s.throttled))

    def active_window(self) -> tuple[float, float]:
        """(first time writes were seen, first time the final count was reached)."""
        final = self.samples[-1][1] if self.samples else 0
        first = next((t for t, w, _ in self.samples if w > 0), 0.0)
        last = next((t for t, w, _ in self.samples if w >= final), first)
        return first, last


def _messages(
    params: ScaleOutParams, tenant: str, tag: str, groups: list[str], targets: list[str]
) -> list[str]:
    from shared.jobs.envelope import JobMessage

    texts: list[str] = []
    for m in range(params.provision_messages):
        joiners = [
            {
                "employeeId": f"{tag}J{m:03d}{i:03d}",
                "givenName": "Scale",
                "surname": f"Out{m:03d}{i:03d}",
                "department": "Engineering",
                "jobTitle": "Engineer",
                "groups": [groups[(m + i) % len(groups)]],
            }
            for i in range(params.joiners_per_message)
        ]
        texts.append(
            JobMessage.new(
                "provision", tenant, {"joiners": joiners}, correlation_id=f"{tag}-prov-{m}"
            ).to_json()
        )
    per = params.patches_per_message
    for m in range(params.operations_messages):
        ops = [
            {
                "id": f"p{i}",
                "method": "PATCH",
                "url": f"/users/{uid}",
                "body": {"jobTitle": f"{tag}-{m}-{i}"},
            }
            for i, uid in enumerate(targets[m * per : (m + 1) * per])
        ]
        texts.append(
            JobMessage.new(
                "operations", tenant, {"operations": ops}, correlation_id=f"{tag}-ops-{m}"
            ).to_json()
        )
    # interleave the two kinds so every worker gets both
    half = params.provision_messages
    mixed = [t for pair in zip(texts[:half], texts[half:], strict=False) for t in pair]
    return mixed + texts[2 * min(half, len(texts) - half) :]


def _parse_drain(text: str) -> dict[str, int]:
    for line in reversed(text.splitlines()):
        if line.startswith("invocations "):
            parts = dict(
                (kv.split()[0], int(kv.split()[1].split()[0]))
                for kv in line.replace(" (timed out)", "").split(", ")
            )
            return parts
    return {}


def _one(
    params: ScaleOutParams,
    sandbox: Sandbox,
    azurite: Azurite,
    base_env: dict[str, str],
    tenant: str,
    workers: int,
) -> dict[str, Any]:
    graph = sandbox.graph
    directory = graph.directory
    tag = f"W{workers}{uuid.uuid4().hex[:4].upper()}"
    groups = [directory.add_group(tenant, f"{tag} group {g}")["id"] for g in range(params.groups)]
    targets = [
        u["id"]
        for u in directory.seed_users(tenant, params.targets, domain=USER_DOMAIN, prefix=tag)
    ]
    queue = f"scaleout-{tag.lower()}"
    env = {**base_env, "DAEMON_JOBS_QUEUE": queue}
    texts = _messages(params, tenant, tag, groups, targets)

    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    client = QueueClient.from_connection_string(
        azurite.connection_string, queue, message_encode_policy=TextBase64EncodePolicy()
    )
    client.create_queue()
    for text in texts:
        client.send_message(text)
    client.close()

    graph.reset()
    graph.stats.reset()
    sampler = _Sampler(graph)
    sampler.start()
    started = time.monotonic()
    procs = []
    logs = []
    for _ in range(workers):
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shared",
                    "drain",
                    queue,
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        )
    drains: list[dict[str, int]] = []
    fallbacks = 0
    fleet_lines: list[str] = []
    exit_codes: list[int] = []
    for proc, log in zip(procs, logs, strict=True):
        try:
            out, _ = proc.communicate(timeout=params.drain_timeout + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        exit_codes.append(proc.returncode)
        drains.append(_parse_drain(out or ""))
        log.seek(0)
        lines = log.read().decode("utf-8", "replace").splitlines()
        if os.environ.get("SCALE_OUT_LOGS"):
            Path(os.environ["SCALE_OUT_LOGS"], f"{tag}-{len(exit_codes)}.log").write_text(
                "\n".join(lines), encoding="utf-8"
            )
        fallbacks += sum(1 for line in lines if "fleet budget" in line and "unavailable" in line)
        fleet_lines += [line.split("] ", 1)[-1] for line in lines if "fleet budget" in line][:5]
        if proc.returncode:
            logger.warning("worker exited %s:\n%s", proc.returncode, "\n".join(lines[-15:]))
        log.close()
    wall = time.monotonic() - started
    sampler.stop.set()
    sampler.join()

    stats = graph.stats
    tdir = directory.tenant(tenant)
    by_employee = {u.get("employeeId"): u for u in tdir.users.values() if u.get("employeeId")}
    joiners_lost = 0
    for m in range(params.provision_messages):
        for i in range(params.joiners_per_message):
            user = by_employee.get(f"{tag}J{m:03d}{i:03d}")
            gid = groups[(m + i) % len(groups)]
            if user is None or user["id"] not in tdir.members.get(gid, {}):
                joiners_lost += 1
    per = params.patches_per_message
    patches_lost = sum(
        1
        for n, uid in enumerate(targets)
        if tdir.users[uid].get("jobTitle") != f"{tag}-{n // per}-{n % per}"
    )
    patched_twice = sum(1 for uid in targets if stats.user_updates.get(f"{tenant}/{uid}", 0) > 1)
    first, last = sampler.active_window()
    writes = stats.writes_applied
    bucket = graph.config.app_tenant_write_limit
    window = last - first
    sustained = (writes - bucket) / (params.write_rate * window) if window > 0 else 0.0
    figures = {
        "workers": workers,
        "messages": len(texts),
        "operations": params.joiners + params.targets,
        "writes_applied": writes,
        "write_window_seconds": round(window, 3),
        "wall_seconds": round(wall, 3),
        "writes_per_second": round(writes / window, 2) if window > 0 else 0.0,
        "budget_fraction": round(writes / (params.write_rate * window), 4) if window else 0.0,
        "budget_fraction_after_bucket": round(sustained, 4),
        "item_responses_429": stats.throttled,
        "lost": joiners_lost + patches_lost,
        "joiners_lost": joiners_lost,
        "patches_lost": patches_lost,
        "duplicated": len(stats.duplicate_creates())
        + sum(1 for v in stats.member_adds.values() if v > 1)
        + patched_twice,
        "early_retries": len(stats.early_retries),
        "invocations": sum(d.get("invocations", 0) for d in drains),
        "failed_deliveries": sum(d.get("failed", 0) for d in drains),
        "poisoned": sum(d.get("poisoned", 0) for d in drains),
        "worker_exit_codes": exit_codes,
        "fleet_fallbacks": fallbacks,
        "fleet_log": fleet_lines,
        "throttled_by_bucket": dict(stats.throttled_by_bucket),
        "timeline": [
            (round(t, 2), w, th)
            for t, w, th in sampler.samples[:: max(1, len(sampler.samples) // 200)]
        ],
        # writes/s and 429s/s in 0.5 s bins since the workers were started (the plots)
        "series": series(sampler.samples, bin_seconds=0.5),
    }
    logger.info(
        "%d worker(s): %d writes in %.1fs (%.1f%% of the budget after the bucket), %d 429s",
        workers,
        writes,
        window,
        sustained * 100,
        stats.throttled,
    )
    return figures


def run(params: ScaleOutParams) -> dict[str, Any]:
    started = time.perf_counter()
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    sandbox = Sandbox(graph_config=params.graph_config()).start()
    azurite = Azurite().start()
    try:
        seed = seed_default(sandbox)
        tenant = seed.home_tenant_id
        config = sandbox.graph.config
        base_env = {
            **os.environ,
            **settings_for(seed, sandbox, AUTH_MODE),
            "AzureWebJobsStorage": azurite.connection_string,
            "DAEMON_SWEEP_SCHEDULE": "0 */15 * * * *",
            "DAEMON_USER_DOMAIN": USER_DOMAIN,
            "DAEMON_ALLOWED_TENANTS": tenant,
            "DAEMON_MAX_CHANGES_PER_RUN": "100000",
            "DAEMON_API_WRITES_PER_SECOND": str(params.write_rate),
            "DAEMON_API_RESOURCE_UNITS_PER_SECOND": str(config.ru_limits[2] / config.ru_window),
            "DAEMON_REPLICATION_RETRY_SECONDS": str(60.0 / params.factor),
            "DAEMON_FLEET_BUDGET": "true" if params.fleet else "false",
            "PYTHONPATH": str(ROOT),
        }
        base_env.pop("APPLICATIONINSIGHTS_CONNECTION_STRING", None)
        per_count = {
            str(n): _one(params, sandbox, azurite, base_env, tenant, n) for n in params.workers
        }
    finally:
        azurite.stop()
        sandbox.stop()
    one = per_count.get("1")
    most = per_count.get(str(max(params.workers)))
    checks: dict[str, bool] = {
        "nothing lost (every worker count)": all(f["lost"] == 0 for f in per_count.values()),
        "nothing duplicated (every worker count)": all(
            f["duplicated"] == 0 for f in per_count.values()
        ),
        "no message failed or poisoned": all(
            f["failed_deliveries"] == 0 and f["poisoned"] == 0 for f in per_count.values()
        ),
    }
    if one is not None and most is not None and most is not one:
        n = most["workers"]
        checks[f"{n} workers >= 90% of the budget (after the bucket)"] = (
            most["budget_fraction_after_bucket"] >= 0.90
        )
        checks[f"{n} workers' 429s <= 2x those of 1 worker (+10)"] = (
            most["item_responses_429"] <= 2 * one["item_responses_429"] + 10
        )
    return {
        "benchmark": "scale_out",
        "mode": params.label,
        "generated_at": when,
        "duration_seconds": round(time.perf_counter() - started, 1),
        "config": {
            **dataclasses.asdict(params),
            "write_rate": params.write_rate,
            "app_tenant_write_limit": config.app_tenant_write_limit,
            "app_tenant_write_window_s": config.app_tenant_write_window,
            "replication_delay_s": config.replication_delay,
            "command": "python -m benchmarks.scale_out"
            + (" --quick" if params.label == "quick" else ""),
        },
        "worker_counts": per_count,
        "targets": {"met": all(checks.values()), "checks": checks},
    }


def render(result: dict[str, Any]) -> str:
    c = result["config"]
    lines = [
        f"scale_out ({result['mode']}): {c['joiners_per_message'] * c['provision_messages']} "
        f"joiners + {c['patches_per_message'] * c['operations_messages']} PATCH per worker "
        f"count, F={c['factor']:g}, budget {c['write_rate']:g} writes/s, starting bucket "
        f"{c['app_tenant_write_limit']} writes, replication delay {c['replication_delay_s']:g} s, "
        f"fleet budget {'on' if c['fleet'] else 'off'}",
        f"{'workers':>7} {'writes':>7} {'window s':>8} {'writes/s':>8} {'×budget':>8} "
        f"{'429s':>5} {'lost':>5} {'dup':>4} {'msgs':>5} {'failed':>6} {'poison':>6}",
    ]
    for f in result["worker_counts"].values():
        lines.append(
            f"{f['workers']:>7} {f['writes_applied']:>7} {f['write_window_seconds']:>8.1f} "
            f"{f['writes_per_second']:>8.1f} {f['budget_fraction_after_bucket']:>8.1%} "
            f"{f['item_responses_429']:>5} {f['lost']:>5} {f['duplicated']:>4} "
            f"{f['invocations']:>5} {f['failed_deliveries']:>6} {f['poisoned']:>6}"
        )
    t = result["targets"]
    failed = [k for k, ok in t["checks"].items() if not ok]
    lines.append("targets " + ("MET" if t["met"] else f"MISSED ({'; '.join(failed)})"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks scale_out",
        description="1, 2 and 4 worker processes draining one queue against one tenant.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer jobs (under 2 minutes)")
    parser.add_argument("--workers", type=str, help="comma-separated worker counts (default 1,2,4)")
    parser.add_argument(
        "--no-fleet", action="store_true", help="DAEMON_FLEET_BUDGET=false (each paces alone)"
    )
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plot")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    params = QUICK if args.quick else FULL
    if args.workers:
        try:
            counts = tuple(int(w) for w in args.workers.split(","))
        except ValueError:
            parser.error(f"--workers {args.workers!r}: expected numbers such as 1,2,4")
        if not counts or any(not 1 <= n <= 16 for n in counts):
            parser.error(f"--workers {args.workers!r}: each count must be between 1 and 16")
        params = dataclasses.replace(params, workers=counts)
    if args.no_fleet:
        params = dataclasses.replace(params, fleet=False)
    level = logging.WARNING if args.verbose == 0 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).setLevel(logging.INFO)
    result = run(params)
    suffix = "_quick" if args.quick else ""
    suffix += "_nofleet" if args.no_fleet else ""
    output = args.output or default_path(f"scale_out{suffix}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"results: {output}")
    if not args.no_plots:
        from benchmarks.plots import plot_scale_out

        for path in plot_scale_out(result, output.parent, stem=output.stem):
            print(f"plot: {path}")
    checks = result["targets"]["checks"]
    correct = all(
        checks[k]
        for k in (
            "nothing lost (every worker count)",
            "nothing duplicated (every worker count)",
            "no message failed or poisoned",
        )
    )
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
