"""The API client: one httpx.AsyncClient, bounded retries, 401 → one forced refresh, paging.

Every request carries the bearer token, so every target is checked against the base URL's
origin before sending (absolute URLs, next/delta links, redirect targets); redirects are not
followed automatically. Each send carries a fresh ``client-request-id`` that is logged on
failures. The token and the Authorization header are never logged.

A request goes down a chain of small steps, in the manner of httpx's own
``send → _send_handling_auth → _send_handling_redirects → _send_single_request``::

    request                      check the call, build the Exchange (exchange.py)
    └ _send_with_retries         one attempt after another (retry.py), then the outcome
      │                          rules turn the last answer into the result (outcome.py)
      └ _send_with_auth          attach the token; a 401 → one forced refresh, one resend
        └ _send_refusing_redirects  follow same-origin redirects only
          └ _send_once           one HTTP exchange

The auth step is a method, not an ``httpx.Auth`` subclass: an ``httpx.Auth`` flow runs inside
``AsyncClient.send`` around each single hop, below our redirect handling, so it would fetch a
token per redirect hop and judge a 401 before the redirects were followed; its one refresh is
per request across retries (state an ``Auth`` instance would have to share between sends);
and the resend after a 401 needs a new ``client-request-id`` and a log line naming the old
one. Ours sits above the redirects, sees the final answer of each send, and keeps that state
in the Exchange. Paging and delta rounds live in paging.py, the connection settings (TLS
trust, HTTP/2, limits, timeouts) in connection.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from shared.errors import ConfigurationError, MalformedResponseError, UnsafeRequestError
from shared.webapi.connection import ConnectionOptions
from shared.webapi.exchange import LOGGER_NAME, Exchange, new_request_id
from shared.webapi.outcome import final_answer, to_response, transport_failure
from shared.webapi.paging import DeltaPages, iter_pages
from shared.webapi.response import ApiResponse, DeltaResult
from shared.webapi.retry import (
    Disposition,
    RetryPolicy,
    classify_exception,
    classify_status,
    is_idempotent,
    parse_retry_after,
)
from shared.webapi.timing import Clock, Sleep, monotonic, real_sleep
from shared.webapi.tokens import TokenSource
from shared.webapi.urls import BaseUrl

__all__ = ["ApiClient", "DeltaPages"]

logger = logging.getLogger(LOGGER_NAME)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5


class ApiClient:
    """Calls one web API (the configured base: Microsoft Graph v1.0 by default) with app-only
    tokens.

    The httpx client is opened (:class:`~shared.webapi.connection.ConnectionOptions`) lazily
    on first use and again when the running event loop is a different one (an AsyncClient
    must not cross loops). Use as ``async with`` or call :meth:`aclose`.
    """

    def __init__(
        self,
        base_url: str,
        token_source: TokenSource,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | str | bool = True,
        http2: bool = False,
        limits: httpx.Limits | None = None,
        timeout: httpx.Timeout | float | None = None,
        retry: RetryPolicy | None = None,
        throttle_priority: str | None = None,
        sleep: Sleep | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        user_agent: str = "graph-daemon/0.1",
    ) -> None:
        self.base = BaseUrl(base_url)
        self._connection = ConnectionOptions.build(
            transport=transport, verify=verify, http2=http2, limits=limits, timeout=timeout
        )
        if throttle_priority is not None and throttle_priority not in ("Low", "Normal", "High"):
            raise ConfigurationError(
                f"throttle_priority {throttle_priority!r} must be Low, Normal or High"
            )
        self._token_source = token_source
        self.retry = retry or RetryPolicy()
        self._throttle_priority = throttle_priority
        self._sleep = sleep or real_sleep
        self._clock = clock or monotonic
        self._rng = rng or random.Random()
        self._user_agent = user_agent
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"ApiClient({self.base.text!r})"

    # -- lifetime ---------------------------------------------------------------------

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying connections. The client cannot be used afterwards."""
        self._closed = True
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("ApiClient is closed")
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            if self._client is not None and self._loop is not loop:
                logger.debug("event loop changed: creating a new HTTP client for %s", self.base)
            self._client = self._connection.open()
            self._loop = loop
        return self._client

    @property
    def is_closed(self) -> bool:
        """True once :meth:`aclose` ran (``async with`` closes on exit)."""
        return self._closed

    # -- requests ---------------------------------------------------------------------

    def resolve(self, path: str) -> httpx.URL:
        """The absolute URL for ``path``; UnsafeRequestError for another origin."""
        return self.base.resolve(path)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        retry: RetryPolicy | None = None,
    ) -> ApiResponse:
        """Send one request with retries; return the final answer whatever its status.

        429/503/504 and transport errors are retried within ``retry`` (default: the client's
        policy), honouring Retry-After. A non-idempotent request (POST, unless
        ``idempotent=True``) is never resent once it may have been applied: a 5xx comes back
        with ``outcome_unknown=True``, a timeout/reset raises ApiTransportError with
        ``outcome_unknown=True``. A 401 triggers one forced token refresh and one resend.

        Raises UnsafeRequestError before sending anything when the URL (or a redirect
        target) is on another origin, ApiTransportError when no answer arrived.
        """
        method = method.upper()
        url = self.resolve(path)
        if json is not None and content is not None:
            raise UnsafeRequestError("pass either json or content, not both")
        extra = dict(headers or {})
        if any(k.lower() == "authorization" for k in extra):
            raise UnsafeRequestError("callers must not set the Authorization header")
        exchange = Exchange(
            method=method,
            url=url,
            json=json,
            content=content,
            headers=extra,
            params=params,
            policy=retry or self.retry,
            idempotent=is_idempotent(method, idempotent),
            started=self._clock(),
        )
        return await self._send_with_retries(exchange)

    async def _send_with_retries(self, exchange: Exchange) -> ApiResponse:
        """Send until the answer is final or the retry policy runs out (:mod:`.retry`), then
        let the outcome rules (:mod:`.outcome`) say what the last answer or error means."""
        while True:
            exchange.next_attempt()
            try:
                response = await self._send_with_auth(exchange)
            except httpx.TransportError as exc:
                disposition = classify_exception(exc, idempotent=exchange.idempotent)
                cause = f"failed: {exc.__class__.__name__}"
                if await self._retry(exchange, disposition, cause, retry_after=None):
                    continue
                raise transport_failure(exchange, exc, disposition) from exc
            answer = to_response(response, exchange)
            disposition = classify_status(answer.status, idempotent=exchange.idempotent)
            cause = f"answered {answer.status}"
            if await self._retry(exchange, disposition, cause, parse_retry_after(answer.headers)):
                continue
            return final_answer(exchange, answer, disposition)

    async def _retry(
        self,
        exchange: Exchange,
        disposition: Disposition,
        cause: str,
        retry_after: float | None,
    ) -> bool:
        """True after waiting out the delay when ``disposition`` is RETRY and another send
        fits the policy (attempts left, and the wait ends within the time bound)."""
        if disposition is not Disposition.RETRY:
            return False
        policy = exchange.policy
        delay = policy.delay(exchange.attempts, retry_after, self._rng)
        elapsed = self._clock() - exchange.started + exchange.skipped
        if not policy.allows(exchange.attempts, elapsed, delay):
            return False
        exchange.log_retry(cause, delay)
        exchange.skipped += await self._wait(policy, delay)
        return True

    async def _wait(self, policy: RetryPolicy, delay: float) -> float:
        """Sleep ``delay`` (or skip it with wait=False); returns the skipped time."""
        if policy.wait:
            await self._sleep(delay)
            return 0.0
        return delay

    async def _send_with_auth(self, exchange: Exchange) -> httpx.Response:
        """One send with the bearer token; a 401 gets one forced token refresh and one resend
        (under a new client-request-id) per request, however many retries follow."""
        response = await self._send_refusing_redirects(
            exchange, await self._token_source(force_refresh=False)
        )
        if response.status_code != 401 or exchange.refreshed:
            return response
        exchange.refreshed = True
        logger.info(
            "%s %s answered 401 (client-request-id %s): refreshing the token once",
            exchange.method,
            exchange.path,
            exchange.request_id,
        )
        exchange.request_id = new_request_id()
        token = await self._token_source(force_refresh=True)
        return await self._send_refusing_redirects(exchange, token)

    async def _send_refusing_redirects(self, exchange: Exchange, token: str) -> httpx.Response:
        """Send, following a redirect only to the API's own origin (the headers carry the
        token); a redirect anywhere else is UnsafeRequestError before anything is sent there.

        307/308, and any redirect of GET/HEAD, are followed with the same method and body;
        a 301/302/303 to a write is handed back as it is (the method is never changed).
        """
        headers = exchange.send_headers(token, self._user_agent, self._throttle_priority)
        url, params = exchange.url, exchange.params
        for _ in range(_MAX_REDIRECTS + 1):
            response = await self._send_once(exchange, url, params, headers)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            target = url.join(location)
            if not self.base.same_origin(target):
                raise UnsafeRequestError(
                    f"{exchange.method} {url.path} redirected to "
                    f"{target.scheme}://{target.host}: refused, the token is only sent to the "
                    "API's own origin"
                )
            if response.status_code not in (307, 308) and exchange.method not in ("GET", "HEAD"):
                return response  # 301/302/303 on a write: hand back, do not change the method
            url, params = target, None
        raise MalformedResponseError(
            f"{exchange.method} {url.path}: more than {_MAX_REDIRECTS} redirects"
        )

    async def _send_once(
        self,
        exchange: Exchange,
        url: httpx.URL,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        """One HTTP exchange on the wire (httpx reads the whole body)."""
        return await self._http().request(
            exchange.method,
            url,
            json=exchange.json,
            content=exchange.content,
            headers=headers,
            params=params,
        )

    # -- conveniences -----------------------------------------------------------------

    async def get_json(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """GET and return the JSON object; ApiResponseError for an error status
        (DeltaTokenExpiredError for an expired delta token), MalformedResponseError when the
        answer is not a JSON object."""
        response = await self.request("GET", path, params=params, headers=headers)
        response.raise_for_status()
        if not isinstance(response.body, dict):
            raise MalformedResponseError(
                f"GET {self.resolve(path).path}: expected a JSON object, got "
                f"{response.json_problem or response.content_type or 'an empty body'} "
                f"(client-request-id {response.request_id})"
            )
        return response.body

    async def paginate(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of every page's ``value`` array, following ``@odata.nextLink``."""
        async for page in iter_pages(self, path, params, headers):
            for item in page["value"]:
                yield item

    async def delta(
        self,
        path: str,
        delta_link: str | None = None,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DeltaResult:
        """Run a delta query to its final ``@odata.deltaLink``, collecting every item.

        Starts from ``delta_link`` when given (an incremental round), else from ``path``
        (a full round). Raises DeltaTokenExpiredError when the API says the delta token is
        no longer valid (400 syncStateNotFound): the caller does a full resync. For a large
        directory use :meth:`delta_pages`, which holds one page at a time.
        """
        pages = self.delta_pages(path, delta_link, params=params, headers=headers)
        items: list[dict[str, Any]] = []
        async for page in pages:
            items.extend(page)
        assert pages.delta_link is not None
        return DeltaResult(items=items, delta_link=pages.delta_link)

    def delta_pages(
        self,
        path: str,
        delta_link: str | None = None,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> DeltaPages:
        """The items of a delta round, one page at a time (``async for items in …``); once
        iterated to the end, ``.delta_link`` is the link to start the next round from."""
        return DeltaPages(self, path, delta_link, params, headers)
