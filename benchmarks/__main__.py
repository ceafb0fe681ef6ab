"""``python -m benchmarks [--quick] [--results-dir DIR] [batch options]``: batch throughput,
joiners (coalesced vs per-member group adds), scheduling cost, then import time.

One benchmark alone: ``python -m benchmarks {batch,joiners,scaling,import} [options]``.
Results go to the untracked ``benchmarks/results/latest.tmp/`` unless ``--results-dir`` (all)
or ``--output`` (one) says otherwise: a plain run never rewrites the committed figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks import batch_throughput, import_time, joiners, scaling
from benchmarks.output import default_path

_ONE = {
    "batch": batch_throughput.main,
    "joiners": joiners.main,
    "scaling": scaling.main,
    "import": import_time.main,
}


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
    suffix = "_quick" if quick else ""
    out = (
        []
        if "--output" in argv
        else ["--output", str(default_path(f"batch_throughput{suffix}.json", directory))]
    )
    status = batch_throughput.main([*argv, *out])
    status |= joiners.main(
        [
            *(["--quick"] if quick else []),
            "--output",
            str(default_path(f"joiners{suffix}.json", directory)),
        ]
    )
    status |= scaling.main(
        [
            *(["--quick"] if quick else []),
            "--output",
            str(default_path(f"scaling{suffix}.json", directory)),
        ]
    )
    status |= import_time.main(["--output", str(default_path("import_time.json", directory))])
    return status


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] and args[0] in _ONE:
        sys.exit(_ONE[args[0]](args[1:]))
    sys.exit(_all(args))
