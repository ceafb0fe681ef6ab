"""Scheduling cost: engine CPU per operation with 10,000 vs 100,000 operations queued.

The engine runs against an in-process answerer (``httpx.MockTransport`` that answers every
``$batch`` item at once, no sockets, no latency, pacing far above what is sent): what is
left is the engine's own work per operation — validation, the ready queue, coalescing,
building and parsing batches, settling. The operations are a mix of independent PATCHes,
two-step chains (the second step is ready only after the first succeeded) and member adds
to 50 groups (coalesced). Linear scheduling means the CPU per operation does not grow with
the number queued; the target is ≤ 1.5× from 10,000 to 100,000.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from benchmarks.output import default_path
from shared.webapi import ApiClient, BatchEngine, Operation, PacingConfig, RetryPolicy

__all__ = ["main", "measure_cpu", "operations"]

BASE = "https://graph.microsoft.com/v1.0"


def operations(n: int) -> list[Operation]:
    """``n`` operations: 40 % PATCH, 40 % two-step chains, 20 % member adds to 50 groups."""
    ops: list[Operation] = []
    i = 0
    while len(ops) < n:
        kind = i % 5
        if kind in (0, 1):
            ops.append(Operation(f"p{i}", "PATCH", f"/users/u{i}", {"department": "R&D"}))
        elif kind == 2:
            ops.append(Operation(f"c{i}", "PATCH", f"/users/u{i}", {"jobTitle": "a"}))
            ops.append(
                Operation(
                    f"d{i}", "PATCH", f"/users/u{i}", {"officeLocation": "b"}, depends_on=(f"c{i}",)
                )
            )
        else:
            ops.append(
                Operation(
                    f"m{i}",
                    "POST",
                    f"/groups/g{i % 50}/members/$ref",
                    {"@odata.id": f"{BASE}/directoryObjects/u{i}"},
                )
            )
        i += 1
    return ops[:n]


def _answer(request: httpx.Request) -> httpx.Response:
    items = json.loads(request.content)["requests"]
    return httpx.Response(
        200,
        json={"responses": [{"id": item["id"], "status": 204, "headers": {}} for item in items]},
    )


async def _tokens(*, force_refresh: bool = False) -> str:
    return "token"


async def _run(n: int, *, freeze: bool = False) -> dict[str, Any]:
    ops = operations(n)
    # an explicit context: a sandbox run earlier in this process may have left SSL_CERT_FILE
    # naming a CA file that is gone (nothing is verified here: no socket is opened)
    client = ApiClient(
        BASE, _tokens, transport=httpx.MockTransport(_answer), verify=ssl.create_default_context()
    )
    engine = BatchEngine(
        client,
        concurrency=4,
        pacing=PacingConfig(writes_per_second=1e7, resource_units_per_second=1e8),
        retry=RetryPolicy(max_attempts=3, max_total_seconds=600.0),
    )
    gc.collect()
    if freeze:  # the caller's operations out of the collector's sight: the engine's own cost
        gc.freeze()
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        report = await engine.run(ops)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        gc.unfreeze()
    await client.aclose()
    succeeded = sum(1 for r in report.results if r.succeeded)
    return {
        "operations": n,
        "input_frozen": freeze,
        "succeeded": succeeded,
        "cpu_seconds": round(cpu, 3),
        "wall_seconds": round(wall, 3),
        "cpu_ms_per_1000_operations": round(1e6 * cpu / n, 2),
        "batches": report.stats.batches_sent,
        "member_binds": report.stats.member_binds,
    }


def _ratio(runs: list[dict[str, Any]]) -> float:
    small, large = runs[0], runs[-1]
    return round(
        float(large["cpu_ms_per_1000_operations"]) / float(small["cpu_ms_per_1000_operations"]), 3
    )


def measure_cpu(sizes: tuple[int, ...] = (10_000, 100_000)) -> dict[str, Any]:
    """CPU per operation at each size, and the ratio of the largest to the smallest.

    Measured twice: as is (the target), and with the caller's operations frozen out of the
    garbage collector (``gc.freeze``), which shows how much of the growth is the
    collector walking a larger heap rather than the engine's own work.
    """
    runs = [asyncio.run(_run(n)) for n in sizes]
    frozen = [asyncio.run(_run(n, freeze=True)) for n in sizes]
    ratio = _ratio(runs)
    return {
        "runs": runs,
        "cpu_per_operation_ratio": ratio,
        "runs_input_frozen": frozen,
        "cpu_per_operation_ratio_input_frozen": _ratio(frozen),
        "target": "cpu_per_operation_ratio <= 1.5",
        "met": ratio <= 1.5 and all(r["succeeded"] == r["operations"] for r in runs),
    }


def render(result: dict[str, Any]) -> str:
    lines = ["scheduling cost (engine CPU per 1,000 operations, in-process answerer):"]
    for label, key in (("as is", "runs"), ("input frozen", "runs_input_frozen")):
        runs = result[key]
        figures = ", ".join(
            f"{r['operations']:,} queued {r['cpu_ms_per_1000_operations']:.1f} ms" for r in runs
        )
        ratio = result["cpu_per_operation_ratio" + ("" if key == "runs" else "_input_frozen")]
        lines.append(f"  {label:<13} {figures}: ratio {ratio:.2f}×")
    lines.append(f"  target {result['target']}: {'MET' if result['met'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scaling")
    parser.add_argument("--quick", action="store_true", help="1,000 vs 10,000 operations")
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    args = parser.parse_args(argv)
    sizes = (1_000, 10_000) if args.quick else (10_000, 100_000)
    result = {"benchmark": "scaling", "sizes": list(sizes), **measure_cpu(sizes)}
    output = args.output or default_path("scaling_quick.json" if args.quick else "scaling.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"results: {output}")
    return 0 if all(r["succeeded"] == r["operations"] for r in result["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
