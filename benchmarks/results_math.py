"""The arithmetic behind the benchmarks' figures: pure functions, unit-tested.

Kept apart from the runs so the definitions the targets read (budget fraction, ratios,
the time series the plots draw, the verdicts) are tested without a sandbox.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

__all__ = ["budget_fraction", "ratio", "series", "targets_verdict"]


def budget_fraction(writes: int, starting_bucket: float, rate: float, wall: float) -> float:
    """Writes beyond the starting bucket ÷ what the sustained rate allows in ``wall``.

    ``(writes − starting_bucket) ÷ (rate × wall)``; 0.0 when ``wall`` or ``rate`` is not
    positive, and never below 0 (a run that did not leave its starting bucket).
    """
    if wall <= 0 or rate <= 0:
        return 0.0
    return max(0.0, (writes - starting_bucket) / (rate * wall))


def ratio(ours: float, theirs: float) -> float | None:
    """``ours ÷ theirs``; None when ``theirs`` is not positive (nothing to compare with)."""
    if theirs <= 0:
        return None
    return ours / theirs


def series(
    samples: Sequence[tuple[float, int, int]], *, bin_seconds: float
) -> dict[str, list[float]]:
    """Cumulative samples ``(t, writes, 429s)`` → per-second rates in bins of ``bin_seconds``.

    Samples must be in time order with non-decreasing counts. Each bin's rate is the counts'
    increase between the last samples at or before the bin's edges, ÷ the bin's width.
    """
    if bin_seconds <= 0:
        raise ValueError(f"bin_seconds must be positive, got {bin_seconds}")
    out: dict[str, list[float]] = {"t": [], "writes_per_second": [], "throttled_per_second": []}
    if not samples:
        return out
    for (t0, _, _), (t1, _, _) in itertools.pairwise(samples):
        if t1 < t0:
            raise ValueError(f"samples out of time order at t={t1}")
    end = samples[-1][0]
    edges = []
    edge = bin_seconds
    while edge < end:
        edges.append(edge)
        edge += bin_seconds
    if edges and end - edges[-1] < bin_seconds / 2:
        edges.pop()  # a last sliver of a bin joins the bin before it (no spike from a sliver)
    edges.append(end)
    i = 0
    last = (0, 0)
    prev = (0, 0)
    lower = 0.0
    for upper in edges:
        while i < len(samples) and samples[i][0] <= upper:
            last = (samples[i][1], samples[i][2])
            i += 1
        width = upper - lower
        if width <= 0:
            continue
        out["t"].append(round(upper, 3))
        out["writes_per_second"].append(round((last[0] - prev[0]) / width, 2))
        out["throttled_per_second"].append(round((last[1] - prev[1]) / width, 2))
        prev = last
        lower = upper
    return out


def targets_verdict(checks: Mapping[str, bool | None]) -> dict[str, object]:
    """``{"met": all checks true, "checks": ..., "missed": [...], "not_measured": [...]}``.

    A check whose value is None was not measured in this run (its contender or scenario was
    left out); it neither meets nor misses.
    """
    missed = [name for name, ok in checks.items() if ok is False]
    unmeasured = [name for name, ok in checks.items() if ok is None]
    return {
        "met": not missed and not unmeasured,
        "checks": dict(checks),
        "missed": missed,
        "not_measured": unmeasured,
    }
