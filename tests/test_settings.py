"""Settings: parsed once from a mapping; every bad value names its setting."""

from __future__ import annotations

import dataclasses

import pytest

from shared.errors import SettingError
from shared.settings import SETTINGS, AuthMode, Settings, SigningMode, load_settings

TENANT = "11111111-1111-1111-1111-111111111111"
CLIENT = "22222222-2222-2222-2222-222222222222"


def base(**overrides: str) -> dict[str, str]:
    env = {
        "DAEMON_AUTH_MODE": "keyvault-certificate",
        "DAEMON_TENANT_ID": TENANT,
        "DAEMON_CLIENT_ID": CLIENT,
        "DAEMON_KEY_VAULT_URL": "https://myvault.vault.azure.net/",
        "DAEMON_CERTIFICATE_NAME": "daemon-cert",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v != "<unset>"}


def test_defaults_and_derived_values() -> None:
    s = load_settings(base())
    assert s.auth_mode is AuthMode.KEYVAULT_CERTIFICATE
    assert s.signing_mode is SigningMode.EXPORT
    assert s.key_vault_url == "https://myvault.vault.azure.net"
    assert s.api_base_url == "https://graph.microsoft.com/v1.0"
    assert s.api_scope == "https://graph.microsoft.com/.default"
    assert s.api_resource == "https://graph.microsoft.com"
    assert s.authority_host == "https://login.microsoftonline.com"
    assert s.allowed_tenants == (TENANT,)
    assert s.key_vault_verify_challenge_resource is True
    assert s.instance_discovery is True
    assert s.federation_audience == "api://AzureADTokenExchange"


def test_signing_mode_follows_auth_mode() -> None:
    assert load_settings(base(DAEMON_AUTH_MODE="keyvault-signing")).signing_mode is (
        SigningMode.IN_KEY_VAULT
    )
    mi = load_settings(base(DAEMON_AUTH_MODE="managed-identity", DAEMON_CLIENT_ID="<unset>"))
    assert mi.signing_mode is None
    assert mi.client_id is None


def test_allowed_tenants_dedupes_and_keeps_home_first() -> None:
    other = "33333333-3333-3333-3333-333333333333"
    s = load_settings(base(DAEMON_ALLOWED_TENANTS=f" {other.upper()}, contoso.com ,{TENANT},"))
    assert s.allowed_tenants == (TENANT, other, "contoso.com")


def test_national_cloud_authority() -> None:
    s = load_settings(base(DAEMON_AUTHORITY_HOST="https://login.microsoftonline.us"))
    assert s.instance_discovery is True
    assert s.federation_audience == "api://AzureADTokenExchangeUSGov"
    custom = load_settings(base(DAEMON_AUTHORITY_HOST="https://127.0.0.1:8443"))
    assert custom.instance_discovery is False


def test_client_secret_is_kept_only_in_its_mode_and_never_shown() -> None:
    secret = "s3cr3t-value-do-not-show"
    s = load_settings(base(DAEMON_AUTH_MODE="client-secret", DAEMON_CLIENT_SECRET=secret))
    assert s.client_secret == secret
    assert secret not in repr(s)
    assert secret not in str(s)
    other = load_settings(base(DAEMON_CLIENT_SECRET=secret))
    assert other.client_secret is None


@pytest.mark.parametrize(
    ("overrides", "setting", "fragment"),
    [
        ({"DAEMON_AUTH_MODE": "<unset>"}, "DAEMON_AUTH_MODE", "is required"),
        ({"DAEMON_AUTH_MODE": "password"}, "DAEMON_AUTH_MODE", "expected one of"),
        ({"DAEMON_TENANT_ID": "<unset>"}, "DAEMON_TENANT_ID", "is required"),
        ({"DAEMON_TENANT_ID": "not a tenant"}, "DAEMON_TENANT_ID", "GUID or a verified domain"),
        ({"DAEMON_CLIENT_ID": "<unset>"}, "DAEMON_CLIENT_ID", "keyvault-certificate"),
        ({"DAEMON_CLIENT_ID": "abc"}, "DAEMON_CLIENT_ID", "is not a GUID"),
        ({"DAEMON_ALLOWED_TENANTS": "x y"}, "DAEMON_ALLOWED_TENANTS", "GUID or a verified"),
        ({"DAEMON_KEY_VAULT_URL": "<unset>"}, "DAEMON_KEY_VAULT_URL", "is required"),
        ({"DAEMON_KEY_VAULT_URL": "http://v.vault.azure.net"}, "DAEMON_KEY_VAULT_URL", "https"),
        ({"DAEMON_CERTIFICATE_NAME": "<unset>"}, "DAEMON_CERTIFICATE_NAME", "is required"),
        ({"DAEMON_CERTIFICATE_NAME": "bad_name!"}, "DAEMON_CERTIFICATE_NAME", "object name"),
        ({"DAEMON_MANAGED_IDENTITY_CLIENT_ID": "mi"}, "DAEMON_MANAGED_IDENTITY_CLIENT_ID", "GUID"),
        (
            {"DAEMON_API_BASE_URL": "http://graph.microsoft.com/v1.0"},
            "DAEMON_API_BASE_URL",
            "https",
        ),
        ({"DAEMON_API_BASE_URL": "https://"}, "DAEMON_API_BASE_URL", "no host"),
        ({"DAEMON_API_BASE_URL": "https://g.example/v1.0?x=1"}, "DAEMON_API_BASE_URL", "query"),
        ({"DAEMON_API_SCOPE": "User.Read.All"}, "DAEMON_API_SCOPE", "not a static scope"),
        (
            {"DAEMON_API_SCOPE": "https://graph.microsoft.com/User.Read.All"},
            "DAEMON_API_SCOPE",
            "/.default",
        ),
        (
            {"DAEMON_API_SCOPE": "https://graph.microsoft.com/.default offline_access"},
            "DAEMON_API_SCOPE",
            "exactly one static scope",
        ),
        ({"DAEMON_API_SCOPE": "/.default"}, "DAEMON_API_SCOPE", "names no resource"),
        ({"DAEMON_AUTHORITY_HOST": "http://login.example"}, "DAEMON_AUTHORITY_HOST", "https"),
        (
            {"DAEMON_AUTHORITY_HOST": "https://login.microsoftonline.com/contoso"},
            "DAEMON_AUTHORITY_HOST",
            "host only",
        ),
        (
            {"DAEMON_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE": "maybe"},
            "DAEMON_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE",
            "expected true or false",
        ),
        ({"DAEMON_SEND_X5C": "2"}, "DAEMON_SEND_X5C", "boolean"),
        (
            {"DAEMON_CERTIFICATE_CHECK_SECONDS": "soon"},
            "DAEMON_CERTIFICATE_CHECK_SECONDS",
            "number",
        ),
        (
            {"DAEMON_CERTIFICATE_CHECK_SECONDS": "0"},
            "DAEMON_CERTIFICATE_CHECK_SECONDS",
            "greater than 0",
        ),
        (
            {"DAEMON_AUTH_MODE": "client-secret", "DAEMON_CLIENT_SECRET": "  "},
            "DAEMON_CLIENT_SECRET",
            "Key Vault reference",
        ),
        (
            {
                "DAEMON_AUTH_MODE": "managed-identity",
                "DAEMON_ALLOWED_TENANTS": "33333333-3333-3333-3333-333333333333",
            },
            "DAEMON_ALLOWED_TENANTS",
            "own tenant",
        ),
    ],
)
def test_bad_settings_name_the_setting(
    overrides: dict[str, str], setting: str, fragment: str
) -> None:
    with pytest.raises(SettingError) as caught:
        load_settings(base(**overrides))
    assert caught.value.setting == setting
    assert str(caught.value).startswith(f"app setting {setting}:")
    assert fragment in str(caught.value)


def test_a_malformed_secret_setting_is_not_echoed() -> None:
    secret = "pa55word-that-must-not-leak"
    with pytest.raises(SettingError) as caught:
        load_settings(
            base(
                DAEMON_AUTH_MODE="client-secret",
                DAEMON_CLIENT_ID="<unset>",
                DAEMON_CLIENT_SECRET=secret,
            )
        )
    assert secret not in str(caught.value)


def test_job_settings() -> None:
    s = load_settings(
        base(
            DAEMON_JOBS_QUEUE="hr-jobs",
            DAEMON_SWEEP_SCHEDULE="0 0 * * * *",
            DAEMON_USER_DOMAIN="Contoso.com",
            DAEMON_MAX_CHANGES_PER_RUN="50",
            DAEMON_SWEEP_CHUNK_SIZE="10",
            DAEMON_OPERATIONS_ALLOWED_METHODS="get, patch,POST",
            DAEMON_OPERATIONS_ALLOWED_PATHS="/users/",
            DAEMON_API_WRITES_PER_SECOND="5.5",
            DAEMON_API_RESOURCE_UNITS_PER_SECOND="800",
        )
    )
    assert s.jobs_queue == "hr-jobs"
    assert s.sweep_schedule == "0 0 * * * *"
    assert s.user_domain == "contoso.com"
    assert s.max_changes_per_run == 50
    assert s.sweep_chunk_size == 10
    assert s.operations_allowed_methods == ("GET", "PATCH", "POST")
    assert s.operations_allowed_paths == ("/users/",)
    assert s.api_writes_per_second == 5.5
    assert s.api_resource_units_per_second == 800
    defaults = load_settings(base())
    assert defaults.jobs_queue == "daemon-jobs"
    assert defaults.user_domain is None


@pytest.mark.parametrize(
    ("setting", "value", "fragment"),
    [
        ("DAEMON_JOBS_QUEUE", "Jobs_Queue", "storage queue name"),
        ("DAEMON_JOBS_QUEUE", "a--b", "storage queue name"),
        ("DAEMON_SWEEP_SCHEDULE", "*/5 * * *", "has 4 fields"),
        ("DAEMON_SWEEP_SCHEDULE", "0 61 * * * *", "minute field"),
        ("DAEMON_SWEEP_SCHEDULE", "0 0 0 31 Feb *", "never fires"),
        ("DAEMON_SWEEP_SCHEDULE", "0 */0 * * * *", "step"),
        ("DAEMON_SWEEP_SCHEDULE", "0 ² * * * *", "not a number"),
        ("DAEMON_SWEEP_SCHEDULE", "00:15:00", "TimeSpan"),
        ("DAEMON_MAX_CHANGES_PER_RUN", "²", "whole number"),
        ("DAEMON_MAX_CHANGES_PER_RUN", "9" * 5000, "whole number"),
        ("DAEMON_USER_DOMAIN", "not a domain", "not a domain"),
        ("DAEMON_MAX_CHANGES_PER_RUN", "0", "whole number"),
        ("DAEMON_SWEEP_CHUNK_SIZE", "lots", "whole number"),
        ("DAEMON_OPERATIONS_ALLOWED_METHODS", "GET,TRACE", "'TRACE'"),
        ("DAEMON_OPERATIONS_ALLOWED_PATHS", "users/", "relative path prefix"),
        ("DAEMON_OPERATIONS_ALLOWED_PATHS", "/users/../", "relative path prefix"),
        ("DAEMON_API_WRITES_PER_SECOND", "-1", "greater than 0"),
    ],
)
def test_bad_job_settings(setting: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingError) as caught:
        load_settings(base(**{setting: value}))
    assert caught.value.setting == setting
    assert fragment in str(caught.value)


def test_api_http2_and_priority() -> None:
    s = load_settings(base(DAEMON_API_HTTP2="true", DAEMON_API_THROTTLE_PRIORITY="low"))
    assert s.api_http2 is True
    assert s.api_throttle_priority == "Low"
    assert load_settings(base()).api_throttle_priority is None
    with pytest.raises(SettingError, match="DAEMON_API_THROTTLE_PRIORITY") as caught:
        load_settings(base(DAEMON_API_THROTTLE_PRIORITY="urgent"))
    assert "Low, Normal, High" in str(caught.value)


def test_five_field_ncrontab_is_accepted_as_the_host_does() -> None:
    assert load_settings(base(DAEMON_SWEEP_SCHEDULE="*/5 * * * *")).sweep_schedule == (
        "*/5 * * * *"
    )


@pytest.mark.parametrize(
    "setting",
    [
        "DAEMON_API_WRITES_PER_SECOND",
        "DAEMON_API_RESOURCE_UNITS_PER_SECOND",
        "DAEMON_CERTIFICATE_CHECK_SECONDS",
    ],
)
@pytest.mark.parametrize("value", ["inf", "Infinity", "-inf", "nan", "NaN", "1e999"])
def test_non_finite_numbers_are_refused_at_parse(setting: str, value: str) -> None:
    with pytest.raises(SettingError) as caught:
        load_settings(base(**{setting: value}))
    assert caught.value.setting == setting
    assert str(caught.value).startswith(f"app setting {setting}:")
    assert "finite" in str(caught.value) or "greater than 0" in str(caught.value)


def test_implausibly_large_numbers_are_refused() -> None:
    with pytest.raises(SettingError, match=r"DAEMON_API_WRITES_PER_SECOND.*at most 100000"):
        load_settings(base(DAEMON_API_WRITES_PER_SECOND="1e300"))


PASSWORD = "Hunter2-secret-pw"  # a test value that must never be echoed


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("DAEMON_KEY_VAULT_URL", f"https://admin:{PASSWORD}@myvault.vault.azure.net"),
        ("DAEMON_KEY_VAULT_URL", f"http://admin:{PASSWORD}@myvault.vault.azure.net"),
        ("DAEMON_KEY_VAULT_URL", f"admin:{PASSWORD}@myvault.vault.azure.net"),
        ("DAEMON_KEY_VAULT_URL", f"https://{PASSWORD}@myvault.vault.azure.net/"),
        ("DAEMON_API_BASE_URL", f"https://u:{PASSWORD}@graph.microsoft.com/v1.0"),
        ("DAEMON_AUTHORITY_HOST", f"https://u:{PASSWORD}@login.microsoftonline.com"),
        ("DAEMON_API_SCOPE", f"https://u:{PASSWORD}@graph.microsoft.com/.default"),
    ],
)
def test_urls_with_credentials_are_refused_and_never_echoed(setting: str, value: str) -> None:
    with pytest.raises(SettingError) as caught:
        load_settings(base(**{setting: value}))
    assert caught.value.setting == setting
    assert "must not carry credentials" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert "admin" not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


def test_a_query_is_refused_without_showing_it() -> None:
    with pytest.raises(SettingError) as caught:
        load_settings(base(DAEMON_KEY_VAULT_URL=f"https://v.vault.azure.net/?sig={PASSWORD}"))
    assert "query" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_malformed_url_is_a_setting_error() -> None:
    with pytest.raises(SettingError, match=r"DAEMON_API_BASE_URL.*not a URL"):
        load_settings(base(DAEMON_API_BASE_URL="https://[::1/v1.0"))
    with pytest.raises(SettingError, match=r"DAEMON_KEY_VAULT_URL.*not a URL"):
        load_settings(base(DAEMON_KEY_VAULT_URL="https://v.vault.azure.net:port"))


def test_the_table_fills_every_attribute_exactly_once() -> None:
    attributes = [setting.attribute for setting in SETTINGS.values()]
    assert sorted(attributes) == sorted(f.name for f in dataclasses.fields(Settings))


def test_an_unset_setting_takes_its_default_from_the_table() -> None:
    settings = load_settings(base())
    blank = load_settings(base(**{name: "  " for name in ("DAEMON_SEND_X5C", "DAEMON_API_SCOPE")}))
    for setting in SETTINGS.values():
        if setting.default is not None:
            expected = setting.parse(setting.name, setting.default)
            assert getattr(settings, setting.attribute) == expected, setting.name
            assert getattr(blank, setting.attribute) == expected, setting.name
    assert settings.certificate_check_seconds == 3600.0
    assert settings.operations_allowed_methods == ("GET", "PATCH")


def test_a_setting_the_mode_does_not_use_is_ignored_not_checked() -> None:
    mi = load_settings(
        base(
            DAEMON_AUTH_MODE="managed-identity",
            DAEMON_CLIENT_ID="<unset>",
            DAEMON_KEY_VAULT_URL="<unset>",
            DAEMON_CERTIFICATE_NAME="bad_name!",
        )
    )
    assert mi.certificate_name is None
    assert mi.key_vault_url is None


def test_a_setting_a_mode_does_not_require_is_still_checked_when_set() -> None:
    with pytest.raises(SettingError) as caught:
        load_settings(
            base(DAEMON_AUTH_MODE="managed-identity", DAEMON_KEY_VAULT_URL="http://v.example")
        )
    assert caught.value.setting == "DAEMON_KEY_VAULT_URL"


def test_the_first_bad_setting_in_table_order_is_named() -> None:
    with pytest.raises(SettingError) as caught:
        load_settings(base(DAEMON_KEY_VAULT_URL="<unset>", DAEMON_API_BASE_URL="http://x"))
    assert caught.value.setting == "DAEMON_KEY_VAULT_URL"
