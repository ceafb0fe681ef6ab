"""The auth package's error translation (chained to the SDK's error, never to key material),
the code sets the doctor reads from it, and its lazy package face. Pure: no sandbox."""

from __future__ import annotations

import ast
import importlib
import traceback
from pathlib import Path

import pytest
from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError

import shared.auth
from shared.auth import codes
from shared.auth.credentials import _request
from shared.auth.keyvault import _kv_call, _parse_private_key
from shared.doctor import fix_for
from shared.errors import CertificateError, KeyVaultNotFoundError, TokenRequestError

TENANT = "11111111-1111-1111-1111-111111111111"


def test_a_refused_token_request_is_chained_to_the_sdk_error() -> None:
    sdk = ClientAuthenticationError(
        message="AADSTS7000215: Invalid client secret provided. Trace ID: t-1 Correlation ID: c-1"
    )

    def refuse() -> AccessTokenInfo:
        raise sdk

    with pytest.raises(TokenRequestError) as caught:
        _request(TENANT, "a client secret", refuse)
    assert caught.value.codes == (7000215,)
    assert caught.value.__cause__ is sdk
    assert "Correlation ID: c-1" in "".join(traceback.format_exception(caught.value))


def test_a_key_vault_error_is_chained_to_the_sdk_error() -> None:
    sdk = ResourceNotFoundError(message="Certificate not found: daemon-cert")

    def missing() -> object:
        raise sdk

    with pytest.raises(KeyVaultNotFoundError) as caught:
        _kv_call("certificate 'daemon-cert'", "certificate", missing)
    assert caught.value.__cause__ is sdk


def test_an_unreadable_private_key_is_not_chained() -> None:
    key_material = "bm90IGEgcGZ4"  # base64, but not a PFX
    with pytest.raises(CertificateError) as caught:
        _parse_private_key(key_material, "application/x-pkcs12", "certificate 'c' version 1")
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert key_material not in "".join(traceback.format_exception(caught.value))


def test_rotation_codes_include_every_refused_certificate_code() -> None:
    assert codes.CERTIFICATE_NOT_ACCEPTED_CODES < codes.ROTATION_CODES
    assert not codes.NO_RELOAD_CODES & codes.ROTATION_CODES
    assert codes.aadsts_codes("AADSTS700027: x; AADSTS700027 again, AADSTS50049") == (
        700027,
        50049,
    )


@pytest.mark.parametrize(
    ("code_set", "fragment"),
    [
        (codes.APP_NOT_IN_TENANT_CODES, "DAEMON_CLIENT_ID and DAEMON_TENANT_ID"),
        (codes.TENANT_NOT_FOUND_CODES, "the tenant does not exist"),
        (codes.BAD_CLIENT_SECRET_CODES, "client secret is wrong or expired"),
        (codes.CERTIFICATE_NOT_ACCEPTED_CODES, "upload the Key Vault certificate"),
        (codes.FEDERATION_MISMATCH_CODES, "federated credential"),
        (codes.UNKNOWN_AUTHORITY_CODES, "DAEMON_AUTHORITY_HOST"),
        (codes.UNKNOWN_RESOURCE_CODES, "DAEMON_API_SCOPE"),
    ],
)
def test_doctor_reads_each_code_set_from_the_auth_package(
    code_set: frozenset[int], fragment: str
) -> None:
    for code in code_set:
        assert fragment in fix_for(TokenRequestError(f"AADSTS{code}", (code,)), None)


def test_an_unknown_code_gets_the_generic_fix() -> None:
    fix = fix_for(TokenRequestError("AADSTS1", (1,)), None)
    assert fix == "see the error above; run with --verbose for the SDK's log"


def test_the_package_face_resolves_every_name_lazily() -> None:
    tree = ast.parse(Path(shared.auth.__file__).read_text(encoding="utf-8"))
    eager = [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module not in ("__future__", "shared.lazy")
    ]
    assert not eager, "shared.auth must import its submodules on first use only"
    for name in shared.auth.__all__:
        module = importlib.import_module(f"shared.auth.{shared.auth._WHERE[name]}")
        assert getattr(shared.auth, name) is getattr(module, name)
    with pytest.raises(AttributeError):
        shared.auth.no_such_name  # noqa: B018
