"""The server itself: lifecycle, TLS files, admin API, settings and the command line."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from sandbox.seed import AUTH_MODES, SETTING_NAMES, Seed, seed_default, settings_for
from sandbox.server import Sandbox

ROOT = Path(__file__).resolve().parents[2]


def test_two_sandboxes_run_side_by_side_and_stop_cleanly() -> None:
    with Sandbox() as first, Sandbox() as second:
        assert first.url != second.url
        assert first.url.startswith("https://127.0.0.1:")
        assert first.alt_url == first.url.replace("127.0.0.1", "localhost")
        ca_path = Path(first.ca_path)
        assert ca_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        for url in (first.url, first.alt_url):
            with httpx.Client(verify=first.client_ssl_context()) as http:
                assert http.get(f"{url}/_sandbox/stats").status_code == 200
        key_dir = Path(first.tls_key_dir)
        assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
        assert not any(key_dir.iterdir())  # the key was loaded and removed at once
        # The other sandbox's CA does not vouch for this one.
        with (
            httpx.Client(verify=second.client_ssl_context()) as http,
            pytest.raises(httpx.ConnectError),
        ):
            http.get(f"{first.url}/_sandbox/stats")
    assert not ca_path.exists()
    assert not key_dir.exists()
    assert not first.running
    assert not second.running
    with pytest.raises(RuntimeError, match="not started"):
        _ = first.url


def test_extra_routes_are_served() -> None:
    async def me(request: Request) -> Response:
        return JSONResponse({"id": "me"})

    with (
        Sandbox(extra_routes=[Mount("/extra", routes=[Route("/me", me)])]) as sandbox,
        httpx.Client(verify=sandbox.client_ssl_context()) as http,
    ):
        assert http.get(f"{sandbox.url}/extra/me").json() == {"id": "me"}
        # the Graph-like API is always mounted at /v1.0 and wants a token
        assert http.get(f"{sandbox.url}/v1.0/users").status_code == 401


def test_admin_api(fresh: tuple[Sandbox, Seed]) -> None:
    sandbox, seed = fresh
    with httpx.Client(verify=sandbox.client_ssl_context()) as http:
        token = http.post(
            f"{sandbox.url}/{seed.home_tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": seed.client_id,
                "client_secret": seed.client_secret,
                "scope": "https://vault.azure.net/.default",
            },
        ).json()["access_token"]
        sandbox.state.grant_vault_role(seed.client_id, "Key Vault Certificate User")
        params = {"api-version": "7.6"}
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{sandbox.url}/certificates/daemon-cert"
        assert http.get(url, params=params, headers=headers).status_code == 200
        stats = http.get(f"{sandbox.url}/_sandbox/stats").json()["counters"]
        assert stats["tokens_issued"] == 1
        assert stats["kv.requests.get_certificate"] == 1
        rotated = http.post(f"{sandbox.url}/_sandbox/certificates/daemon-cert/rotate").json()
        latest = http.get(url, params=params, headers=headers).json()
        assert latest["id"].endswith(rotated["version"])
        assert http.post(f"{sandbox.url}/_sandbox/revoke-tokens").json() == {"revoked": True}
        revoked = http.get(url, params=params, headers=headers)
        assert revoked.status_code == 401
        assert 'error="insufficient_claims"' in revoked.headers["www-authenticate"]
        assert http.post(f"{sandbox.url}/_sandbox/certificates/nope/rotate").status_code == 404


def test_settings_for_every_mode(sandbox: Sandbox, seed: Seed) -> None:
    for mode in AUTH_MODES:
        settings = settings_for(seed, sandbox, mode)
        daemon = {k for k in settings if k.startswith("DAEMON_")}
        assert daemon <= set(SETTING_NAMES)
        assert settings["DAEMON_AUTH_MODE"] == mode
        assert settings["DAEMON_ALLOWED_TENANTS"] == (
            seed.home_tenant_id
            if mode == "managed-identity"
            else f"{seed.home_tenant_id},{seed.second_tenant_id}"
        )
        assert settings["DAEMON_API_BASE_URL"] == f"{sandbox.url}/v1.0"
        assert settings["DAEMON_KEY_VAULT_VERIFY_CHALLENGE_RESOURCE"] == "false"
        assert settings["REQUESTS_CA_BUNDLE"] == settings["SSL_CERT_FILE"] == sandbox.ca_path
        assert settings["IDENTITY_ENDPOINT"] == f"{sandbox.url}/msi/token"
        assert ("DAEMON_CLIENT_ID" in settings) == (mode != "managed-identity")
        assert ("DAEMON_CLIENT_SECRET" in settings) == (mode == "client-secret")
    assert settings_for(seed, sandbox, "keyvault-signing")["DAEMON_CERTIFICATE_NAME"] == (
        "daemon-signing-cert"
    )
    assert settings_for(seed, sandbox, "keyvault-certificate")["DAEMON_CERTIFICATE_NAME"] == (
        "daemon-cert"
    )
    assert settings_for(seed, sandbox, "managed-identity", user_assigned_identity=True)[
        "DAEMON_MANAGED_IDENTITY_CLIENT_ID"
    ] == (seed.user_identity_client_id)
    with pytest.raises(ValueError, match="unknown auth mode"):
        settings_for(seed, sandbox, "password")


def test_seed_is_reproducible_in_shape() -> None:
    with Sandbox() as sandbox:
        seed = seed_default(sandbox)
        state = sandbox.state
        assert state.service_principal(seed.unconsented_tenant_id, seed.client_id) is None
        assert state.service_principal(seed.second_tenant_id, seed.client_id) is not None
        app = state.find_app(seed.client_id)
        assert app is not None
        assert app.multi_tenant
        assert len(app.keys) == 4  # two certificates, each under x5t and x5t#S256


def test_secret_values_are_tracked(sandbox: Sandbox, seed: Seed) -> None:
    values = sandbox.state.secret_values()
    assert seed.client_secret in values
    assert sandbox.identity_header in values
    assert any("PRIVATE KEY" in value for value in values)


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_cli_exec_runs_the_command_with_the_settings() -> None:
    script = (
        "import os, sys, json;"
        "print(json.dumps({k: os.environ.get(k) for k in "
        "('DAEMON_AUTH_MODE', 'DAEMON_CLIENT_SECRET', 'IDENTITY_ENDPOINT')}));"
        "sys.exit(7)"
    )
    result = _run_cli("exec", "--auth-mode", "client-secret", "--", sys.executable, "-c", script)
    assert result.returncode == 7, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["DAEMON_AUTH_MODE"] == "client-secret"
    assert seen["DAEMON_CLIENT_SECRET"]
    assert seen["IDENTITY_ENDPOINT"].startswith("https://127.0.0.1:")


def test_cli_serve_prints_settings_without_secrets_and_stops_on_sigint() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while True:
            line = process.stdout.readline()
            assert line, "the sandbox exited before printing its settings"
            lines.append(line)
            if line.rstrip() == "}":
                break
        printed = json.loads("".join(lines))
        assert set(printed["settings"]) == set(AUTH_MODES)
        secret_mode = printed["settings"]["client-secret"]
        assert secret_mode["DAEMON_CLIENT_SECRET"].startswith("<redacted")
        assert secret_mode["IDENTITY_HEADER"].startswith("<redacted")
        assert os.path.exists(printed["ca_path"])
        trust = ssl.create_default_context(cafile=printed["ca_path"])
        with httpx.Client(verify=trust) as http:
            assert http.get(f"{printed['url']}/_sandbox/stats").status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert not os.path.exists(printed["ca_path"])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()
