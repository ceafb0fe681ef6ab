"""Where benchmark results go: an untracked directory unless a path is given.

``benchmarks/results/latest.tmp/`` is ignored by git (``benchmarks/results/*.tmp``), so a
plain ``make bench`` never rewrites the committed figures in ``benchmarks/results/``; pass
``--output PATH`` to one benchmark, or ``--results-dir DIR`` to ``python -m benchmarks``
(e.g. ``--results-dir benchmarks/results`` to refresh the committed files on purpose).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["COMMITTED_DIR", "DEFAULT_DIR", "default_path"]

COMMITTED_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_DIR = COMMITTED_DIR / "latest.tmp"


def default_path(name: str, directory: Path | None = None) -> Path:
    """``name`` in ``directory`` (default: the untracked ``results/latest.tmp``)."""
    return (directory or DEFAULT_DIR) / name
