"""Key Vault: a disabled latest certificate version is returned, marked disabled; only its
secret is refused.

GET certificate answers 200 with ``attributes.enabled=false``; GET secret answers 403
``Forbidden`` with inner error ``SecretDisabled`` (Key Vault's answer for a disabled secret,
learn.microsoft.com/azure/key-vault/general/rest-error-codes: 403 "Forbidden").
"""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.certificates import CertificateClient
from azure.keyvault.secrets import SecretClient

from sandbox.seed import CERTIFICATE_NAME

from .conftest import Strict


def clients(strict: Strict) -> tuple[CertificateClient, SecretClient]:
    credential = ManagedIdentityCredential()
    url = strict.sandbox.url
    return (
        CertificateClient(url, credential, verify_challenge_resource=False),
        SecretClient(url, credential, verify_challenge_resource=False),
    )


def test_an_enabled_version_and_its_secret_are_returned(sdk_env: Strict) -> None:
    certificates, secrets = clients(sdk_env)
    certificate = certificates.get_certificate(CERTIFICATE_NAME)
    assert certificate.properties is not None
    assert certificate.properties.enabled is True
    assert secrets.get_secret(CERTIFICATE_NAME).value


def test_a_disabled_latest_version_is_200_and_its_secret_403(sdk_env: Strict) -> None:
    state = sdk_env.sandbox.state
    latest = state.certificate_version(CERTIFICATE_NAME)
    assert latest is not None
    state.disable_certificate_version(CERTIFICATE_NAME, latest.version)
    certificates, secrets = clients(sdk_env)

    certificate = certificates.get_certificate(CERTIFICATE_NAME)
    assert certificate.properties is not None
    assert certificate.properties.version == latest.version
    assert certificate.properties.enabled is False
    assert certificate.cer  # the public part is still there

    with pytest.raises(HttpResponseError) as refused:
        secrets.get_secret(CERTIFICATE_NAME)
    assert refused.value.status_code == 403
    assert refused.value.error is not None
    assert refused.value.error.code == "Forbidden"
    assert refused.value.error.innererror == {"code": "SecretDisabled"}
