"""The scale-out plot draws from the JSON shape ``benchmarks.scale_out`` writes."""

from __future__ import annotations

from pathlib import Path

from benchmarks.plots import plot_scale_out
from benchmarks.results_math import series


def test_scale_out_plot_has_a_line_per_worker_count(tmp_path: Path) -> None:
    samples = [(0.25 * i, 50 * i, 0 if i < 8 else 3) for i in range(40)]
    result = {
        "mode": "quick",
        "config": {"factor": 10.0, "write_rate": 200.0, "fleet": True},
        "worker_counts": {
            "1": {"series": series(samples, bin_seconds=0.5)},
            "4": {"series": series(samples[:20], bin_seconds=0.5)},
            "2": {"series": {"t": []}},  # nothing sampled: no line, no error
        },
    }
    paths = plot_scale_out(result, tmp_path, stem="scale_out_quick")
    assert paths == [tmp_path / "scale_out_quick.png"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
