"""``python -m shared enqueue``: it sends to the queue on ``AzureWebJobsStorage`` like every
other command (so a sequence of commands shares one Azurite), base64 as the host expects;
it refuses ``--azurite`` and bad input in one line, sending nothing. Real Azurite, in
process so the queue can be read."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from sandbox.azurite import Azurite
from shared import cli
from shared.instance import reset_current_instance

HOME = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"
STRANGER = "33333333-3333-3333-3333-333333333333"


# azurite and restore_logging: tests/cli_fixtures.py (a plugin of tests/conftest.py)
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch, azurite: Azurite) -> Iterator[QueueClient]:
    """The settings of a multi-tenant daemon on Azurite, scoped to the test; its queue."""
    import os

    for name in list(os.environ):
        if name.startswith(("DAEMON_", "AzureWebJobsStorage")):
            monkeypatch.delenv(name)
    name = f"jobs-{uuid.uuid4().hex[:12]}"
    for key, value in {
        "DAEMON_AUTH_MODE": "federated-managed-identity",
        "DAEMON_CLIENT_ID": "44444444-4444-4444-4444-444444444444",
        "DAEMON_TENANT_ID": HOME,
        "DAEMON_ALLOWED_TENANTS": f"{HOME},{OTHER}",
        "DAEMON_JOBS_QUEUE": name,
        "DAEMON_SWEEP_SCHEDULE": "0 */15 * * * *",
        "DAEMON_USER_DOMAIN": "contoso.example",
        "AzureWebJobsStorage": azurite.connection_string,
    }.items():
        monkeypatch.setenv(key, value)
    reset_current_instance()
    client = QueueClient.from_connection_string(azurite.connection_string, name)
    try:
        yield client
    finally:
        client.close()


def _sent(client: QueueClient) -> list[dict[str, object]]:
    try:
        messages = client.peek_messages(max_messages=32)
    except Exception:  # the queue was never created: nothing was sent
        return []
    return [json.loads(base64.b64decode(str(m.content))) for m in messages]


def _payload(tmp_path: Path, payload: object) -> str:
    path = tmp_path / "people.json"
    path.write_text(json.dumps(payload))
    return str(path)


JOINER = {"employeeId": "E1", "givenName": "Ada", "surname": "Lovelace", "department": "R&D"}


def test_enqueue_sends_base64_to_the_queue_on_azurewebjobsstorage(
    queue: QueueClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = _payload(tmp_path, {"joiners": [JOINER], "leavers": [{"employeeId": "E9"}]})
    argv = ["enqueue", "--job", "provision", "--payload", payload, "--correlation-id", "c-1"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == f"enqueued provision for tenant {HOME} as c-1\n"
    argv = ["enqueue", "--job", "provision", "--payload", payload, "--tenant", OTHER]
    assert cli.main([*argv, "--dry-run"]) == 0
    first, second = _sent(queue)
    assert first["job"] == "provision"
    assert first["tenant"] == HOME
    assert first["correlationId"] == "c-1"
    assert first["payload"] == {"joiners": [JOINER], "leavers": [{"employeeId": "E9"}]}
    assert first.get("dryRun", False) is False
    assert second["tenant"] == OTHER
    assert second["dryRun"] is True


def test_enqueue_refuses_azurite_in_one_line_and_sends_nothing(
    queue: QueueClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = _payload(tmp_path, {"joiners": [JOINER]})
    assert cli.main(["enqueue", "--azurite", "--job", "provision", "--payload", payload]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: enqueue --azurite: an Azurite started for this command alone")
    assert "python -m sandbox exec --auth-mode M --azurite -- sh -c" in err
    assert err.count("\n") == 1
    assert _sent(queue) == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"joiners": "Ada"}, "payload 'joiners' must be a list of people; nothing sent"),
        ({"hires": []}, "unknown payload fields: 'hires'; nothing sent"),
        (
            {"joiners": [{"employeeId": "E2"}], "leavers": [{}]},
            "2 problem(s), nothing sent: joiner E2: 'givenName' or 'surname' is required; "
            "leaver #1: 'employeeId' None must be",
        ),
    ],
)
def test_enqueue_refuses_a_payload_the_worker_could_never_apply(
    queue: QueueClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    payload: object,
    expected: str,
) -> None:
    path = _payload(tmp_path, payload)
    assert cli.main(["enqueue", "--job", "provision", "--payload", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --payload ({path}): {expected}")
    assert err.count("\n") == 1
    assert _sent(queue) == []


def test_enqueue_refuses_a_tenant_outside_the_allow_list(
    queue: QueueClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _payload(tmp_path, {"leavers": [{"employeeId": "E1"}]})
    argv = ["enqueue", "--job", "provision", "--payload", path, "--tenant", STRANGER]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: tenant {STRANGER} is not in DAEMON_ALLOWED_TENANTS: a queue message cannot "
        "pick a tenant the app is not configured for\n"
    )
    assert _sent(queue) == []


def test_enqueue_without_a_jobs_queue_names_the_setting(
    queue: QueueClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAEMON_JOBS_QUEUE")
    path = _payload(tmp_path, {"leavers": [{"employeeId": "E1"}]})
    assert cli.main(["enqueue", "--job", "provision", "--payload", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: app setting DAEMON_JOBS_QUEUE: is not set")
    assert err.count("\n") == 1
