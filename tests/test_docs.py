"""README's configuration table, local.settings.sample.json and the settings class agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.settings import SETTINGS, load_settings

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}


def _readme_table() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.MULTILINE)


def test_readme_table_lists_exactly_the_settings_read() -> None:
    names = _readme_table()
    assert len(names) == len(set(names))
    assert set(names) == set(SETTINGS)


def test_sample_lists_exactly_the_settings_read() -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert set(values) - PLATFORM == set(SETTINGS)
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"


def test_code_reads_only_documented_settings() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "shared").rglob("*.py"))
    read = set(re.findall(r'"(DAEMON_[A-Z0-9_]+)"', source))
    assert read == set(SETTINGS)


def test_sample_parses() -> None:
    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    settings = load_settings(values)
    assert settings.auth_mode.value == values["DAEMON_AUTH_MODE"]


def test_local_settings_is_not_tracked() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "local.settings.json" in ignored
    funcignore = (ROOT / ".funcignore").read_text().splitlines()
    for folder in ("tests", "sandbox", "benchmarks", "infra", "docs", ".venv"):
        assert folder in funcignore
