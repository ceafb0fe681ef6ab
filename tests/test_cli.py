"""The command lines (``python -m shared``, ``python -m shared.host``): exit statuses, one
logging setup, one-line errors, and ``requeue-poison`` — against a real Azurite (and the
sandbox for the sweep), in process so the counts can be read."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from sandbox.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, Azurite
from shared import cli
from shared.host import __main__ as host_cli
from shared.instance import reset_current_instance
from tests.host import app as test_app
from tests.sandbox_env import Env, running_sandbox

ROOT = Path(__file__).resolve().parents[1]
TENANT = "11111111-1111-1111-1111-111111111111"


# azurite and restore_logging: tests/cli_fixtures.py (a plugin of tests/conftest.py)
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def queue() -> str:
    return f"jobs-{uuid.uuid4().hex[:12]}"


def _clear_daemon_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("DAEMON_", "AzureWebJobsStorage", "TEST_")):
            monkeypatch.delenv(name)


def _settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    _clear_daemon_env(monkeypatch)
    base = {"DAEMON_AUTH_MODE": "managed-identity", "DAEMON_TENANT_ID": TENANT}
    for name, value in {**base, **values}.items():
        monkeypatch.setenv(name, value)
    reset_current_instance()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unreachable_storage() -> str:
    port = _closed_port()
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT_NAME};AccountKey="
        f"{DEV_ACCOUNT_KEY};QueueEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT_NAME};"
        f"TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT_NAME}"
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _job(correlation_id: str) -> str:
    return json.dumps(
        {
            "version": 1,
            "job": "provision",
            "tenant": TENANT,
            "correlationId": correlation_id,
            "payload": {"leavers": [{"employeeId": "E1"}]},
        }
    )


def _drain_all(client: QueueClient) -> list[str]:
    texts: list[str] = []
    while True:
        page = list(next(client.receive_messages(max_messages=32).by_page(), []))
        if not page:
            return texts
        for message in page:
            texts.append(str(message.content))
            client.delete_message(message)


# -- one-line errors -----------------------------------------------------------------------


def test_enqueue_missing_payload_file_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _settings(monkeypatch)
    missing = tmp_path / "missing.json"
    assert cli.main(["enqueue", "--job", "provision", "--payload", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --payload {missing}: no such file\n"


def test_enqueue_payload_that_is_not_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _settings(monkeypatch)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli.main(["enqueue", "--job", "provision", "--payload", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --payload ({bad}) is not JSON:")
    assert err.count("\n") == 1


def test_enqueue_with_storage_unreachable_fails_fast_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _settings(monkeypatch, AzureWebJobsStorage=_unreachable_storage(), DAEMON_JOBS_QUEUE="jobs")
    payload = tmp_path / "people.json"
    payload.write_text(json.dumps({"leavers": [{"employeeId": "E1"}]}))
    assert cli.main(["enqueue", "--job", "provision", "--payload", str(payload)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: storage unreachable: AzureWebJobsStorage: the queue service")
    assert "did not answer" in err
    assert err.count("\n") == 1
    assert DEV_ACCOUNT_KEY not in err


def test_bad_setting_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _settings(monkeypatch, DAEMON_API_WRITES_PER_SECOND="inf")
    assert cli.main(["consent-url", "--tenant", "contoso.com"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: app setting DAEMON_API_WRITES_PER_SECOND:")
    assert "finite" in err


def test_host_with_storage_unreachable_fails_fast(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _settings(
        monkeypatch,
        AzureWebJobsStorage=_unreachable_storage(),
        DAEMON_JOBS_QUEUE="jobs",
        DAEMON_SWEEP_SCHEDULE="0 */15 * * * *",
    )
    assert cli.main(["drain"]) == 1
    err = capsys.readouterr().err
    assert "error: storage unreachable: AzureWebJobsStorage: the queue service" in err


# -- drain: exit status ----------------------------------------------------------------------


def test_drain_exits_0_when_idle_and_1_when_a_message_was_poisoned(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    azurite: Azurite,
    queue: str,
) -> None:
    _settings(
        monkeypatch,
        AzureWebJobsStorage=azurite.connection_string,
        DAEMON_JOBS_QUEUE=queue,
        DAEMON_SWEEP_SCHEDULE="0 */15 * * * *",
    )
    assert cli.main(["drain"]) == 0
    assert "poisoned 0" in capsys.readouterr().out
    # Not base64: the host poisons it at once, without running the function.
    client = QueueClient.from_connection_string(azurite.connection_string, queue)
    client.create_queue()
    client.send_message("not base64 {")
    assert cli.main(["drain"]) == 1
    captured = capsys.readouterr()
    assert "poisoned 1" in captured.out
    assert "drain: 1 message(s) poisoned" in captured.err


@pytest.fixture
def test_app_env(
    monkeypatch: pytest.MonkeyPatch, azurite: Azurite, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Path]]:
    suffix = uuid.uuid4().hex[:12]
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "TEST_QUEUE": f"work-{suffix}",
        "TEST_OUT_QUEUE": f"out-{suffix}",
        "TEST_SCHEDULE": "0 0 0 1 1 *",
    }
    _clear_daemon_env(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    host_json = tmp_path / "host.json"
    # one delivery, no visibility back-off: a failure is counted and poisoned at once
    host_json.write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {"queues": {"maxDequeueCount": 1, "visibilityTimeout": "00:00:00"}},
            }
        )
    )
    test_app.recorder.reset()
    yield env, host_json
    test_app.recorder.reset()


def test_host_drain_exits_1_when_a_function_failed(
    test_app_env: tuple[dict[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env, host_json = test_app_env
    client = QueueClient.from_connection_string(env["AzureWebJobsStorage"], env["TEST_QUEUE"])
    client.create_queue()
    client.send_message(_b64(json.dumps({"n": 1})))
    argv = ["--app", "tests.host.app:app", "--host-json", str(host_json), "drain"]
    assert host_cli.main(argv) == 0
    client.send_message(_b64(json.dumps({"fail": True})))
    assert host_cli.main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "invocations 1, succeeded 0, failed 1, poisoned 1"


def test_host_run_timer_exits_1_when_the_timer_raises(
    test_app_env: tuple[dict[str, str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, host_json = test_app_env
    argv = ["--app", "tests.host.app:app", "--host-json", str(host_json), "run-timer", "plan"]
    test_app.recorder.fan_out = ["a"]
    assert host_cli.main(argv) == 0
    test_app.recorder.fail_timer = True
    assert host_cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "Timer function plan failed: RuntimeError: planning failed" in captured.err
    assert "Traceback" not in captured.err


# -- requeue-poison ------------------------------------------------------------------------


def test_requeue_poison_moves_bodies_back_unchanged(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    azurite: Azurite,
    queue: str,
) -> None:
    _settings(monkeypatch, AzureWebJobsStorage=azurite.connection_string, DAEMON_JOBS_QUEUE=queue)
    poison = QueueClient.from_connection_string(azurite.connection_string, f"{queue}-poison")
    poison.create_queue()
    bodies = [_b64(_job(f"hr-{n}")) for n in range(5)]
    for body in bodies:
        poison.send_message(body)
    poison.send_message("plain text, not base64 {")  # a producer bug: stays in poison

    assert cli.main(["requeue-poison", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would move 5 message(s) from {queue}-poison to {queue}" in out
    assert "left 1 that are not base64" in out
    assert "correlation ids: hr-0, hr-1, hr-2, hr-3, hr-4" in out
    assert poison.get_queue_properties().approximate_message_count == 6

    assert cli.main(["requeue-poison", "--max", "2"]) == 0
    assert f"moved 2 message(s) from {queue}-poison to {queue}" in capsys.readouterr().out
    assert cli.main(["requeue-poison", "--queue", queue]) == 0
    out = capsys.readouterr().out
    assert f"moved 3 message(s) from {queue}-poison to {queue}" in out
    assert "left 1 that are not base64" in out

    target = QueueClient.from_connection_string(azurite.connection_string, queue)
    moved = _drain_all(target)
    assert sorted(moved) == sorted(bodies)  # the stored base64 text, byte for byte
    ids = sorted(json.loads(base64.b64decode(m))["correlationId"] for m in moved)
    assert ids == [f"hr-{n}" for n in range(5)]
    assert poison.get_queue_properties().approximate_message_count == 1


def test_requeue_poison_bad_inputs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _settings(monkeypatch)
    assert cli.main(["requeue-poison"]) == 2
    assert "pass --queue or set DAEMON_JOBS_QUEUE" in capsys.readouterr().err
    assert cli.main(["requeue-poison", "--queue", "Bad_Queue"]) == 2
    assert "--queue 'Bad_Queue' is not a storage queue name" in capsys.readouterr().err
    assert cli.main(["requeue-poison", "--queue", "jobs", "--max", "0"]) == 2
    assert "--max 0" in capsys.readouterr().err


# -- the real app: sweep exit status, summary lines at INFO ---------------------------------


def test_run_timer_exit_status_follows_every_tenants_sweep(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    azurite: Azurite,
    queue: str,
) -> None:
    with running_sandbox() as (sandbox, seed):
        env = Env(sandbox, seed, monkeypatch)
        settings = env.settings(
            "keyvault-certificate",
            AzureWebJobsStorage=azurite.connection_string,
            DAEMON_JOBS_QUEUE=queue,
            DAEMON_SWEEP_SCHEDULE="0 */15 * * * *",
            DAEMON_USER_DOMAIN="contoso.example",
            DAEMON_ALLOWED_TENANTS=seed.home_tenant_id,
        )
        _clear_daemon_env(monkeypatch)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        reset_current_instance()
        try:
            assert cli.main(["run-timer"]) == 0, capsys.readouterr().err
            capsys.readouterr()
            # one tenant that never consented: its sweep fails, the others' still run
            monkeypatch.setenv("DAEMON_ALLOWED_TENANTS", seed.unconsented_tenant_id)
            reset_current_instance()
            assert cli.main(["run-timer"]) == 1
            err = capsys.readouterr().err
            assert seed.unconsented_tenant_id in err
            # the timer raises for a failed tenant, or logs the failure and goes on: either
            # way the run fails
            assert (
                "Timer function sweep_timer failed" in err
                or "Timer function sweep_timer logged 1 error(s)" in err
            )
            assert "Traceback" not in err
        finally:
            reset_current_instance()


def test_serve_and_drain_log_the_job_summary_line_at_info(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    azurite: Azurite,
    queue: str,
    tmp_path: Path,
) -> None:
    with running_sandbox() as (sandbox, seed):
        env = Env(sandbox, seed, monkeypatch)
        settings = env.settings(
            "keyvault-certificate",
            AzureWebJobsStorage=azurite.connection_string,
            DAEMON_JOBS_QUEUE=queue,
            DAEMON_SWEEP_SCHEDULE="0 */15 * * * *",
            DAEMON_USER_DOMAIN="contoso.example",
        )
        _clear_daemon_env(monkeypatch)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        reset_current_instance()
        payload = tmp_path / "people.json"
        payload.write_text(json.dumps({"leavers": [{"employeeId": "NOBODY-1"}]}))
        try:
            argv = ["enqueue", "--job", "provision", "--payload", str(payload)]
            assert cli.main([*argv, "--correlation-id", "cli-summary-1"]) == 0
            assert "as cli-summary-1" in capsys.readouterr().out
            # the project's host.json without its 30 s visibility back-off: counts, not timings
            options = json.loads((ROOT / "host.json").read_text())
            options["extensions"]["queues"]["visibilityTimeout"] = "00:00:00"
            host_json = tmp_path / "host.json"
            host_json.write_text(json.dumps(options))
            host_cli.main(["--host-json", str(host_json), "drain"])
            err = capsys.readouterr().err
            summary = [line for line in err.splitlines() if "correlation cli-summary-1:" in line]
            assert len(summary) == 1, err
            # INFO for a clean run, WARNING when a person failed (as here): shown either way
            assert " INFO " in summary[0] or " WARNING " in summary[0]
            # the run context (tenant, correlation id) on the line
            assert f"[provision {seed.home_tenant_id} cli-summary-1] " in summary[0]
        finally:
            reset_current_instance()


# -- status ----------------------------------------------------------------------------------


def test_status_exit_status_follows_attention(
    azurite: Azurite,
    queue: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _settings(monkeypatch, AzureWebJobsStorage=azurite.connection_string, DAEMON_JOBS_QUEUE=queue)
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"queue {queue}: 0 message(s)" in out
    assert "nothing needs attention" in out

    poison = QueueClient.from_connection_string(azurite.connection_string, queue + "-poison")
    poison.create_queue()
    poison.send_message(_b64(_job("corr-status")))
    poison.close()
    assert cli.main(["status", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["poison"]["length"] == 1
    assert any("requeue-poison" in item for item in report["attention"])
    assert cli.main(["status", "--runs", "0"]) == 2
