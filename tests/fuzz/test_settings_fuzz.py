"""Fuzzing the app settings: any value of any setting either parses or raises SettingError
(a ConfigurationError) naming that setting; nothing else escapes ``load_settings``, and what
parses is usable (finite, positive numbers; https URLs)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shared.errors import ConfigurationError, SettingError
from shared.settings import SETTINGS, Settings, load_settings
from tests.fuzz.strategies import FAST, text_values

TENANT = "11111111-2222-3333-4444-555555555555"
BASE: dict[str, str] = {
    "DAEMON_AUTH_MODE": "keyvault-certificate",
    "DAEMON_TENANT_ID": TENANT,
    "DAEMON_CLIENT_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "DAEMON_ALLOWED_TENANTS": "22222222-3333-4444-5555-666666666666",
    "DAEMON_KEY_VAULT_URL": "https://vault.vault.azure.net",
    "DAEMON_CERTIFICATE_NAME": "daemon-cert",
    "DAEMON_JOBS_QUEUE": "daemon-jobs",
    "DAEMON_SWEEP_SCHEDULE": "0 */15 * * * *",
    "DAEMON_USER_DOMAIN": "contoso.example",
}
NAMES = tuple(SETTINGS)  # every setting in the table
NUMBERS = st.sampled_from(
    ["0", "-1", "1e999", "inf", "-inf", "nan", "NaN", "1_000", "0x10", "٣", "1e-320", "9" * 400]
)
setting_values = st.one_of(text_values, NUMBERS, st.just(""))


def load(env: dict[str, str]) -> Settings | None:
    """The settings, or None after checking that the refusal names the setting."""
    error: ConfigurationError
    try:
        return load_settings(env)
    except ConfigurationError as exc:  # SettingError is one
        error = exc
    assert str(error)
    if isinstance(error, SettingError):
        assert error.setting.startswith(("DAEMON_", "AzureWebJobsStorage")), error.setting
        assert str(error).startswith(f"app setting {error.setting}: ")
    return None


def check_usable(settings: Settings) -> None:
    for name, value in vars(settings).items():
        if isinstance(value, float):
            assert math.isfinite(value), f"{name} = {value!r}"
        if isinstance(value, int | float) and not isinstance(value, bool) and "seconds" in name:
            assert value > 0, f"{name} = {value!r}"


@FAST
@given(name=st.sampled_from(NAMES), value=setting_values)
@example(name="DAEMON_API_WRITES_PER_SECOND", value="inf")
@example(name="DAEMON_API_RESOURCE_UNITS_PER_SECOND", value="nan")
@example(name="DAEMON_MAX_CHANGES_PER_RUN", value="9" * 400)
@example(name="DAEMON_CERTIFICATE_CHECK_SECONDS", value="1e999")
def test_one_bad_setting_raises_a_setting_error(name: str, value: str) -> None:
    settings = load({**BASE, name: value})
    if settings is not None:
        check_usable(settings)


@FAST
@given(
    removed=st.sets(st.sampled_from(sorted(BASE)), max_size=3),
    mode=st.sampled_from(
        [
            "managed-identity",
            "keyvault-certificate",
            "keyvault-signing",
            "federated-managed-identity",
            "client-secret",
            "KEYVAULT-CERTIFICATE",
            "",
        ]
    ),
)
def test_missing_settings_in_every_mode(removed: set[str], mode: str) -> None:
    env = {k: v for k, v in BASE.items() if k not in removed}
    env["DAEMON_AUTH_MODE"] = mode
    settings = load(env)
    if settings is not None:
        check_usable(settings)


@FAST
@given(env=st.dictionaries(st.sampled_from(NAMES), setting_values, max_size=8))
def test_arbitrary_mappings(env: dict[str, Any]) -> None:
    settings = load(env)
    if settings is not None:
        check_usable(settings)


@pytest.mark.parametrize(
    "name", ["DAEMON_KEY_VAULT_URL", "DAEMON_API_BASE_URL", "DAEMON_AUTHORITY_HOST"]
)
def test_a_url_with_credentials_is_refused_and_not_echoed(name: str) -> None:
    password = "Pa55word-Never-Echo-7f3a"
    value = f"https://admin:{password}@vault.vault.azure.net"
    with pytest.raises(SettingError) as caught:
        load_settings({**BASE, name: value})
    assert caught.value.setting == name
    assert password not in str(caught.value)
