"""The local workflow as the README tells it, run as a user would: ``python -m sandbox exec``
exports everything the host commands need (stable tenant ids, queue, schedule, user domain,
storage), ``--azurite`` gives them one Azurite for the whole sequence, ``serve`` writes a
ready settings file, and bad input is one line. Real processes, real sandbox and Azurite."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.seed import USER_DOMAIN, stable_tenant_id

ROOT = Path(__file__).resolve().parents[2]
PYTHON = shlex.quote(sys.executable)
HOME_TENANT = stable_tenant_id("Contoso")
# Reads the sandbox's directory through its admin API (no token needed) and prints the users
# with employeeId E1 in the home tenant: what the provision job created.
DIRECTORY_PROBE = (
    "import json, os, httpx; "
    "base = os.environ['DAEMON_API_BASE_URL'].removesuffix('/v1.0'); "
    "tenant = os.environ['DAEMON_TENANT_ID']; "
    "snap = httpx.get(base + '/_sandbox/graph/directory', params={'tenant': tenant, 'users': 1}, "
    "verify=os.environ['SSL_CERT_FILE']).json(); "
    "print('DIRECTORY ' + json.dumps(snap))"
)


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any daemon or storage setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DAEMON_", "AzureWebJobsStorage"))
        and k not in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")
    }
    env.update(extra)
    return env


def _sandbox(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        cwd=ROOT,
        env=_clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_offline_sequence_enqueues_runs_the_timer_and_applies_the_job(
    tmp_path: Path,
) -> None:
    people = tmp_path / "people.json"
    people.write_text(
        json.dumps(
            {
                "joiners": [
                    {
                        "employeeId": "E1",
                        "givenName": "Ada",
                        "surname": "Lovelace",
                        "department": "R&D",
                        "jobTitle": "Engineer",
                    }
                ]
            }
        )
    )
    steps = " && ".join(
        [
            f"{PYTHON} -m shared enqueue --job provision --payload {shlex.quote(str(people))}",
            f"{PYTHON} -m shared run-timer",
            f"{PYTHON} -m shared drain",
            f"{PYTHON} -c {shlex.quote(DIRECTORY_PROBE)}",
        ]
    )
    result = _sandbox(
        "exec",
        "--auth-mode",
        "keyvault-certificate",
        "--azurite",
        "--",
        "sh",
        "-c",
        steps,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout.splitlines()
    assert any(line.startswith(f"enqueued provision for tenant {HOME_TENANT} as ") for line in out)
    assert "invocations 1, succeeded 1, failed 0, poisoned 0" in out
    assert f"job provision tenant {HOME_TENANT}" in result.stderr
    assert "succeeded; planned 1, applied 1, failed 0" in result.stderr
    # the timer ran for both allowed tenants and sent nothing (no leavers in the seed)
    assert "Executed timer function sweep_timer: sent 0 message(s)" in result.stderr
    snapshot = json.loads(next(line for line in out if line.startswith("DIRECTORY "))[10:])
    text = json.dumps(snapshot)
    assert f"ada.lovelace.e1@{USER_DOMAIN}" in text
    assert "Traceback" not in result.stderr


def test_exec_exports_what_the_host_commands_need_with_stable_tenant_ids() -> None:
    names = (
        "DAEMON_TENANT_ID",
        "DAEMON_ALLOWED_TENANTS",
        "DAEMON_JOBS_QUEUE",
        "DAEMON_SWEEP_SCHEDULE",
        "DAEMON_USER_DOMAIN",
        "AzureWebJobsStorage",
    )
    probe = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))"
    first = _sandbox("exec", "--auth-mode", "client-secret", "--", sys.executable, "-c", probe)
    second = _sandbox("exec", "--auth-mode", "client-secret", "--", sys.executable, "-c", probe)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    seen = json.loads(first.stdout.splitlines()[-1])
    assert seen == json.loads(second.stdout.splitlines()[-1])  # the same in every run
    assert seen["DAEMON_TENANT_ID"] == HOME_TENANT
    assert seen["DAEMON_ALLOWED_TENANTS"] == f"{HOME_TENANT},{stable_tenant_id('Fabrikam')}"
    assert seen["DAEMON_JOBS_QUEUE"] == "daemon-jobs"
    assert seen["DAEMON_SWEEP_SCHEDULE"] == "0 */15 * * * *"
    assert seen["DAEMON_USER_DOMAIN"] == USER_DOMAIN
    # Azurite on its default ports (npm run azurite) unless told otherwise
    assert seen["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"

    # The caller's own queue and storage win; --random-tenants gives fresh ids.
    own = _clean_env(DAEMON_JOBS_QUEUE="my-jobs", AzureWebJobsStorage="UseDevelopmentStorage=true")
    third = _sandbox(
        "exec",
        "--auth-mode",
        "client-secret",
        "--random-tenants",
        "--",
        sys.executable,
        "-c",
        probe,
        env=own,
    )
    assert third.returncode == 0, third.stderr
    fresh = json.loads(third.stdout.splitlines()[-1])
    assert fresh["DAEMON_JOBS_QUEUE"] == "my-jobs"
    assert fresh["DAEMON_TENANT_ID"] not in (HOME_TENANT, stable_tenant_id("Fabrikam"))


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("foo=1", "--fault 'foo=1': unknown fault 'foo'; expected one of "),
        ("error_rate", "--fault 'error_rate': expected NAME=VALUE"),
        ("error_rate=lots", "--fault 'error_rate=lots': the value must be a number"),
        ("error_rate=nan", "--fault 'error_rate=nan': expected a finite number >= 0"),
        ("fail_next=1.5", "--fault 'fail_next=1.5': fail_next is a whole number"),
        ("error_statuses=500", "--fault 'error_statuses=500': unknown fault 'error_statuses'"),
    ],
)
def test_a_bad_fault_is_one_line_before_anything_starts(fault: str, expected: str) -> None:
    result = _sandbox("exec", "--auth-mode", "client-secret", "--fault", fault, "--", "true")
    assert result.returncode == 2
    assert result.stderr.startswith(f"python -m sandbox exec: error: {expected}")
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


def test_exec_without_a_command_is_one_line() -> None:
    result = _sandbox("exec", "--auth-mode", "client-secret")
    assert result.returncode == 2
    assert result.stderr == "python -m sandbox exec: error: a command is required after --\n"


def test_exec_with_an_unknown_command_names_it() -> None:
    result = _sandbox("exec", "--auth-mode", "client-secret", "--", "no-such-command-here")
    assert result.returncode == 127
    assert result.stderr == "exec: command not found: no-such-command-here\n"


def _serve_until_settings(*args: str) -> tuple[dict[str, object], str]:
    """Start ``serve``, read its printed JSON, stop it with SIGTERM; return (JSON, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", *args],
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        lines: list[str] = []
        while True:
            line = process.stdout.readline()
            assert line, "serve exited before printing its settings: " + process.stderr.read()
            lines.append(line)
            if line.rstrip() == "}":
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        return json.loads("".join(lines)), process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_serve_writes_a_ready_private_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    printed, err = _serve_until_settings(
        "--auth-mode", "client-secret", "--settings-file", str(path)
    )
    assert printed["settings_file"] == str(path)
    assert f"to {path};" in err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["IsEncrypted"] is False
    values = document["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["DAEMON_AUTH_MODE"] == "client-secret"
    assert values["DAEMON_TENANT_ID"] == HOME_TENANT
    assert values["DAEMON_JOBS_QUEUE"] == "daemon-jobs"
    assert values["DAEMON_USER_DOMAIN"] == USER_DOMAIN
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    # the file holds the secrets; the printed settings stay redacted
    secret = values["DAEMON_CLIENT_SECRET"]
    assert secret
    assert not secret.startswith("<redacted")
    settings = printed["settings"]
    assert isinstance(settings, dict)
    assert settings["client-secret"]["DAEMON_CLIENT_SECRET"].startswith("<redacted")
    assert secret not in json.dumps(printed) + err
    # the (stopped) sandbox's file is not replaced unless asked
    again = _sandbox("serve", "--settings-file", str(path))
    assert again.returncode == 2
    assert again.stderr == (
        f"python -m sandbox serve: error: --settings-file {path}: the file exists; pass "
        "--overwrite to replace it\n"
    )


def test_serve_by_default_writes_into_a_folder_git_ignores() -> None:
    printed, err = _serve_until_settings()
    path = Path(str(printed["settings_file"]))
    assert path == ROOT / ".sandbox" / "local.settings.json"
    assert (ROOT / ".sandbox" / ".gitignore").read_text() == "*\n"
    shell = path.with_suffix(".env")
    assert f"and {shell} (for a shell)" in err
    for written in (path, shell):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    if (ROOT / ".git").exists():  # a clone (not an unpacked archive): git ignores both
        ignored = subprocess.run(
            ["git", "check-ignore", str(path), str(shell)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert ignored.stdout.split() == [str(path), str(shell)], ignored.stderr
    assert f"DAEMON_TENANT_ID={HOME_TENANT}\n" in shell.read_text()


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = _sandbox("--port", port, "exec", "--auth-mode", "client-secret", "--", "true")
    assert result.returncode == 1
    assert result.stderr.startswith("python -m sandbox: error: cannot start the sandbox: ")
    assert result.stderr.count("\n") == 1
