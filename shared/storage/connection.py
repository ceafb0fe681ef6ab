"""Where the storage account is and how to sign in to it: the Functions connection settings.

:func:`storage_connection` reads a storage connection the way the Functions host does
(https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity):

- a connection string in the setting itself (``AzureWebJobsStorage``), in the format of
  https://learn.microsoft.com/en-us/azure/storage/common/storage-configure-connection-string
  (``UseDevelopmentStorage=true`` for Azurite);
- or an identity-based connection: ``<name>__accountName`` or ``<name>__tableServiceUri`` /
  ``__queueServiceUri`` / ``__blobServiceUri``, with ``<name>__credential`` and
  ``<name>__clientId`` for a managed identity (the developer's own sign-in otherwise).

The result, :class:`StorageConnection`, makes the SDK clients. Errors are
:class:`~shared.errors.SettingError` naming the setting; they never echo a connection string
or a key. ``azure.identity`` and ``azure.storage.queue`` are imported only when used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential, TokenCredential

from shared.errors import SettingError

if TYPE_CHECKING:
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueClient, QueueServiceClient

__all__ = ["DEFAULT_CONNECTION", "StorageConnection", "storage_connection"]

logger = logging.getLogger(__name__)

DEFAULT_CONNECTION = "AzureWebJobsStorage"

# Azurite's well-known development account, public in Microsoft's docs and in every Azurite
# (https://learn.microsoft.com/en-us/azure/storage/common/storage-use-azurite#http-connection-strings).
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_DEV_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}

_SERVICES = ("blob", "queue", "table")
_CONNECTION_STRING_KEYS = frozenset(
    {
        "defaultendpointsprotocol",
        "accountname",
        "accountkey",
        "sharedaccesssignature",
        "endpointsuffix",
        "usedevelopmentstorage",
        "developmentstorageproxyuri",
    }
    | {
        f"{service}{kind}endpoint"
        for service in ("blob", "queue", "table", "file", "dfs")
        for kind in ("", "secondary")
    }
)

_KeyOrSas: TypeAlias = AzureNamedKeyCredential | AzureSasCredential


@dataclass(frozen=True)
class StorageConnection:
    """Where a storage account's services are and how to authenticate to them.

    ``credential`` is an account key, a SAS, or a token credential (identity-based). It is
    kept out of ``repr`` so a traceback or log line never shows it.
    """

    setting: str
    account_name: str | None
    blob_endpoint: str | None
    queue_endpoint: str | None
    table_endpoint: str | None
    credential: AzureNamedKeyCredential | AzureSasCredential | TokenCredential | None = field(
        repr=False, compare=False
    )
    identity_based: bool = False

    def _require(self, service: str) -> str:
        endpoint: str | None = getattr(self, f"{service}_endpoint")
        if endpoint is None:
            raise SettingError(
                self.setting,
                f"gives no {service} endpoint: set {self.setting}__{service}ServiceUri (or "
                f"{self.setting}__accountName), or a connection string with "
                f"{service.capitalize()}Endpoint or AccountName",
            )
        return endpoint

    def table_service(self) -> TableServiceClient:
        from azure.data.tables import TableServiceClient

        return TableServiceClient(endpoint=self._require("table"), credential=self.credential)

    def queue_service(self) -> QueueServiceClient:
        from azure.storage.queue import QueueServiceClient

        return QueueServiceClient(account_url=self._require("queue"), credential=self.credential)

    def queue_client(self, queue: str, *, base64: bool = False) -> QueueClient:
        """A client for one queue; ``base64`` encodes sent text (TextBase64EncodePolicy)."""
        from azure.storage.queue import QueueClient, TextBase64EncodePolicy

        return QueueClient(
            account_url=self._require("queue"),
            queue_name=queue,
            credential=self.credential,
            message_encode_policy=TextBase64EncodePolicy() if base64 else None,
        )


def storage_connection(env: Mapping[str, str], name: str = DEFAULT_CONNECTION) -> StorageConnection:
    """Parse the storage connection called ``name`` (a connection setting) from ``env``."""
    raw = (env.get(name) or "").strip()
    prefix = f"{name}__"
    identity_keys = {k for k in env if k.startswith(prefix) and (env.get(k) or "").strip()}
    if raw:
        if identity_keys:
            logger.warning(
                "%s is set, so the identity-based settings %s are ignored",
                name,
                ", ".join(sorted(identity_keys)),
            )
        return _from_connection_string(name, raw)
    if not identity_keys:
        raise SettingError(
            name,
            "is required: a storage connection string (UseDevelopmentStorage=true for "
            f"Azurite) or an identity-based connection ({name}__accountName with "
            f"{name}__credential=managedidentity)",
        )
    return _from_identity_settings(env, name)


# -- a connection string ---------------------------------------------------------------------


def _from_connection_string(setting: str, value: str) -> StorageConnection:
    parts = _parse_connection_string(setting, value)
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return _development_storage(setting, parts)
    account = parts.get("accountname") or None
    credential = _key_or_sas(setting, parts, account)
    endpoints = _connection_string_endpoints(setting, parts, account)
    return StorageConnection(
        setting=setting,
        account_name=account,
        blob_endpoint=endpoints["blob"],
        queue_endpoint=endpoints["queue"],
        table_endpoint=endpoints["table"],
        credential=credential,
    )


def _parse_connection_string(setting: str, value: str) -> dict[str, str]:
    """The ``Name=value`` parts, names lower-cased; only the names storage knows."""
    parts: dict[str, str] = {}
    for item in value.split(";"):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise SettingError(
                setting,
                "is not a storage connection string: expected 'Name=value' pairs separated "
                "by ';' (such as DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...)"
                " or UseDevelopmentStorage=true",
            )
        name = key.strip().lower()
        if name not in _CONNECTION_STRING_KEYS:
            raise SettingError(  # the part itself is not shown: it may be a key
                setting,
                "is not a storage connection string: it has a part that is not one of "
                "AccountName, AccountKey, SharedAccessSignature, DefaultEndpointsProtocol, "
                "EndpointSuffix, <Service>Endpoint or UseDevelopmentStorage",
            )
        parts[name] = val.strip()
    if not parts:
        raise SettingError(setting, "is empty: expected a storage connection string")
    return parts


def _development_storage(setting: str, parts: Mapping[str, str]) -> StorageConnection:
    """``UseDevelopmentStorage=true``: Azurite's account on its default ports."""
    proxy = parts.get("developmentstorageproxyuri", "http://127.0.0.1").rstrip("/")
    host = urlsplit(proxy).hostname if "://" in proxy else None
    if not host:
        raise SettingError(setting, "DevelopmentStorageProxyUri is not an http(s) URL")
    scheme = urlsplit(proxy).scheme
    dev = {s: f"{scheme}://{host}:{p}/{_DEV_ACCOUNT}" for s, p in _DEV_PORTS.items()}
    return StorageConnection(
        setting=setting,
        account_name=_DEV_ACCOUNT,
        blob_endpoint=dev["blob"],
        queue_endpoint=dev["queue"],
        table_endpoint=dev["table"],
        credential=AzureNamedKeyCredential(_DEV_ACCOUNT, _DEV_KEY),
    )


def _key_or_sas(setting: str, parts: Mapping[str, str], account: str | None) -> _KeyOrSas:
    """The account key or the SAS of a connection string: exactly one of them."""
    key = parts.get("accountkey") or None
    sas = (parts.get("sharedaccesssignature") or "").lstrip("?") or None
    if key and not account:
        raise SettingError(setting, "has an AccountKey but no AccountName")
    if key and sas:
        raise SettingError(setting, "has both AccountKey and SharedAccessSignature: keep one")
    if key and account:
        return AzureNamedKeyCredential(account, key)
    if sas:
        return AzureSasCredential(sas)
    raise SettingError(
        setting,
        "has no AccountKey or SharedAccessSignature; for a managed identity use "
        f"{setting}__accountName (identity-based connection) instead",
    )


def _connection_string_endpoints(
    setting: str, parts: Mapping[str, str], account: str | None
) -> dict[str, str | None]:
    """Each service's endpoint: ``<Service>Endpoint`` if given, else built from the account."""
    protocol = parts.get("defaultendpointsprotocol", "https").lower()
    if protocol not in ("http", "https"):
        raise SettingError(setting, "DefaultEndpointsProtocol must be http or https")
    suffix = parts.get("endpointsuffix", "core.windows.net")
    endpoints: dict[str, str | None] = {}
    for service in _SERVICES:
        explicit = parts.get(f"{service}endpoint")
        if explicit:
            endpoints[service] = _endpoint(setting, f"{service.capitalize()}Endpoint", explicit)
        elif account:
            endpoints[service] = f"{protocol}://{account}.{service}.{suffix}"
        else:
            endpoints[service] = None
    if not any(endpoints.values()):
        raise SettingError(setting, "names no AccountName and no service endpoint")
    return endpoints


def _endpoint(setting: str, name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(setting, f"{name} is not an http(s) URL")
    if parts.query or parts.username or parts.password:
        raise SettingError(
            setting,
            f"{name} must not carry a query or credentials (put a SAS in SharedAccessSignature)",
        )
    return value.rstrip("/")


# -- an identity-based connection ------------------------------------------------------------


def _from_identity_settings(env: Mapping[str, str], name: str) -> StorageConnection:
    account = (env.get(f"{name}__accountName") or "").strip() or None
    if account is not None and not re.fullmatch(r"[a-z0-9]{3,24}", account):
        raise SettingError(
            f"{name}__accountName",
            f"{account!r} is not a storage account name (3-24 lowercase letters and digits)",
        )
    endpoints = {service: _service_uri(env, name, service, account) for service in _SERVICES}
    if not any(endpoints.values()):
        raise SettingError(
            f"{name}__accountName",
            f"is required for an identity-based connection (or set {name}__queueServiceUri "
            f"and {name}__tableServiceUri)",
        )
    return StorageConnection(
        setting=name,
        account_name=account,
        blob_endpoint=endpoints["blob"],
        queue_endpoint=endpoints["queue"],
        table_endpoint=endpoints["table"],
        credential=_identity_credential(env, name),
        identity_based=True,
    )


def _service_uri(
    env: Mapping[str, str], name: str, service: str, account: str | None
) -> str | None:
    """``<name>__<service>ServiceUri`` (https only), else the account's public endpoint."""
    uri_setting = f"{name}__{service}ServiceUri"
    uri = (env.get(uri_setting) or "").strip()
    if uri:
        parts = urlsplit(uri)
        if parts.scheme != "https" or not parts.hostname:
            raise SettingError(uri_setting, f"{uri!r} must be an https:// URL")
        if parts.query or parts.username or parts.password:
            raise SettingError(uri_setting, "must not carry a query or credentials")
        return uri.rstrip("/")
    if account:
        return f"https://{account}.{service}.core.windows.net"
    return None


def _identity_credential(env: Mapping[str, str], prefix: str) -> TokenCredential:
    kind = (env.get(f"{prefix}__credential") or "").strip().lower()
    client_id = (env.get(f"{prefix}__clientId") or "").strip() or None
    if kind == "managedidentity":
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id)
    if kind:
        raise SettingError(
            f"{prefix}__credential",
            f"{kind!r} is not supported: expected managedidentity (or leave it unset to use "
            "the developer's own sign-in through DefaultAzureCredential)",
        )
    if client_id:
        raise SettingError(
            f"{prefix}__clientId",
            f"is only used with {prefix}__credential=managedidentity; set that too",
        )
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
