"""The API client: one httpx.AsyncClient, bounded retries, 401 → one forced refresh, paging.

Every request carries the bearer token, so every target is checked against the base URL's
origin before sending (absolute URLs, next/delta links, redirect targets); redirects are not
followed automatically. Each send carries a fresh ``client-request-id`` that is logged on
failures. The token and the Authorization header are never logged.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import random
import ssl
import uuid
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from shared.errors import (
    ApiTransportError,
    ConfigurationError,
    MalformedResponseError,
    UnsafeRequestError,
)
from shared.webapi.response import ApiResponse, DeltaResult, parse_json_body
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

logger = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_DEFAULT_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16)
_MAX_PAGES = 100_000


def _give_up_level(policy: RetryPolicy) -> int:
    """A caller that does its own resending (one attempt here: the batch engine) decides and
    logs what a failed send means; logging it here too, at ERROR, only floods an outage."""
    return logging.DEBUG if policy.max_attempts <= 1 else logging.ERROR


class ApiClient:
    """Calls one web API (the configured base: Microsoft Graph v1.0 by default) with app-only
    tokens.

    The httpx client is created lazily on first use and again when the running event loop
    is a different one (an AsyncClient must not cross loops). Use as ``async with`` or call
    :meth:`aclose`.
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
        if verify is False:
            raise UnsafeRequestError(
                "TLS certificate verification cannot be turned off; pass an ssl.SSLContext "
                "or a CA bundle path to trust a private CA"
            )
        if http2 and importlib.util.find_spec("h2") is None:
            raise ConfigurationError(
                "http2=True needs the 'h2' package (httpx[http2]); install it or use http2=False"
            )
        if throttle_priority is not None and throttle_priority not in ("Low", "Normal", "High"):
            raise ConfigurationError(
                f"throttle_priority {throttle_priority!r} must be Low, Normal or High"
            )
        self._token_source = token_source
        self._transport = transport
        # verify=True trusts the system CAs (certifi), or the bundle named by SSL_CERT_FILE /
        # SSL_CERT_DIR as httpx does; the client itself ignores other environment settings
        # (trust_env=False: no proxy or .netrc credentials picked up from the environment).
        self._verify: ssl.SSLContext = (
            ssl.create_default_context(cafile=verify)
            if isinstance(verify, str)
            else verify
            if isinstance(verify, ssl.SSLContext)
            else httpx.create_ssl_context(trust_env=True)
        )
        self._http2 = http2
        self._limits = limits or _DEFAULT_LIMITS
        self._timeout = (
            timeout
            if isinstance(timeout, httpx.Timeout)
            else httpx.Timeout(timeout)
            if timeout is not None
            else _DEFAULT_TIMEOUT
        )
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
            self._client = httpx.AsyncClient(
                transport=self._transport,
                verify=self._verify,
                http2=self._http2,
                limits=self._limits,
                timeout=self._timeout,
                follow_redirects=False,
                trust_env=False,
            )
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
        policy = retry or self.retry
        idem = is_idempotent(method, idempotent)
        start = self._clock()
        skipped = 0.0  # waits skipped with wait=False still count toward the time bound
        attempts = 0
        refreshed = False

        async def send(request_id: str, force_refresh: bool) -> httpx.Response:
            return await self._send(
                method,
                url,
                json=json,
                content=content,
                headers=extra,
                params=params,
                request_id=request_id,
                force_refresh=force_refresh,
            )

        while True:
            attempts += 1
            request_id = str(uuid.uuid4())
            try:
                response = await send(request_id, False)
                if response.status_code == 401 and not refreshed:
                    refreshed = True
                    logger.info(
                        "%s %s answered 401 (client-request-id %s): refreshing the token once",
                        method,
                        url.path,
                        request_id,
                    )
                    request_id = str(uuid.uuid4())
                    response = await send(request_id, True)
            except httpx.TransportError as exc:
                disposition = classify_exception(exc, idempotent=idem)
                elapsed = self._clock() - start + skipped
                delay = policy.delay(attempts, None, self._rng)
                if disposition is Disposition.RETRY and policy.allows(attempts, elapsed, delay):
                    logger.warning(
                        "%s %s failed: %s (client-request-id %s); retry %d/%d in %.2fs",
                        method,
                        url.path,
                        exc.__class__.__name__,
                        request_id,
                        attempts,
                        policy.max_attempts - 1,
                        delay,
                    )
                    skipped += await self._wait(policy, delay)
                    continue
                unknown = disposition is Disposition.OUTCOME_UNKNOWN
                logger.log(
                    _give_up_level(policy),
                    "%s %s failed: %s (client-request-id %s) after %d attempt(s)%s",
                    method,
                    url.path,
                    exc.__class__.__name__,
                    request_id,
                    attempts,
                    "; outcome unknown, not resent" if unknown else "",
                )
                raise ApiTransportError(
                    f"{method} {url.path}: {exc.__class__.__name__} after {attempts} "
                    f"attempt(s) (client-request-id {request_id})"
                    + ("; the request may have been applied" if unknown else ""),
                    outcome_unknown=unknown,
                ) from exc
            result = self._to_response(response, request_id, attempts)
            disposition = classify_status(result.status, idempotent=idem)
            if disposition is Disposition.RETRY:
                retry_after = parse_retry_after(result.headers)
                delay = policy.delay(attempts, retry_after, self._rng)
                elapsed = self._clock() - start + skipped
                if policy.allows(attempts, elapsed, delay):
                    logger.warning(
                        "%s %s answered %d (client-request-id %s); retry %d/%d in %.2fs",
                        method,
                        url.path,
                        result.status,
                        request_id,
                        attempts,
                        policy.max_attempts - 1,
                        delay,
                    )
                    skipped += await self._wait(policy, delay)
                    continue
            if disposition is Disposition.OUTCOME_UNKNOWN:
                logger.log(
                    _give_up_level(policy),
                    "%s %s answered %d (client-request-id %s): outcome unknown, not resent",
                    method,
                    url.path,
                    result.status,
                    request_id,
                )
                return ApiResponse(
                    status=result.status,
                    headers=result.headers,
                    body=result.body,
                    content=result.content,
                    request_id=request_id,
                    attempts=attempts,
                    outcome_unknown=True,
                    json_problem=result.json_problem,
                )
            if not result.ok:
                logger.info(
                    "%s %s answered %d %s (client-request-id %s)",
                    method,
                    url.path,
                    result.status,
                    result.error_code or "",
                    request_id,
                )
            return result

    async def _wait(self, policy: RetryPolicy, delay: float) -> float:
        """Sleep ``delay`` (or skip it with wait=False); returns the skipped time."""
        if policy.wait:
            await self._sleep(delay)
            return 0.0
        return delay

    async def _send(
        self,
        method: str,
        url: httpx.URL,
        *,
        json: Any,
        content: bytes | None,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        request_id: str,
        force_refresh: bool,
    ) -> httpx.Response:
        token = await self._token_source(force_refresh=force_refresh)
        sent = {
            "Accept": "application/json",
            "User-Agent": self._user_agent,
            **headers,
            "Authorization": f"Bearer {token}",
            "client-request-id": request_id,
            "return-client-request-id": "true",
        }
        if self._throttle_priority:
            sent["x-ms-throttle-priority"] = self._throttle_priority
        client = self._http()
        for _ in range(_MAX_REDIRECTS + 1):
            response = await client.request(
                method, url, json=json, content=content, headers=sent, params=params
            )
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            target = url.join(location)
            if not self.base.same_origin(target):
                raise UnsafeRequestError(
                    f"{method} {url.path} redirected to {target.scheme}://{target.host}: "
                    "refused, the token is only sent to the API's own origin"
                )
            if response.status_code in (307, 308) or method in ("GET", "HEAD"):
                url, params = target, None
                continue
            return response  # 301/302/303 on a write: hand back, do not change the method
        raise MalformedResponseError(f"{method} {url.path}: more than {_MAX_REDIRECTS} redirects")

    @staticmethod
    def _to_response(response: httpx.Response, request_id: str, attempts: int) -> ApiResponse:
        content = response.content
        body, problem = parse_json_body(response.headers.get("content-type", ""), content)
        return ApiResponse(
            status=response.status_code,
            headers=response.headers,
            body=body,
            content=content,
            request_id=request_id,
            attempts=attempts,
            json_problem=problem,
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

    async def _pages(
        self, path: str, params: Mapping[str, str] | None, headers: Mapping[str, str] | None
    ) -> AsyncIterator[dict[str, Any]]:
        """Each page, following ``@odata.nextLink`` (through empty pages)."""
        target: str | None = path
        first = True
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            if target is None:
                return
            page = await self.get_json(target, params=params if first else None, headers=headers)
            first = False
            value = page.get("value")
            if not isinstance(value, list):
                raise MalformedResponseError(
                    f"page of {self.resolve(path).path} has no 'value' array"
                )
            yield page
            next_link = page.get("@odata.nextLink")
            if next_link is None:
                return
            if not isinstance(next_link, str) or next_link in seen:
                raise MalformedResponseError(
                    f"page of {self.resolve(path).path} has a bad or repeated @odata.nextLink"
                )
            seen.add(next_link)
            self.resolve(next_link)  # another origin: UnsafeRequestError before sending
            target = next_link
        raise MalformedResponseError(f"{self.resolve(path).path}: more than {_MAX_PAGES} pages")

    async def paginate(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of every page's ``value`` array, following ``@odata.nextLink``."""
        async for page in self._pages(path, params, headers):
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


class DeltaPages:
    """One delta round as an async iterator of pages (lists of items): memory stays one page
    however large the directory. ``delta_link`` is set when the round has ended."""

    def __init__(
        self,
        client: ApiClient,
        path: str,
        delta_link: str | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        self._client = client
        self._path = path
        self._start = delta_link or path
        self._params = None if delta_link else params
        self._headers = headers
        self.delta_link: str | None = None

    def __aiter__(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self._run()

    async def _run(self) -> AsyncIterator[list[dict[str, Any]]]:
        client = self._client
        async for page in client._pages(self._start, self._params, self._headers):
            link = page.get("@odata.deltaLink")
            if isinstance(link, str):
                client.resolve(link)  # refuses a link to another host before anything is used
            yield [x for x in page["value"] if isinstance(x, dict)]
            if isinstance(link, str):
                self.delta_link = link
        if self.delta_link is None:
            raise MalformedResponseError(
                f"delta query {client.resolve(self._path).path} ended without an @odata.deltaLink"
            )
