"""``python -m sandbox``: the --replication-delay option reaches the directory API."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sandbox.cli import _parser

PROBE = (
    "import os, httpx; "
    "base = os.environ['DAEMON_API_BASE_URL'].removesuffix('/v1.0'); "
    "ca = os.environ['SSL_CERT_FILE']; "
    "config = httpx.get(base + '/_sandbox/graph/config', verify=ca).json(); "
    "print(config['replication_delay'], config['require_lifecycle_role'])"
)


def test_exec_runs_with_the_given_replication_delay() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "exec",
            "--auth-mode",
            "client-secret",
            "--replication-delay",
            "0.25",
            "--",
            sys.executable,
            "-c",
            PROBE,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["0.25", "True"]


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_the_option_defaults_to_the_configs_value(command: str) -> None:
    assert _parser().parse_args([command]).replication_delay is None
    assert _parser().parse_args([command, "--replication-delay", "2"]).replication_delay == 2.0


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan"])
def test_a_bad_delay_names_the_option(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--replication-delay", value])
    assert "--replication-delay" in capsys.readouterr().err
