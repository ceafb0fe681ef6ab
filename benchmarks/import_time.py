"""Import cost of function_app.py against ``import azure.functions`` alone, side by side.

The host imports function_app.py on every cold start; nothing heavy may happen there. Each
sample is a fresh interpreter; the two imports alternate so machine noise hits both alike.
Writes ``import_time.json`` to the untracked results directory, or to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.output import default_path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 15


def _one(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks import")
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    args = parser.parse_args(argv)
    output = args.output or default_path("import_time.json")
    baseline, app = [], []
    started = time.monotonic()
    for _ in range(SAMPLES):
        baseline.append(_one("import azure.functions"))
        app.append(_one("import function_app"))
    result = {
        "benchmark": "import_time",
        "samples": SAMPLES,
        "azure_functions_median_s": round(statistics.median(baseline), 4),
        "function_app_median_s": round(statistics.median(app), 4),
        "ratio": round(statistics.median(app) / statistics.median(baseline), 3),
        "duration_seconds": round(time.monotonic() - started, 1),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"import function_app: median {statistics.median(app) * 1000:.0f} ms vs "
        f"import azure.functions {statistics.median(baseline) * 1000:.0f} ms "
        f"(ratio {result['ratio']:.2f}, {SAMPLES} fresh interpreters each)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
