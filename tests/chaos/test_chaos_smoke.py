"""The fast subset of ``python -m benchmarks.chaos``: a few dozen operations through the jobs
queue on Azurite to the sandbox, two worker processes, one of them SIGKILLed while messages
are in flight, one short Graph outage, 5xx and resets after the write was applied, a token
revocation, a sweep, and messages that can never succeed. Counts, not timings: nothing may be
lost or duplicated and no valid message may end in poison."""

from __future__ import annotations

from pathlib import Path

from benchmarks.chaos import ChaosConfig, run_chaos
from sandbox.azurite import DEV_ACCOUNT_KEY, Azurite
from sandbox.server import Sandbox
from tests.conftest import register_secret_source


def register(sandbox: Sandbox, azurite: Azurite) -> None:
    register_secret_source(sandbox.state.secret_values)
    register_secret_source(sandbox.graph.directory.secret_values)
    register_secret_source(lambda: [DEV_ACCOUNT_KEY, azurite.connection_string])


def test_chaos_smoke_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    cfg = ChaosConfig.smoke()
    result = run_chaos(cfg, workdir=tmp_path, on_start=register)
    data = result.data
    details = data["details"]
    assert data["settled"], f"the queue did not drain: {data['timeline'][-3:]}"
    assert data["worker_kills"] == 1
    assert data["operations"] >= 40
    assert data["lost"] == 0, details["lost"]
    assert data["duplicated"] == 0, details["duplicated"]
    assert data["valid_messages_poisoned"] == 0, details["valid_poisoned"]
    # only the message that is not base64 is poisoned, by the host, without running the job.
    # Moving a message to poison is a copy then a delete, as in the real host
    # (https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages):
    # a worker killed between the two leaves the message to be poisoned again by the other,
    # so the one kill may add one copy, never more
    poisoned = [p["message"] for p in details["invalid_poisoned"]]
    assert set(poisoned) == {"not-base64"}
    assert len(poisoned) <= 1 + data["worker_kills"]
    assert data["unexpected_changes"] == 0, details["unexpected"]
