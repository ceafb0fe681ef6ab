"""Memory: peak RSS of the sweep over 200,000 users vs 10,000, and of the engine with
100,000 vs 10,000 operations queued.

Each measurement runs in a fresh interpreter (``python -m benchmarks.memory --child ...``)
that reports its peak resident set size (``VmHWM`` of /proc/self/status: ``ru_maxrss``
would carry the parent's peak across exec) and its RSS before the work started (imports
done; for the engine, the operations built):

- ``sweep``: ``plan_sweep`` (a full delta scan of ``/users/delta`` and the leaver policy) for
  the home tenant, with the daemon's own ``Instance.from_env`` — the sandbox (seeded with
  the users, 100 of them leavers) and Azurite (the checkpoint table) run in this process
  and in Azurite's, so the child holds only the daemon;
- ``engine``: ``BatchEngine.run`` on the mix of ``benchmarks/scaling.py`` against an
  in-process answerer (no sockets), the operations built before the baseline is read.

Target: the sweep's peak RSS at 200,000 users ≤ 1.3× that at 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.output import default_path

__all__ = ["main", "run"]

ROOT = Path(__file__).resolve().parents[1]
LEAVERS = 100


def _rss_kib() -> int:
    """Current resident set size (KiB) from /proc; 0 where /proc is not there."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def _peak_kib() -> int:
    """Peak RSS (KiB) of this process image: ``VmHWM`` from /proc (reset by exec), else
    ``ru_maxrss`` (which Linux carries across exec from the parent, so only a fallback)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


# -- the child ---------------------------------------------------------------------------


async def _child_sweep() -> dict[str, Any]:
    from shared.instance import Instance
    from shared.jobs.sweep import plan_sweep

    instance = Instance.from_env(os.environ)
    try:
        baseline = _rss_kib()
        plan = await plan_sweep(
            instance, instance.store, instance.settings.tenant_id, now=time.time()
        )
    finally:
        await instance.aclose()
    return {"baseline_kib": baseline, "scanned": plan.scanned, "due": len(plan.due)}


async def _child_engine(n: int) -> dict[str, Any]:
    import ssl

    import httpx

    from benchmarks.scaling import BASE, _answer, _tokens, operations
    from shared.webapi import ApiClient, BatchEngine, PacingConfig, RetryPolicy

    ops = operations(n)
    client = ApiClient(
        BASE, _tokens, transport=httpx.MockTransport(_answer), verify=ssl.create_default_context()
    )
    engine = BatchEngine(
        client,
        concurrency=4,
        pacing=PacingConfig(writes_per_second=1e7, resource_units_per_second=1e8),
        retry=RetryPolicy(max_attempts=3, max_total_seconds=600.0),
    )
    baseline = _rss_kib()
    report = await engine.run(ops)
    await client.aclose()
    return {
        "baseline_kib": baseline,
        "succeeded": sum(1 for r in report.results if r.succeeded),
    }


def _child(kind: str, n: int) -> int:
    body = asyncio.run(_child_sweep() if kind == "sweep" else _child_engine(n))
    body["peak_kib"] = _peak_kib()
    print(json.dumps(body))
    return 0


# -- the parent --------------------------------------------------------------------------


def _spawn(kind: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--child", kind, str(n)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child {kind} {n} failed: {done.stderr.strip()[-800:]}")
    body: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    body["size"] = n
    body["peak_mib"] = round(body["peak_kib"] / 1024, 1)
    body["growth_mib"] = round((body["peak_kib"] - body["baseline_kib"]) / 1024, 1)
    return body


def _sweep(n: int) -> dict[str, Any]:
    from sandbox.azurite import Azurite
    from sandbox.seed import PLATFORM_SETTING_NAMES, seed_default, settings_for
    from sandbox.server import Sandbox

    with Azurite() as azurite, Sandbox() as sandbox:
        seed = seed_default(sandbox)
        sandbox.graph.directory.seed_users(seed.home_tenant_id, n, leavers=LEAVERS)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("DAEMON_") and k not in PLATFORM_SETTING_NAMES
        }
        env.update(settings_for(seed, sandbox, "client-secret"))
        env.update(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                "DAEMON_JOBS_QUEUE": "daemon-jobs",
                "DAEMON_SWEEP_SCHEDULE": "0 */15 * * * *",
            }
        )
        return _spawn("sweep", n, env)


def run(sweep_sizes: tuple[int, int], engine_sizes: tuple[int, int], label: str) -> dict[str, Any]:
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    sweep = [_sweep(n) for n in sweep_sizes]
    env = dict(os.environ)
    engine = [_spawn("engine", n, env) for n in engine_sizes]
    sweep_ratio = round(sweep[1]["peak_kib"] / sweep[0]["peak_kib"], 3)
    engine_ratio = round(engine[1]["peak_kib"] / engine[0]["peak_kib"], 3)
    checks = {
        f"sweep peak RSS at {sweep_sizes[1]:,} users <= 1.3x that at {sweep_sizes[0]:,}": (
            sweep_ratio <= 1.3
        )
    }
    return {
        "benchmark": "memory",
        "mode": label,
        "generated_at": when,
        "duration_seconds": round(time.perf_counter() - started, 1),
        "config": {
            "sweep_users": list(sweep_sizes),
            "sweep_leavers": LEAVERS,
            "engine_operations": list(engine_sizes),
            "peak": "VmHWM (/proc/self/status) of a fresh interpreter",
        },
        "sweep": sweep,
        "sweep_peak_ratio": sweep_ratio,
        "engine": engine,
        "engine_peak_ratio": engine_ratio,
        "targets": {"met": all(checks.values()), "checks": checks},
    }


def render(result: dict[str, Any]) -> str:
    lines = [f"memory ({result['mode']}): peak RSS of a fresh process"]
    for kind, unit in (("sweep", "users"), ("engine", "operations")):
        rows = result[kind]
        lines.append(
            f"{kind}: "
            + ", ".join(
                f"{r['size']:,} {unit}: peak {r['peak_mib']:.1f} MiB (+{r['growth_mib']:.1f} "
                "MiB over the baseline)"
                for r in rows
            )
            + f"; ratio {result[f'{kind}_peak_ratio']:.2f}×"
        )
    for check, ok in result["targets"]["checks"].items():
        lines.append(f"  {'met   ' if ok else 'MISSED'} {check}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks memory",
        description="Peak RSS of the sweep and of the engine at two sizes.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="sweep 2,000 vs 40,000 users, engine 10,000 vs 100,000"
    )
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, n = args.child
        if kind not in ("sweep", "engine") or not n.isdigit():
            parser.error(f"--child expects sweep|engine and a count, got {kind!r} {n!r}")
        return _child(kind, int(n))
    sweep_sizes = (2_000, 40_000) if args.quick else (10_000, 200_000)
    result = run(sweep_sizes, (10_000, 100_000), "quick" if args.quick else "full")
    output = args.output or default_path("memory_quick.json" if args.quick else "memory.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
