"""The infrastructure code (infra/*.bicep) agrees with the code: the app settings it wires are
exactly the settings the daemon reads, storage and telemetry use no keys, and every module
parameter is passed. (checkov checks the security rules in CI: `make infra-check`.)"""

from __future__ import annotations

import re
from pathlib import Path

from shared.settings import SETTINGS

INFRA = Path(__file__).resolve().parents[1] / "infra"
RESOURCES = (INFRA / "resources.bicep").read_text(encoding="utf-8")
MAIN = (INFRA / "main.bicep").read_text(encoding="utf-8")


def _object_keys(source: str, variable: str) -> list[str]:
    match = re.search(rf"^var {variable} = \{{\n(.*?)^\}}", source, re.M | re.S)
    assert match, f"var {variable} not found"
    return re.findall(r"^  (\w+):", match.group(1), re.M)


def _params(source: str) -> set[str]:
    return set(re.findall(r"^param (\w+) ", source, re.M))


def test_bicep_wires_exactly_the_settings_the_code_reads() -> None:
    wired = _object_keys(RESOURCES, "daemonSettings")
    assert len(wired) == len(set(wired))
    assert set(wired) == set(SETTINGS)


def test_bicep_literal_settings_parse() -> None:
    """A value the Bicep writes literally ('...') is one the setting's parser accepts."""
    match = re.search(r"^var daemonSettings = \{\n(.*?)^\}", RESOURCES, re.M | re.S)
    assert match
    literals = dict(re.findall(r"^  (\w+): '([^']*)'$", match.group(1), re.M))
    assert literals, "no literal values found"
    for name, value in literals.items():
        setting = SETTINGS[name]
        assert setting.parse(name, value) is not None, name


def test_storage_connection_is_identity_based_and_keyless() -> None:
    platform = set(_object_keys(RESOURCES, "platformSettings"))
    assert {
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__tableServiceUri",
    } <= platform
    assert "AzureWebJobsStorage" not in platform  # no connection string, no account key
    assert "allowSharedKeyAccess: false" in RESOURCES
    assert "DisableLocalAuth: true" in RESOURCES
    assert "enableRbacAuthorization: true" in RESOURCES
    assert "listKeys" not in RESOURCES


def test_main_passes_every_module_parameter() -> None:
    block = re.search(
        r"module resources 'resources.bicep' = \{.*?params: \{\n(.*?)^  \}", MAIN, re.M | re.S
    )
    assert block
    passed = set(re.findall(r"^    (\w+):", block.group(1), re.M))
    assert passed == _params(RESOURCES)


def test_python_version_is_pinned_to_a_supported_one() -> None:
    allowed = re.search(r"@allowed\(\[(.*?)\]\)\n@description\('Python", MAIN, re.S)
    assert allowed
    versions = set(re.findall(r"'(3\.\d+)'", allowed.group(1)))
    assert versions
    assert versions <= {"3.11", "3.12"}
    assert re.search(r"^param pythonVersion string = '3\.1[12]'", MAIN, re.M)


def test_vault_roles_are_the_least_for_each_mode() -> None:
    by_mode = re.search(r"var vaultRolesByMode = \{\n(.*?)^\}", RESOURCES, re.M | re.S)
    assert by_mode
    modes = dict(re.findall(r"'([\w-]+)': \[(.*?)\]", by_mode.group(1)))
    assert modes["keyvault-certificate"].strip() == "roles.keyVaultCertificateUser"
    assert "roles.keyVaultCryptoUser" in modes["keyvault-signing"]
    assert "Officer" not in "".join(modes.values())  # no write roles for the app
