"""Entra ID stand-in: OpenID discovery, JWKS and the v2.0 token endpoint (client credentials).

``service.py`` holds the endpoints and the token request's order of checks,
``credentials.py`` how a client's secret or assertion is verified, ``errors.py`` Entra's error
shape and the failures tests may inject.
"""

from __future__ import annotations

from .credentials import ASSERTION_TYPE, CLOCK_SKEW, ClientAuthenticator
from .errors import INJECTABLE, EntraError, error_body
from .service import EntraService

__all__ = [
    "ASSERTION_TYPE",
    "CLOCK_SKEW",
    "INJECTABLE",
    "ClientAuthenticator",
    "EntraError",
    "EntraService",
    "error_body",
]
