"""Every exception the daemon raises on purpose, in one tree.

    DaemonError
    ├── ConfigurationError          could not even try: the app is not configured to do this
    │   ├── SettingError            one app setting is missing or malformed (names it)
    │   ├── TenantNotAllowedError   a tenant outside DAEMON_ALLOWED_TENANTS was asked for
    │   ├── HostConfigError         host.json (or a value in it) is not usable (names the key)
    │   │   └── ScheduleError       a timer schedule that cannot run (names the setting)
    │   ├── BindingError            a function's binding cannot be used as written
    │   ├── HostError               the local runner was asked for a function the app lacks
    │   └── UsageError              a bad command-line input (printed as one line, exit 2)
    ├── CredentialError             tried to get a credential or token and was refused
    │   ├── KeyVaultError           Key Vault refused or failed (names vault and object)
    │   │   ├── KeyVaultAccessDeniedError    403: the identity lacks an RBAC role
    │   │   └── KeyVaultNotFoundError        404: no such certificate/secret/key
    │   ├── CertificateError        the certificate is disabled, expired, not yet valid,
    │   │                           malformed or has no exportable private key
    │   └── TokenRequestError       the token endpoint refused (carries the AADSTS codes)
    ├── ApiError                    the web API could not be called or refused a request
    │   ├── UnsafeRequestError      refused before sending: absolute URL to another host,
    │   │                           malformed operation (never reaches the network)
    │   ├── ApiResponseError        the API answered with an error status (status, code)
    │   │   └── DeltaTokenExpiredError  400 syncStateNotFound: the delta link expired, do a
    │   │                               full resync
    │   ├── ApiTransportError       no usable answer (connect error, timeout, reset) after the
    │   │                           bounded retries; says whether the outcome is unknown
    │   └── MalformedResponseError  the API's answer could not be understood
    ├── StateStoreError             the state store (Table storage) could not do what was asked
    │   ├── StorageUnreachableError the storage account did not answer or refused the identity
    │   ├── StateConflictError      an optimistic (ETag) write lost to another writer
    │   │   └── FleetConflictError  a fleet budget lease lost to another instance
    │   └── StateValueTooLargeError a value does not fit in one table entity: refused
    ├── JobError                    a job could not run to the end
    │   ├── InvalidMessageError     the queue message can never succeed: logged, completed
    │   │   └── PersonError         one person in a provisioning payload is invalid (names
    │   │                           the person and the field; the others still run)
    │   ├── SafetyLimitError        the plan is implausibly large: aborted, nothing applied
    │   └── RetryableJobError       try again later: raised so the host redelivers
    └── AzuriteError                development only: the local storage emulator is not
                                    installed, did not start, or stopped unexpectedly

Where an SDK or the standard library raised first, the daemon's error is chained to it
(``raise ... from exc``) so the status and request id stay in the traceback; the daemon's own
message is the one logged and shown.

Messages name the app setting or the resource and say what was expected. They never contain
a secret, token, assertion or private key.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "ApiResponseError",
    "ApiTransportError",
    "AzuriteError",
    "BindingError",
    "CertificateError",
    "ConfigurationError",
    "CredentialError",
    "DaemonError",
    "DeltaTokenExpiredError",
    "FleetConflictError",
    "HostConfigError",
    "HostError",
    "InvalidMessageError",
    "JobError",
    "KeyVaultAccessDeniedError",
    "KeyVaultError",
    "KeyVaultNotFoundError",
    "MalformedResponseError",
    "PersonError",
    "RetryableJobError",
    "SafetyLimitError",
    "ScheduleError",
    "SettingError",
    "StateConflictError",
    "StateStoreError",
    "StateValueTooLargeError",
    "StorageUnreachableError",
    "TenantNotAllowedError",
    "TokenRequestError",
    "UnsafeRequestError",
    "UsageError",
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


class HostConfigError(ConfigurationError):
    """host.json (or a value in it) is not usable; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"host.json {key}: {problem}")


class ScheduleError(HostConfigError):
    """A schedule that cannot run; ``where`` names the setting (and field), ``problem`` says
    what is wrong (so a caller can report it under its own setting name)."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(where, problem)


class BindingError(ConfigurationError):
    """A function's binding cannot be used as written (names the function and property)."""


class HostError(ConfigurationError):
    """The local runner was asked for something the app does not define."""


class UsageError(ConfigurationError):
    """A bad command-line input: printed as one line, exit status 2."""


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


class StateStoreError(DaemonError):
    """The state store could not do what was asked."""


class StorageUnreachableError(StateStoreError):
    """The storage account did not answer, or refused the daemon's credential."""


class StateConflictError(StateStoreError):
    """An optimistic write lost: the entity changed (or appeared) since it was read."""


class FleetConflictError(StateConflictError):
    """A conditional write lost: the budget entity changed (or appeared) since it was read."""


class StateValueTooLargeError(StateStoreError):
    """A value does not fit in one table entity (about 1 MiB); it is refused, not truncated."""


class JobError(DaemonError):
    """A job could not run to the end."""


class InvalidMessageError(JobError):
    """A queue message that can never succeed (malformed, unknown job, wrong version, tenant
    not allowed, payload invalid): it is logged and completed, not retried."""


class PersonError(InvalidMessageError):
    """One person in a provisioning payload cannot be planned; the message names the person
    and the field. The job plans the others and reports this one as failed."""


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


class AzuriteError(DaemonError):
    """Development only: Azurite is not installed, did not start, or stopped unexpectedly."""
