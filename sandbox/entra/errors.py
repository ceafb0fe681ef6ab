"""Entra ID's refusals: :class:`EntraError` and its JSON shape, and the messages shared by
the endpoints. Errors have Entra's shape::

    {"error": "invalid_client", "error_description": "AADSTS700027: ... Trace ID: ...",
     "error_codes": [700027], "timestamp": "...", "trace_id": "...", "correlation_id": "...",
     "error_uri": "https://login.microsoftonline.com/error?code=700027"}
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sandbox.state import Tenant, new_guid


@dataclass
class EntraError(Exception):
    """A refusal of the token endpoint; rendered as Entra's JSON error."""

    status: int
    error: str
    code: int
    message: str


def _timestamp(now: float) -> str:
    return dt.datetime.fromtimestamp(now, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def error_body(err: EntraError, now: float, correlation_id: str) -> dict[str, Any]:
    trace_id = new_guid()
    stamp = _timestamp(now)
    return {
        "error": err.error,
        "error_description": (
            f"AADSTS{err.code}: {err.message} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {stamp}"
        ),
        "error_codes": [err.code],
        "timestamp": stamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={err.code}",
    }


def tenant_not_found(name: str, error: str = "invalid_request") -> EntraError:
    return EntraError(
        400,
        error,
        90002,
        f"Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    )


def missing_parameter(name: str) -> EntraError:
    return EntraError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


# What fail_next_token_requests(n, code) answers for the codes tests are likely to inject.
INJECTABLE: dict[int, tuple[int, str, str]] = {
    700027: (401, "invalid_client", "Client assertion failed signature validation. (injected)"),
    700024: (
        401,
        "invalid_client",
        "Client assertion is not within its valid time range. (injected)",
    ),
    7000214: (401, "invalid_client", "Certificate has been revoked. (injected)"),
    7000215: (401, "invalid_client", "Invalid client secret provided. (injected)"),
    700016: (400, "unauthorized_client", "Application was not found in the directory. (injected)"),
    7000229: (
        401,
        "invalid_client",
        "The client application is missing service principal in the tenant. (injected)",
    ),
    90002: (400, "invalid_request", "Tenant not found. (injected)"),
    500011: (400, "invalid_resource", "The resource principal was not found. (injected)"),
    90006: (503, "temporarily_unavailable", "The service is temporarily unavailable. (injected)"),
    90024: (
        503,
        "temporarily_unavailable",
        "RequestBudgetExceededError - A transient error has occurred. Try again. (injected)",
    ),
    50196: (
        400,
        "invalid_grant",
        "The server terminated an operation because it encountered "
        "a client request loop. (injected)",
    ),
}


def app_not_found(client_id: str, tenant: Tenant) -> EntraError:
    return EntraError(
        400,
        "unauthorized_client",
        700016,
        f"Application with identifier '{client_id}' was not found in the directory "
        f"'{tenant.display_name}'. This can happen if the application has not been installed by "
        "the administrator of the tenant or consented to by any user in the tenant. You may "
        "have sent your authentication request to the wrong tenant.",
    )
