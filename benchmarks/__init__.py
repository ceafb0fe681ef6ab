"""Side-by-side measurements against the offline sandbox (``python -m benchmarks``).

Timings live here, never in the tests. The machine running them is usually shared and noisy,
so every benchmark reports ratios between contenders measured in the same run, next to the
raw figures. See ``benchmarks/README.md``.
"""

from __future__ import annotations

__all__: list[str] = []
