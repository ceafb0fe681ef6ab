"""README's configuration table, local.settings.sample.json and the settings table agree.

All three checks derive from ``shared.settings.SETTINGS``: the names, and each default."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.settings import SETTINGS, load_settings

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}


def _readme_rows() -> dict[str, str]:
    """README's configuration table: setting name -> its Default column."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|.*\| ([^|]*) \|$", section, flags=re.MULTILINE)
    assert len(rows) == len(dict(rows)), "a setting is listed twice"
    return dict(rows)


def _sample() -> dict[str, str]:
    values: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return values


def test_readme_table_lists_exactly_the_settings_read() -> None:
    assert set(_readme_rows()) == set(SETTINGS)


def test_readme_table_shows_each_default() -> None:
    rows = _readme_rows()
    for setting in SETTINGS.values():
        if setting.default is not None:
            assert f"`{setting.default}`" in rows[setting.name], setting.name


def test_sample_lists_exactly_the_settings_read() -> None:
    values = _sample()
    assert set(values) - PLATFORM == set(SETTINGS)
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"


def test_sample_shows_each_default() -> None:
    values = _sample()
    for setting in SETTINGS.values():
        if setting.default is not None:
            assert values[setting.name] == setting.default, setting.name


def test_code_reads_only_documented_settings() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "shared").rglob("*.py"))
    read = set(re.findall(r'"(DAEMON_[A-Z0-9_]+)"', source))
    assert read == set(SETTINGS)


def test_sample_parses() -> None:
    values = _sample()
    settings = load_settings(values)
    assert settings.auth_mode.value == values["DAEMON_AUTH_MODE"]


def test_local_settings_is_not_tracked() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "local.settings.json" in ignored
    funcignore = (ROOT / ".funcignore").read_text().splitlines()
    for folder in ("tests", "sandbox", "benchmarks", "infra", "docs", ".venv"):
        assert folder in funcignore
