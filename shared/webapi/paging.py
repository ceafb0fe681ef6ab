"""Paging: following ``@odata.nextLink`` to the last page, and delta rounds.

Graph hands a large collection out a page at a time; each page's ``@odata.nextLink`` is the
URL of the next, and the last page of a delta query carries ``@odata.deltaLink`` instead, the
link to start the next round from (https://learn.microsoft.com/graph/paging,
https://learn.microsoft.com/graph/delta-query-overview). Every link is checked against the
API's origin before it is followed: the token only ever goes to the configured API host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from shared.errors import MalformedResponseError

if TYPE_CHECKING:
    from shared.webapi.client import ApiClient

__all__ = ["MAX_PAGES", "DeltaPages", "iter_pages"]

MAX_PAGES = 100_000
"""A collection with more pages than this is taken as a link loop the API did not end."""


async def iter_pages(
    client: ApiClient,
    path: str,
    params: Mapping[str, str] | None,
    headers: Mapping[str, str] | None,
) -> AsyncIterator[dict[str, Any]]:
    """Each page of ``path``, following ``@odata.nextLink`` (through empty pages).

    ``params`` go on the first request only (the next links carry them already). A page
    without a ``value`` array, or a bad or repeated next link, is MalformedResponseError.
    """
    target: str | None = path
    first = True
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        if target is None:
            return
        page = await client.get_json(target, params=params if first else None, headers=headers)
        first = False
        value = page.get("value")
        if not isinstance(value, list):
            raise MalformedResponseError(
                f"page of {client.resolve(path).path} has no 'value' array"
            )
        yield page
        next_link = page.get("@odata.nextLink")
        if next_link is None:
            return
        if not isinstance(next_link, str) or next_link in seen:
            raise MalformedResponseError(
                f"page of {client.resolve(path).path} has a bad or repeated @odata.nextLink"
            )
        seen.add(next_link)
        client.resolve(next_link)  # another origin: UnsafeRequestError before sending
        target = next_link
    raise MalformedResponseError(f"{client.resolve(path).path}: more than {MAX_PAGES} pages")


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
        async for page in iter_pages(client, self._start, self._params, self._headers):
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
