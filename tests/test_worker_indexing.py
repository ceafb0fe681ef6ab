"""Index function_app.py with the real worker library (azure-functions-runtime) where Python
3.13 is available: the production check that drops the whole app on one bad function."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-py313"
REQUIREMENTS = ROOT / "tests" / "worker-index-requirements.txt"


def _python313() -> str | None:
    """A working Python 3.13 interpreter: this one, python3.13 on PATH, or pyenv's."""
    if sys.version_info >= (3, 13):
        return sys.executable
    candidates = [shutil.which("python3.13")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/3.13*/bin/python3.13"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info >= (3, 13))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def _venv() -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    base = _python313()
    assert base is not None
    subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True
    )
    stamp.write_text(wanted)
    return python


@pytest.mark.skipif(_python313() is None, reason="needs a python3.13 interpreter on PATH")
def test_the_real_worker_indexes_every_function() -> None:
    python = _venv()
    result = subprocess.run(
        [str(python), str(ROOT / "tests" / "worker_index.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = {f["name"]: f for f in json.loads(result.stdout.strip().splitlines()[-1])}
    assert set(found) == {"sweep_timer", "jobs_worker"}
    assert found["sweep_timer"]["inputs"] == ["timer"]
    assert found["sweep_timer"]["outputs"] == []
    assert found["jobs_worker"]["inputs"] == ["msg"]
    assert all(f["async"] for f in found.values())
