"""``python -m benchmarks [--quick] [...]``: run the benchmarks (today: batch throughput)."""

from __future__ import annotations

import sys

from benchmarks.batch_throughput import main

if __name__ == "__main__":
    sys.exit(main())
