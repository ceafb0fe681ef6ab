"""doctor and consent-url: what the README promises, end to end against the sandbox."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME, Azurite
from shared.doctor import Report, run_doctor
from shared.errors import KeyVaultError, TokenRequestError
from tests.auth.conftest import Env
from tests.storage.conftest import start_azurite

ROOT = Path(__file__).resolve().parents[2]
JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}")


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    yield from start_azurite()


def app_settings(azurite: Azurite) -> dict[str, str]:
    """What the function app needs besides the auth settings: storage, queue, timer, domain."""
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "DAEMON_JOBS_QUEUE": "daemon-jobs",
        "DAEMON_SWEEP_SCHEDULE": "0 */15 * * * *",
        "DAEMON_USER_DOMAIN": "contoso.example",
    }


def failed(report: Report) -> dict[str, str]:
    return {check.name: check.detail for check in report.checks if not check.ok}


@pytest.mark.parametrize(
    "mode",
    [
        "managed-identity",
        "keyvault-certificate",
        "keyvault-signing",
        "federated-managed-identity",
        "client-secret",
    ],
)
def test_doctor_json_is_ok_in_every_mode(mode: str, azurite: Azurite) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DAEMON_")},
        **app_settings(azurite),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "exec",
            "--auth-mode",
            mode,
            "--",
            sys.executable,
            "-m",
            "shared",
            "doctor",
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is True
    names = [check["name"] for check in report["checks"]]
    assert names[:2] == ["settings", "storage"]
    assert any(name.startswith("token for tenant") for name in names)
    if mode.startswith("keyvault"):
        assert "certificate" in names
    for check in report["checks"]:
        if check["name"].startswith("token"):
            assert "User.ReadWrite.All" in check["data"]["roles"]
    if mode == "client-secret":
        assert any("client-secret" in w for c in report["checks"] for w in c["warnings"])
    assert not JWT.search(result.stdout + result.stderr)


async def test_doctor_names_bad_setting_and_fix() -> None:
    report = await run_doctor({"DAEMON_AUTH_MODE": "keyvault-certificate"})
    assert not report.ok
    check = report.checks[0]
    assert check.name == "settings"
    assert "DAEMON_TENANT_ID" in check.detail
    assert check.fix is not None
    assert "DAEMON_TENANT_ID" in check.fix


async def test_doctor_fails_for_unconsented_tenant_with_consent_url(
    env: Env, azurite: Azurite
) -> None:
    tenant = env.seed.unconsented_tenant_id
    settings = env.settings(
        "federated-managed-identity", DAEMON_ALLOWED_TENANTS=tenant, **app_settings(azurite)
    )
    report = await run_doctor(settings)
    assert not report.ok
    failed = [c for c in report.checks if not c.ok]
    assert [c.name for c in failed] == [f"token for tenant {tenant}"]
    assert failed[0].fix is not None
    assert f"{tenant}/adminconsent?client_id={env.seed.client_id}" in failed[0].fix
    rendered = report.render()
    assert "FAIL" in rendered
    assert not JWT.search(rendered + json.dumps(report.as_dict()))


async def test_doctor_reports_key_vault_denial_with_the_role(fresh_env: Env) -> None:
    fresh_env.state.revoke_vault_role(fresh_env.seed.system_identity_object_id)
    report = await run_doctor(fresh_env.settings("keyvault-signing"))
    certificate = next(c for c in report.checks if c.name == "certificate")
    assert not certificate.ok
    assert "Key Vault Certificate User" in certificate.detail
    assert certificate.fix is not None
    assert "role" in certificate.fix


def test_consent_url() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DAEMON_")},
        "DAEMON_AUTH_MODE": "federated-managed-identity",
        "DAEMON_TENANT_ID": "contoso.com",
        "DAEMON_CLIENT_ID": "22222222-2222-2222-2222-222222222222",
    }
    result = subprocess.run(
        [sys.executable, "-m", "shared", "consent-url", "--tenant", "Fabrikam.com"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "https://login.microsoftonline.com/fabrikam.com/adminconsent"
        "?client_id=22222222-2222-2222-2222-222222222222"
    )
    bad = subprocess.run(
        [sys.executable, "-m", "shared", "consent-url", "--tenant", "not a tenant"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "--tenant" in bad.stderr


@pytest.mark.parametrize(
    "unset", ["DAEMON_JOBS_QUEUE", "DAEMON_SWEEP_SCHEDULE", "DAEMON_USER_DOMAIN"]
)
async def test_doctor_fails_when_a_setting_the_app_needs_is_unset(
    env: Env, azurite: Azurite, unset: str
) -> None:
    settings = env.settings("managed-identity", **app_settings(azurite))
    del settings[unset]
    report = await run_doctor(settings)
    assert not report.ok
    assert list(failed(report)) == ["settings"]
    assert f"{unset} is not set" in report.checks[0].detail
    assert report.checks[0].fix is not None
    assert unset in report.checks[0].fix
    assert "doctor: some checks failed" in report.render()


@pytest.mark.parametrize(
    ("setting", "value", "fragment"),
    [
        ("DAEMON_API_WRITES_PER_SECOND", "inf", "not a finite number"),
        ("DAEMON_API_RESOURCE_UNITS_PER_SECOND", "nan", "not a finite number"),
        ("DAEMON_CERTIFICATE_CHECK_SECONDS", "1e999", "not a finite number"),
        ("DAEMON_SWEEP_SCHEDULE", "0 0 0 31 Feb *", "never fires"),
        ("DAEMON_SWEEP_SCHEDULE", "*/5 * * *", "has 4 fields"),
    ],
)
async def test_doctor_fails_on_values_the_app_would_choke_on(
    env: Env, azurite: Azurite, setting: str, value: str, fragment: str
) -> None:
    settings = env.settings("managed-identity", **app_settings(azurite))
    settings[setting] = value
    report = await run_doctor(settings)
    assert not report.ok
    assert report.checks[0].name == "settings"
    assert report.checks[0].detail.startswith(f"app setting {setting}:")
    assert fragment in report.checks[0].detail


async def test_doctor_fails_without_storage_connection(env: Env, azurite: Azurite) -> None:
    settings = env.settings("managed-identity", **app_settings(azurite))
    del settings["AzureWebJobsStorage"]
    report = await run_doctor(settings)
    assert list(failed(report)) == ["storage"]
    storage = next(c for c in report.checks if c.name == "storage")
    assert "AzureWebJobsStorage" in storage.detail
    assert storage.fix is not None
    assert "AzureWebJobsStorage__accountName" in storage.fix


async def test_doctor_accepts_identity_based_storage_form_but_checks_it_answers(
    env: Env, azurite: Azurite
) -> None:
    """The identity-based form counts as set; whether it answers is the reachability part."""
    settings = env.settings("managed-identity", **app_settings(azurite))
    del settings["AzureWebJobsStorage"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings["AzureWebJobsStorage__queueServiceUri"] = f"https://127.0.0.1:{port}/q"
    settings["AzureWebJobsStorage__tableServiceUri"] = f"https://127.0.0.1:{port}/t"
    settings["AzureWebJobsStorage__credential"] = "managedidentity"
    report = await run_doctor(settings, storage_timeout=2.0)
    storage = next(c for c in report.checks if c.name == "storage")
    assert not storage.ok
    assert "is required" not in storage.detail
    assert f"https://127.0.0.1:{port}/q" in storage.detail


async def test_doctor_fails_fast_when_storage_does_not_answer(env: Env, azurite: Azurite) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = env.settings("managed-identity", **app_settings(azurite))
    settings["AzureWebJobsStorage"] = (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT_NAME};AccountKey="
        f"{DEV_ACCOUNT_KEY};QueueEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT_NAME};"
        f"TableEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT_NAME}"
    )
    report = await run_doctor(settings, storage_timeout=2.0)
    assert list(failed(report)) == ["storage"]
    detail = failed(report)["storage"]
    assert "the queue service" in detail
    assert "did not answer within 2 s" in detail
    assert DEV_ACCOUNT_KEY not in json.dumps(report.as_dict())


async def test_doctor_names_each_missing_permission_and_the_consent_step(
    fresh_env: Env, azurite: Azurite
) -> None:
    seed = fresh_env.seed
    fresh_env.state.revoke_consent(seed.home_tenant_id, seed.client_id, ["User.RevokeSessions.All"])
    settings = fresh_env.settings(
        "client-secret", DAEMON_ALLOWED_TENANTS=seed.home_tenant_id, **app_settings(azurite)
    )
    report = await run_doctor(settings)
    assert not report.ok
    token = next(c for c in report.checks if c.name.startswith("token for tenant"))
    assert not token.ok
    assert "missing application permission(s): User.RevokeSessions.All" in token.detail
    assert token.data["missing_permissions"] == ["User.RevokeSessions.All"]
    assert token.fix is not None
    assert "grant admin consent" in token.fix
    assert f"{seed.home_tenant_id}/adminconsent?client_id={seed.client_id}" in token.fix
    assert not JWT.search(report.render() + json.dumps(report.as_dict()))


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (
            TokenRequestError("AADSTS70021: no matching federated identity record", (70021,)),
            "federated credential",
        ),
        (
            TokenRequestError("AADSTS50049: unknown or invalid instance", (50049,)),
            "DAEMON_AUTHORITY_HOST",
        ),
        (
            KeyVaultError("Key Vault: certificate 'c': HTTP 401 AKV10032: Invalid issuer"),
            "another tenant",
        ),
    ],
)
def test_fixes_name_the_cause(error: Exception, fix: str) -> None:
    from shared.doctor import fix_for

    assert fix in fix_for(error, None)
