"""doctor and consent-url: what the README promises, end to end against the sandbox."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.doctor import run_doctor
from tests.auth.conftest import Env

ROOT = Path(__file__).resolve().parents[2]
JWT = re.compile(r"eyJ[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}")


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
def test_doctor_json_is_ok_in_every_mode(mode: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAEMON_")}
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
    assert names[0] == "settings"
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


async def test_doctor_fails_for_unconsented_tenant_with_consent_url(env: Env) -> None:
    tenant = env.seed.unconsented_tenant_id
    settings = env.settings("federated-managed-identity", DAEMON_ALLOWED_TENANTS=tenant)
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


async def test_doctor_warns_when_binding_settings_are_missing(env: Env) -> None:
    settings = env.settings("managed-identity")
    report = await run_doctor(settings)
    warnings = report.checks[0].warnings
    assert any("DAEMON_JOBS_QUEUE is not set" in w for w in warnings)
    assert any("DAEMON_SWEEP_SCHEDULE is not set" in w for w in warnings)
    settings.update(DAEMON_JOBS_QUEUE="jobs", DAEMON_SWEEP_SCHEDULE="0 */5 * * * *")
    report = await run_doctor(settings)
    assert not any("is not set" in w for w in report.checks[0].warnings)
