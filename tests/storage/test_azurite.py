"""The Azurite runner: its own ports, a usable connection string, a clear error if missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.storage.queue import QueueServiceClient

from sandbox.azurite import Azurite
from shared.errors import AzuriteError


def test_runs_on_its_own_ports(azurite: Azurite) -> None:
    ports = {azurite.blob_port, azurite.queue_port, azurite.table_port}
    assert len(ports) == 3
    assert not ports & {10000, 10001, 10002}
    assert azurite.running
    assert "AccountKey" not in repr(azurite)
    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    assert service.get_service_properties() is not None
    service.close()


def test_missing_node_modules_says_to_run_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(AzuriteError, match=r"Run `npm ci`"):
        Azurite(root=tmp_path).start()


def test_endpoints_need_a_started_instance(tmp_path: Path) -> None:
    with pytest.raises(AzuriteError, match="not running"):
        _ = Azurite(root=tmp_path).connection_string
