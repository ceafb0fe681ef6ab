"""The figures' tables in README.md and benchmarks/README.md, regenerated from a run.

``python -m benchmarks --update-docs`` replaces what lies between the markers
``<!-- benchmarks:table:begin -->`` and ``<!-- benchmarks:table:end -->`` in both files with
the table :func:`performance_table` builds from the run's JSON results; the rest of each
file is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["BEGIN", "END", "performance_table", "replace_between", "update_docs"]

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- benchmarks:table:begin -->"
END = "<!-- benchmarks:table:end -->"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"**{x:.2f}×**"


def _peer_rows(peers: Mapping[str, Any]) -> list[str]:
    rows: list[str] = []
    wanted = {
        "single_tenant": "≥ 1.4× msgraph-sdk",
        "joiners": "≥ 3× msgraph-sdk",
        "multi_tenant": "≥ 3× msgraph-sdk, ≥ 10× naive",
    }
    for scenario, body in peers.get("scenarios", {}).items():
        c = body["contenders"]
        ours = c.get("ours")
        if ours is None:
            continue
        unit = "joiners/s" if scenario == "joiners" else "writes/s"
        parts = [
            f"ours {ours['units_per_second']:.0f} {unit}, {_pct(ours['budget_fraction'])} of the "
            f"budget, {ours['item_429_percent']:.2f} % 429s, {ours['lost']} lost"
        ]
        for other in ("msgraph_sdk", "naive"):
            theirs = c.get(other)
            if theirs is None:
                continue
            lost = theirs.get("memberships_missing", theirs.get("not_applied", 0))
            what = "memberships missing" if scenario == "joiners" else "not applied"
            parts.append(
                f"{other} {theirs['units_per_second']:.1f} {unit}, "
                f"{theirs['item_429_percent']:.1f} % 429s, {lost} {what}"
            )
        ratios = ", ".join(
            f"÷ {k.removeprefix('ours_vs_')} {_ratio(v)}" for k, v in body["ratios"].items()
        )
        rows.append(
            f"| {scenario} (`python -m benchmarks peers --scenarios {scenario}`) | "
            f"{'; '.join(parts)}; ours {ratios} | ≥ 90 % of the budget, 0 lost, < 2 % 429s; "
            f"{wanted.get(scenario, '')} |"
        )
    return rows


def _scale_out_row(scale: Mapping[str, Any]) -> str:
    counts = scale["worker_counts"]
    order = sorted(counts, key=int)
    fractions = " / ".join(_pct(counts[n]["budget_fraction_after_bucket"]) for n in order)
    throttled = " / ".join(f"{counts[n]['item_responses_429']:,}" for n in order)
    lost = sum(counts[n]["lost"] for n in order)
    duplicated = sum(counts[n]["duplicated"] for n in order)
    quick = " --quick" if scale.get("mode") == "quick" else ""
    return (
        f"| scale_out (`python -m benchmarks.scale_out{quick}`): {', '.join(order)} worker "
        "processes on one queue and one tenant, fleet budget on | "
        f"{fractions} of the budget after the starting bucket; {throttled} 429s; {lost} lost, "
        f"{duplicated} duplicated | 4 workers ≥ 90 %, 429s ≤ 2× 1 worker |"
    )


def performance_table(results: Mapping[str, Mapping[str, Any]], *, mode: str) -> str:
    """A markdown table of the run's headline figures (from the benchmarks' JSON)."""
    lines = [
        f"Run of `python -m benchmarks{' --quick' if mode == 'quick' else ''}` ({mode}); "
        "every figure from the same run, strict sandbox, Graph's budgets compressed 10× in "
        "time.",
        "",
        "| benchmark | figure | target |",
        "|---|---|---|",
    ]
    if "peers" in results:
        lines += _peer_rows(results["peers"])
    tokens = results.get("tokens")
    if tokens:
        c = tokens["contenders"]
        o, a, s = c["ours"], c["azure_identity_async"], c["azure_identity_sync_threads"]
        lines.append(
            "| token requests (`python -m benchmarks tokens`) | ours "
            f"{o['per_10000_operations']:g} per 10,000 operations, {o['cold_100']} for 100 "
            f"concurrent callers cold, {o['at_expiry_100']} at expiry; azure-identity async "
            f"{a['per_10000_operations']:g} / {a['cold_100']} / {a['at_expiry_100']}, sync from "
            f"100 threads — / {s['cold_100']} / {s['at_expiry_100']} | 1 per (tenant, scope, "
            "instance, lifetime) |"
        )
    cold = results.get("coldstart")
    if cold:
        m = cold["median_seconds"]
        lines.append(
            "| cold start (`python -m benchmarks coldstart`) | first API response "
            f"{m['ours']['response']:.2f} s ours vs {m['msgraph_sdk']['response']:.2f} s "
            f"msgraph-sdk (first token {m['ours']['token']:.2f} s vs "
            f"{m['msgraph_sdk']['token']:.2f} s; median of "
            f"{cold['config']['runs_per_contender']} fresh processes) | sooner than msgraph-sdk |"
        )
    memory = results.get("memory")
    if memory:
        sw, en = memory["sweep"], memory["engine"]
        lines.append(
            "| memory (`python -m benchmarks memory`) | sweep peak RSS "
            f"{sw[0]['peak_mib']:.0f} MiB at {sw[0]['size']:,} users, {sw[1]['peak_mib']:.0f} "
            f"MiB at {sw[1]['size']:,}: **{memory['sweep_peak_ratio']:.2f}×**; engine "
            f"{en[0]['peak_mib']:.0f} → {en[1]['peak_mib']:.0f} MiB from {en[0]['size']:,} to "
            f"{en[1]['size']:,} operations ({memory['engine_peak_ratio']:.2f}×) | sweep ≤ 1.3× |"
        )
    scaling = results.get("scaling")
    if scaling and "cpu_per_operation_ratio" in scaling:
        small, large = (scaling.get("sizes") or [10_000, 100_000])[:2]
        lines.append(
            "| scheduling (`python -m benchmarks scaling`) | engine CPU per operation at "
            f"{large:,} queued = {scaling['cpu_per_operation_ratio']:.2f}× that at {small:,} | "
            "≤ 1.5× |"
        )
    scale = results.get("scale_out")
    if scale and scale.get("worker_counts"):
        lines.append(_scale_out_row(scale))
    imp = results.get("import")
    if imp and "ratio" in imp:
        lines.append(
            "| import (`python -m benchmarks import`) | `import function_app` "
            f"{imp['ratio']:.2f}× `import azure.functions` | ≤ 1.5× |"
        )
    return "\n".join(lines)


def replace_between(text: str, block: str, *, where: str) -> str:
    """``text`` with what lies between BEGIN and END replaced by ``block``."""
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"{where}: the markers {BEGIN} … {END} are missing or out of order")
    return text[: start + len(BEGIN)] + "\n" + block + "\n" + text[end:]


def update_docs(ran: Mapping[str, Path], *, quick: bool) -> list[Path]:
    """Write the table of the run whose results are ``ran`` into both READMEs."""
    results = {
        name: json.loads(path.read_text(encoding="utf-8"))
        for name, path in ran.items()
        if path.is_file()
    }
    block = performance_table(results, mode="quick" if quick else "full")
    written = []
    for path in (ROOT / "README.md", ROOT / "benchmarks" / "README.md"):
        text = path.read_text(encoding="utf-8")
        path.write_text(replace_between(text, block, where=str(path)), encoding="utf-8")
        written.append(path)
    return written
