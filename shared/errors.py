"""Every exception the daemon raises on purpose, in one tree.

    DaemonError
    ├── ConfigurationError          could not even try: the app is not configured to do this
    │   ├── SettingError            one app setting is missing or malformed (names it)
    │   └── TenantNotAllowedError   a tenant outside DAEMON_ALLOWED_TENANTS was asked for
    ├── CredentialError             tried to get a credential or token and was refused
    │   ├── KeyVaultError           Key Vault refused or failed (names vault and object)
    │   │   ├── KeyVaultAccessDeniedError    403: the identity lacks an RBAC role
    │   │   └── KeyVaultNotFoundError        404: no such certificate/secret/key
    │   ├── CertificateError        the certificate is disabled, expired, not yet valid,
    │   │                           malformed or has no exportable private key
    │   └── TokenRequestError       the token endpoint refused (carries the AADSTS codes)
    └── ApiError                    the web API could not be called or refused a request
        ├── UnsafeRequestError      refused before sending: absolute URL to another host,
        │                           malformed operation (never reaches the network)
        ├── ApiResponseError        the API answered with an error status (status, code)
        │   └── DeltaTokenExpiredError  400 syncStateNotFound: the delta link expired, do a
        │                               full resync
        ├── ApiTransportError       no usable answer (connect error, timeout, reset) after the
        │                           bounded retries; says whether the outcome is unknown
        └── MalformedResponseError  the API's answer could not be understood
    JobError                        a job could not run to the end
    ├── InvalidMessageError         the queue message can never succeed: logged, completed
    ├── SafetyLimitError            the plan is implausibly large: aborted, nothing applied
    └── RetryableJobError           try again later: raised so the host redelivers

Messages name the app setting or the resource and say what was expected. They never contain
a secret, token, assertion or private key.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "ApiResponseError",
    "ApiTransportError",
    "CertificateError",
    "ConfigurationError",
    "CredentialError",
    "DaemonError",
    "DeltaTokenExpiredError",
    "InvalidMessageError",
    "JobError",
    "KeyVaultAccessDeniedError",
    "KeyVaultError",
    "KeyVaultNotFoundError",
    "MalformedResponseError",
    "RetryableJobError",
    "SafetyLimitError",
    "SettingError",
    "TenantNotAllowedError",
    "TokenRequestError",
    "UnsafeRequestError",
]


class DaemonError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigurationError(DaemonError):
    """The app is not configured to do what was asked: nothing was attempted."""


class SettingError(ConfigurationError):
    """One app setting is missing or malformed."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"app setting {setting}: {problem}")


class TenantNotAllowedError(ConfigurationError):
    """A token was asked for a tenant that DAEMON_ALLOWED_TENANTS does not list."""

    def __init__(self, tenant: str, allowed: tuple[str, ...]) -> None:
        self.tenant = tenant
        self.allowed = allowed
        super().__init__(
            f"tenant {tenant!r} is not in DAEMON_ALLOWED_TENANTS ({', '.join(allowed)}); "
            "add it there after its admin has consented"
        )


class CredentialError(DaemonError):
    """A credential or token was requested and refused, or could not be loaded."""


class KeyVaultError(CredentialError):
    """Key Vault refused a request or failed."""


class KeyVaultAccessDeniedError(KeyVaultError):
    """Key Vault answered 403: the calling identity lacks a role on the vault."""


class KeyVaultNotFoundError(KeyVaultError):
    """Key Vault answered 404: no such certificate, secret or key (or version)."""


class CertificateError(CredentialError):
    """The certificate cannot be used: disabled, expired, not yet valid or malformed."""


class TokenRequestError(CredentialError):
    """The token endpoint refused the request."""

    def __init__(self, message: str, codes: tuple[int, ...] = ()) -> None:
        self.codes = codes
        super().__init__(message)


class ApiError(DaemonError):
    """The web API could not be called, or refused a request."""


class UnsafeRequestError(ApiError):
    """A request was refused before it was sent (it would leak the token or is malformed)."""


class ApiResponseError(ApiError):
    """The API answered with an error status."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"HTTP {status}" + (f" {code}" if code else "") + f": {message}")


class DeltaTokenExpiredError(ApiResponseError):
    """The delta link is no longer valid (400 syncStateNotFound): start a full resync."""


class ApiTransportError(ApiError):
    """No usable answer arrived: connect error, timeout or reset, after the bounded retries.

    ``outcome_unknown`` is True when the request may have reached the API and been applied
    (a read timeout or reset after the request was sent); a non-idempotent request in that
    state is never resent blindly.
    """

    def __init__(self, message: str, *, outcome_unknown: bool) -> None:
        self.outcome_unknown = outcome_unknown
        super().__init__(message)


class MalformedResponseError(ApiError):
    """The API's answer could not be understood (bad JSON, missing ids, wrong type)."""


class JobError(DaemonError):
    """A job could not run to the end."""


class InvalidMessageError(JobError):
    """A queue message that can never succeed (malformed, unknown job, wrong version, tenant
    not allowed, payload invalid): it is logged and completed, not retried."""


class SafetyLimitError(JobError):
    """A run planned more changes than DAEMON_MAX_CHANGES_PER_RUN allows; nothing applied."""

    def __init__(self, job: str, planned: int, limit: int) -> None:
        self.planned = planned
        self.limit = limit
        super().__init__(
            f"{job}: the plan has {planned} changes, more than DAEMON_MAX_CHANGES_PER_RUN="
            f"{limit}; nothing was applied. Check the input (a bug should not disable "
            "thousands of accounts), or raise the limit for this run"
        )


class RetryableJobError(JobError):
    """Part of the work could not be done now (throttling, outages): redeliver the message;
    the job is idempotent, so what was done is not done twice."""
