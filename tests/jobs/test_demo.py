"""`make demo`'s job, as a user runs it: `python -m sandbox demo --json`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_applies_everything_it_planned() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAEMON_", "AzureWebJobs"))}
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "demo", "--json", "--users", "1500", "--leavers", "250"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("planned", "applied", "failed", "throttled", "token_requests", "seconds"):
        assert key in summary
    assert summary["planned"] >= 1000
    assert summary["applied"] == summary["planned"]
    assert summary["failed"] == 0
    assert summary["poisoned"] == 0
    assert summary["duplicate_creates"] == 0
    assert summary["leavers_disabled"] == 250
    assert summary["token_requests"] == 1
