"""SandboxState: one facade over the directory, identities, vault and ledger components."""

from __future__ import annotations

import pytest

from sandbox.state import (
    CERTIFICATE_USER,
    GRAPH_RESOURCE,
    KEY_VAULT_RESOURCE,
    SandboxState,
)
from tests.clock import FakeClock

READ_CERTIFICATE = "Microsoft.KeyVault/vaults/certificates/read"


@pytest.fixture
def state() -> SandboxState:
    return SandboxState(FakeClock(1_000_000.0))


def test_the_flat_api_is_the_components_own(state: SandboxState) -> None:
    assert state.add_app == state.directory.add_app
    assert state.consent == state.identities.consent
    assert state.rotate_certificate == state.vault.rotate_certificate
    assert state.counters == state.ledger.counters
    assert state.apps is state.directory.apps
    assert state.managed_identities is state.identities.managed_identities
    assert state.certificates is state.vault.certificates


def test_the_vault_trusts_the_first_tenant_unless_told_otherwise(state: SandboxState) -> None:
    assert state.vault_tenant_id is None
    first = state.add_tenant("Contoso")
    second = state.add_tenant("Fabrikam")
    assert state.vault_tenant_id == first.tenant_id
    state.vault_tenant_id = second.tenant_id
    assert state.vault.tenant_id == second.tenant_id


def test_deleting_a_service_principal_drops_its_consent(state: SandboxState) -> None:
    tenant = state.add_tenant("Contoso")
    app = state.add_app("daemon", tenant.tenant_id)
    state.consent(tenant.tenant_id, app.client_id, ["User.Read.All"])
    graph = state.find_resource(GRAPH_RESOURCE)
    assert graph is not None
    assert state.consented_roles(tenant.tenant_id, app.client_id, graph) == ["User.Read.All"]
    state.delete_service_principal(tenant.tenant_id, app.client_id)
    assert state.service_principal(tenant.tenant_id, app.client_id) is None
    assert state.consented_roles(tenant.tenant_id, app.client_id, graph) == []


def test_consent_for_an_identity_of_another_tenant_is_refused(state: SandboxState) -> None:
    home = state.add_tenant("Contoso")
    other = state.add_tenant("Fabrikam")
    mi = state.add_managed_identity(home.tenant_id, system_assigned=True)
    with pytest.raises(ValueError, match="does not live in tenant"):
        state.consent(other.tenant_id, mi.client_id, [], resource=KEY_VAULT_RESOURCE)
    with pytest.raises(ValueError, match="already a system-assigned"):
        state.add_managed_identity(home.tenant_id, system_assigned=True)


def test_vault_roles_resolve_client_ids_to_object_ids(state: SandboxState) -> None:
    tenant = state.add_tenant("Contoso")
    app = state.add_app("daemon", tenant.tenant_id)
    mi = state.add_managed_identity(tenant.tenant_id, system_assigned=False)
    state.grant_vault_role(app.client_id, CERTIFICATE_USER)
    state.grant_vault_role(mi.client_id, CERTIFICATE_USER)
    sp = state.service_principal(tenant.tenant_id, app.client_id)
    assert sp is not None
    assert state.vault_allows(sp.object_id, READ_CERTIFICATE)
    assert state.vault_allows(mi.object_id, READ_CERTIFICATE)
    state.revoke_vault_role(mi.client_id)
    assert not state.vault_allows(mi.object_id, READ_CERTIFICATE)
    with pytest.raises(ValueError, match="unknown vault roles"):
        state.grant_vault_role(app.client_id, "Owner")


def test_secrets_handed_out_are_remembered(state: SandboxState) -> None:
    tenant = state.add_tenant("Contoso")
    app = state.add_app("daemon", tenant.tenant_id)
    secret = state.add_client_secret(app.client_id)
    plain = state.set_vault_secret("api-key", "s3cr3t-value")
    assert {secret, plain.value, state.identity_header} <= state.secret_values()
    assert state.vault_secret_version("api-key") == plain
    assert state.vault_secret_version("api-key", plain.version.upper()) == plain
    assert state.vault_secret_version("api-key", "0" * 32) is None


def test_replayed_assertion_ids_and_injected_failures(state: SandboxState) -> None:
    assert state.remember_jti("app", "jti-1", 1_000_600.0)
    assert not state.remember_jti("app", "jti-1", 1_000_600.0)
    assert state.remember_jti("other-app", "jti-1", 1_000_600.0)
    state.fail_next_token_requests(2, 90006)
    failures = [state.take_injected_failure() for _ in range(3)]
    assert [f.error_code if f else None for f in failures] == [90006, 90006, None]
