"""``python -m benchmarks [--quick] [--results-dir DIR] [--update-docs]``: every benchmark.

In order: ``peers`` (ours vs msgraph-sdk-python vs a naive httpx loop: single tenant,
joiners, multi-tenant), ``tokens`` (ours vs azure-identity used directly), ``coldstart``
(first token and first API response of a fresh process), ``memory`` (peak RSS), ``scaling``
(engine CPU per operation), ``import`` (``function_app`` vs ``azure.functions``), and
``scale_out`` when it is there. ``--quick`` runs each in its smoke size (the same JSON
shapes); a summary of every target, met or missed, ends the run and goes to
``summary[_quick].json``; ``--update-docs`` writes its table into README.md and
benchmarks/README.md.

One benchmark alone: ``python -m benchmarks NAME [options]`` with NAME among
peers, tokens, coldstart, memory, scale_out, batch, joiners, scaling, import.
Results go to the untracked ``benchmarks/results/latest.tmp/`` unless ``--results-dir``
(all) or ``--output`` (one) says otherwise: a plain run never rewrites the committed figures.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.output import default_path

Main = Callable[[Sequence[str] | None], int]

# name -> module with ``main(argv) -> int``; imported when used
_MODULES = {
    "peers": "benchmarks.peers",
    "tokens": "benchmarks.tokens",
    "coldstart": "benchmarks.coldstart",
    "memory": "benchmarks.memory",
    "scale_out": "benchmarks.scale_out",
    "batch": "benchmarks.batch_throughput",
    "joiners": "benchmarks.joiners",
    "scaling": "benchmarks.scaling",
    "import": "benchmarks.import_time",
}
# what a plain ``python -m benchmarks`` runs, and the file each writes
_ALL = ("peers", "tokens", "coldstart", "memory", "scaling", "import", "scale_out")
_QUICK_FLAG = {"peers", "tokens", "coldstart", "memory", "scaling", "scale_out"}
_FILES = {
    "peers": "peers",
    "tokens": "tokens",
    "coldstart": "coldstart",
    "memory": "memory",
    "scaling": "scaling",
    "import": "import_time",
    "scale_out": "scale_out",
}


def load(name: str) -> Main | None:
    """The benchmark's ``main``; None if its module is not there."""
    module_name = _MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module is there, something it imports is not
        return None
    main: Main = module.main
    return main


def _output(name: str, quick: bool, directory: Path | None) -> Path:
    suffix = "_quick" if quick and name != "import" else ""
    return default_path(f"{_FILES[name]}{suffix}.json", directory)


def _verdicts(name: str, path: Path) -> list[tuple[str, bool | None]]:
    """(check, met) pairs from a benchmark's JSON ``targets``; none if it has none."""
    if not path.is_file():
        return []
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if name == "import" and "ratio" in result:
        return [("import: function_app ≤ 1.5× azure.functions", result["ratio"] <= 1.5)]
    if name == "scaling" and "met" in result:
        return [(f"scaling: {result.get('target', 'target')}", bool(result["met"]))]
    checks = (result.get("targets") or {}).get("checks") or {}
    return [(f"{name}: {check}", ok) for check, ok in checks.items()]


def _all(argv: list[str]) -> int:
    directory: Path | None = None
    if "--results-dir" in argv:
        at = argv.index("--results-dir")
        if at + 1 >= len(argv):
            print("--results-dir needs a directory", file=sys.stderr)
            return 2
        directory = Path(argv[at + 1])
        del argv[at : at + 2]
    quick = "--quick" in argv
    update_docs = "--update-docs" in argv
    unknown = [a for a in argv if a not in ("--quick", "--update-docs")]
    if unknown:
        print(
            f"unknown option(s) {' '.join(unknown)}: python -m benchmarks [--quick] "
            "[--results-dir DIR] [--update-docs], or python -m benchmarks NAME --help",
            file=sys.stderr,
        )
        return 2
    status = 0
    ran: dict[str, Path] = {}
    started = time.perf_counter()
    for step, name in enumerate(_ALL, 1):
        main = load(name)
        if main is None:
            print(f"[{step}/{len(_ALL)}] {name}: not available in this checkout, skipped")
            continue
        print(f"[{step}/{len(_ALL)}] {name} …", flush=True)
        path = _output(name, quick, directory)
        args = [*(["--quick"] if quick and name in _QUICK_FLAG else []), "--output", str(path)]
        status |= main(args)
        ran[name] = path
    summary: dict[str, Any] = {
        "benchmark": "summary",
        "mode": "quick" if quick else "full",
        "duration_seconds": round(time.perf_counter() - started, 1),
        "results": {name: str(path) for name, path in ran.items()},
        "checks": {check: ok for name, path in ran.items() for check, ok in _verdicts(name, path)},
    }
    path = default_path(f"summary{'_quick' if quick else ''}.json", directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print()
    print("targets (a missed target is reported, never fails the run):")
    for check, ok in summary["checks"].items():
        print(f"  {'met   ' if ok else 'n/a   ' if ok is None else 'MISSED'} {check}")
    print(f"summary: {path} ({summary['duration_seconds']:.0f} s)")
    if update_docs:
        from benchmarks.docs import update_docs as write_docs

        for written in write_docs(ran, quick=quick):
            print(f"updated: {written}")
    return status


def run(argv: list[str]) -> int:
    if argv[:1] and argv[0] in _MODULES:
        main = load(argv[0])
        if main is None:
            print(f"benchmark {argv[0]!r} is not available in this checkout", file=sys.stderr)
            return 2
        return main(argv[1:])
    return _all(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
