"""PNG plots of the benchmarks' time series (matplotlib, Agg backend: no display needed).

matplotlib is a benchmark-only dependency (``requirements-bench.txt``); it is imported when
a plot is drawn, so the benchmarks run (without plots) where it is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_peers", "plot_scale_out"]


def _pyplot() -> Any | None:
    """matplotlib's pyplot on the Agg backend, or None (with a line) when not installed."""
    try:
        import matplotlib
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install -r requirements-bench.txt)")
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def plot_peers(result: dict[str, Any], directory: Path, *, stem: str = "peers") -> list[Path]:
    """One PNG per scenario: writes/s and 429s/s over time, a line per contender."""
    plt = _pyplot()
    if plt is None:
        return []

    paths: list[Path] = []
    directory.mkdir(parents=True, exist_ok=True)
    for scenario, body in result.get("scenarios", {}).items():
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        for name, figures in body.get("contenders", {}).items():
            s = figures.get("series") or {}
            if not s.get("t"):
                continue
            top.plot(s["t"], s["writes_per_second"], label=name)
            bottom.plot(s["t"], s["throttled_per_second"], label=name)
        rate = body.get("config", {}).get("write_rate_per_tenant")
        tenants = body.get("config", {}).get("tenants", 1)
        if rate:
            top.axhline(rate * tenants, color="grey", linestyle="--", linewidth=1, label="budget")
        top.set_ylabel("writes/s admitted")
        bottom.set_ylabel("429s/s")
        bottom.set_xlabel("seconds since the contender started")
        top.set_title(f"{scenario} ({result.get('mode', '')}, F={result['config']['factor']:g})")
        top.legend(loc="upper right", fontsize="small")
        bottom.legend(loc="upper right", fontsize="small")
        fig.tight_layout()
        path = directory / f"{stem}_{scenario}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_scale_out(
    result: dict[str, Any], directory: Path, *, stem: str = "scale_out"
) -> list[Path]:
    """One PNG: writes/s and 429s/s over time since the workers started, a line per worker
    count, the budget dashed."""
    plt = _pyplot()
    if plt is None:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for count, figures in result.get("worker_counts", {}).items():
        s = figures.get("series") or {}
        if not s.get("t"):
            continue
        label = f"{count} worker{'s' if count != '1' else ''}"
        top.plot(s["t"], s["writes_per_second"], label=label)
        bottom.plot(s["t"], s["throttled_per_second"], label=label)
    config = result.get("config", {})
    if config.get("write_rate"):
        top.axhline(config["write_rate"], color="grey", linestyle="--", linewidth=1, label="budget")
    top.set_ylabel("writes/s admitted")
    bottom.set_ylabel("429s/s")
    bottom.set_xlabel("seconds since the workers were started")
    fleet = "fleet budget on" if config.get("fleet", True) else "fleet budget off"
    top.set_title(f"scale_out ({result.get('mode', '')}, F={config.get('factor', 0):g}, {fleet})")
    top.legend(loc="upper right", fontsize="small")
    bottom.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    path = directory / f"{stem}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]
