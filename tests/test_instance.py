"""Where the per-instance objects find the app's host.json: given by the host, never guessed
from the package's own location."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.instance import app_host_json


def test_host_json_is_in_the_script_root_the_host_names(tmp_path: Path) -> None:
    assert app_host_json({"AzureWebJobsScriptRoot": str(tmp_path)}) == tmp_path / "host.json"


def test_without_a_script_root_it_is_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert app_host_json({}) == tmp_path / "host.json"
    assert app_host_json({"AzureWebJobsScriptRoot": "  "}) == tmp_path / "host.json"
