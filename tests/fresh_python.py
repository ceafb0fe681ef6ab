"""Run code in a fresh interpreter at the repository root: what a module imports at start-up
is only visible in a process that has imported nothing else (this test session has)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_fresh(code: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in the repository root with ``env``; fails the test on a non-zero
    exit, with the end of stderr."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result
