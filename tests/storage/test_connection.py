"""storage_connection: the Functions conventions for AzureWebJobsStorage (no I/O)."""

from __future__ import annotations

import pytest
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from shared.errors import SettingError
from shared.storage import storage_connection

KEY = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWJlLWVjaG9lZA=="
SAS = "sv=2024-01-01&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"


def _error(env: dict[str, str], name: str = "AzureWebJobsStorage") -> SettingError:
    with pytest.raises(SettingError) as info:
        storage_connection(env, name)
    text = str(info.value)
    assert KEY not in text
    assert "c2VjcmV0" not in text
    return info.value


def test_account_key_connection_string_builds_every_endpoint() -> None:
    connection = storage_connection(
        {
            "AzureWebJobsStorage": f"DefaultEndpointsProtocol=https;AccountName=acct1;"
            f"AccountKey={KEY};EndpointSuffix=core.windows.net"
        }
    )
    assert connection.queue_endpoint == "https://acct1.queue.core.windows.net"
    assert connection.table_endpoint == "https://acct1.table.core.windows.net"
    assert connection.blob_endpoint == "https://acct1.blob.core.windows.net"
    assert isinstance(connection.credential, AzureNamedKeyCredential)
    assert not connection.identity_based
    assert KEY not in repr(connection)


def test_explicit_endpoints_and_sas() -> None:
    connection = storage_connection(
        {
            "MyStorage": f"QueueEndpoint=http://127.0.0.1:1234/acct;"
            f"TableEndpoint=http://127.0.0.1:1235/acct/;SharedAccessSignature=?{SAS}"
        },
        "MyStorage",
    )
    assert connection.queue_endpoint == "http://127.0.0.1:1234/acct"
    assert connection.table_endpoint == "http://127.0.0.1:1235/acct"
    assert connection.blob_endpoint is None
    assert isinstance(connection.credential, AzureSasCredential)
    with pytest.raises(SettingError, match="MyStorage: gives no blob endpoint"):
        connection._require("blob")


def test_use_development_storage_means_azurite_defaults() -> None:
    connection = storage_connection({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert connection.blob_endpoint == "http://127.0.0.1:10000/devstoreaccount1"
    assert connection.queue_endpoint == "http://127.0.0.1:10001/devstoreaccount1"
    assert connection.table_endpoint == "http://127.0.0.1:10002/devstoreaccount1"
    assert connection.account_name == "devstoreaccount1"


def test_identity_based_connection_with_user_assigned_identity() -> None:
    connection = storage_connection(
        {
            "AzureWebJobsStorage__accountName": "acct1",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        }
    )
    assert connection.identity_based
    assert connection.queue_endpoint == "https://acct1.queue.core.windows.net"
    assert isinstance(connection.credential, ManagedIdentityCredential)


def test_identity_based_service_uris_without_credential_use_default_credential() -> None:
    connection = storage_connection(
        {
            "AzureWebJobsStorage__queueServiceUri": "https://q.example.net/",
            "AzureWebJobsStorage__tableServiceUri": "https://t.example.net",
        }
    )
    assert connection.queue_endpoint == "https://q.example.net"
    assert connection.table_endpoint == "https://t.example.net"
    assert connection.blob_endpoint is None
    assert isinstance(connection.credential, DefaultAzureCredential)


@pytest.mark.parametrize(
    ("env", "setting", "message"),
    [
        ({}, "AzureWebJobsStorage", "is required"),
        ({"AzureWebJobsStorage": "   "}, "AzureWebJobsStorage", "is required"),
        ({"AzureWebJobsStorage": KEY}, "AzureWebJobsStorage", "is not a storage connection"),
        (
            {"AzureWebJobsStorage": f"AccountKey={KEY}"},
            "AzureWebJobsStorage",
            "AccountKey but no AccountName",
        ),
        (
            {"AzureWebJobsStorage": "AccountName=acct1"},
            "AzureWebJobsStorage",
            "no AccountKey or SharedAccessSignature",
        ),
        (
            {"AzureWebJobsStorage": f"AccountName=a;AccountKey={KEY};SharedAccessSignature={SAS}"},
            "AzureWebJobsStorage",
            "both AccountKey and SharedAccessSignature",
        ),
        (
            {"AzureWebJobsStorage": f"DefaultEndpointsProtocol=ftp;AccountName=a;AccountKey={KEY}"},
            "AzureWebJobsStorage",
            "DefaultEndpointsProtocol",
        ),
        (
            {"AzureWebJobsStorage": f"QueueEndpoint=ftp://x/{KEY};AccountName=a;AccountKey={KEY}"},
            "AzureWebJobsStorage",
            "QueueEndpoint is not an http(s) URL",
        ),
        (
            {"AzureWebJobsStorage__accountName": "Not_Valid"},
            "AzureWebJobsStorage__accountName",
            "is not a storage account name",
        ),
        (
            {
                "AzureWebJobsStorage__accountName": "acct1",
                "AzureWebJobsStorage__credential": "clientsecret",
            },
            "AzureWebJobsStorage__credential",
            "expected managedidentity",
        ),
        (
            {
                "AzureWebJobsStorage__accountName": "acct1",
                "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
            },
            "AzureWebJobsStorage__clientId",
            "only used with AzureWebJobsStorage__credential=managedidentity",
        ),
        (
            {"AzureWebJobsStorage__queueServiceUri": "http://q.example.net"},
            "AzureWebJobsStorage__queueServiceUri",
            "must be an https:// URL",
        ),
        (
            {"AzureWebJobsStorage__credential": "managedidentity"},
            "AzureWebJobsStorage__accountName",
            "is required for an identity-based connection",
        ),
    ],
)
def test_bad_settings_name_the_setting_and_never_echo_the_key(
    env: dict[str, str], setting: str, message: str
) -> None:
    error = _error(env)
    assert error.setting == setting
    assert message in str(error)
    assert str(error).startswith(f"app setting {setting}: ")


def test_other_connection_names_are_named_in_errors() -> None:
    error = _error({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "OtherStorage")
    assert error.setting == "OtherStorage"


def test_unknown_parts_are_refused_without_being_shown() -> None:
    error = _error({"AzureWebJobsStorage": f"AccountName=a;{KEY};AccountKey={KEY}"})
    assert "has a part that is not one of" in str(error)
    error = _error({"AzureWebJobsStorage": f"AccountName=a;Acountkey={KEY}"})
    assert "Acountkey" not in str(error)
