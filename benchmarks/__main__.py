"""``python -m benchmarks [--quick] [...]``: batch throughput, then import time.

``python -m benchmarks import`` runs only the import-time comparison.
"""

from __future__ import annotations

import sys

from benchmarks import batch_throughput, import_time

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["import"]:
        sys.exit(import_time.main())
    status = batch_throughput.main(argv)
    sys.exit(status or import_time.main())
