"""How the client's HTTP connections are made: TLS trust, HTTP/2, pool limits, timeouts.

:class:`ConnectionOptions` checks and normalises what the caller passed once, at
construction, and opens an ``httpx.AsyncClient`` from it whenever the API client needs one
(the first use, and again on another event loop: an AsyncClient must not cross loops).
"""

from __future__ import annotations

import importlib.util
import ssl
from dataclasses import dataclass

import httpx

from shared.errors import ConfigurationError, UnsafeRequestError

__all__ = ["DEFAULT_LIMITS", "DEFAULT_TIMEOUT", "ConnectionOptions"]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16)


def _ssl_context(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext:
    """verify=True trusts the system CAs (certifi), or the bundle named by SSL_CERT_FILE /
    SSL_CERT_DIR as httpx does; a string is a CA bundle path; a context is used as given."""
    if verify is False:
        raise UnsafeRequestError(
            "TLS certificate verification cannot be turned off; pass an ssl.SSLContext "
            "or a CA bundle path to trust a private CA"
        )
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    if isinstance(verify, ssl.SSLContext):
        return verify
    return httpx.create_ssl_context(trust_env=True)


@dataclass(frozen=True)
class ConnectionOptions:
    """The checked connection settings of one API client."""

    transport: httpx.AsyncBaseTransport | None
    verify: ssl.SSLContext
    http2: bool
    limits: httpx.Limits
    timeout: httpx.Timeout

    @classmethod
    def build(
        cls,
        *,
        transport: httpx.AsyncBaseTransport | None,
        verify: ssl.SSLContext | str | bool,
        http2: bool,
        limits: httpx.Limits | None,
        timeout: httpx.Timeout | float | None,
    ) -> ConnectionOptions:
        """UnsafeRequestError for verify=False; ConfigurationError for HTTP/2 without h2."""
        context = _ssl_context(verify)
        if http2 and importlib.util.find_spec("h2") is None:
            raise ConfigurationError(
                "http2=True needs the 'h2' package (httpx[http2]); install it or use http2=False"
            )
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        elif not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(timeout)
        return cls(transport, context, http2, limits or DEFAULT_LIMITS, timeout)

    def open(self) -> httpx.AsyncClient:
        """A new AsyncClient. Redirects are never followed by httpx (the API client decides,
        refusing other origins), and the environment is ignored (trust_env=False: no proxy
        or .netrc credentials picked up from it)."""
        return httpx.AsyncClient(
            transport=self.transport,
            verify=self.verify,
            http2=self.http2,
            limits=self.limits,
            timeout=self.timeout,
            follow_redirects=False,
            trust_env=False,
        )
