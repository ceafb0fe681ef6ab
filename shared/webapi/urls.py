"""Where requests may go: only to the base URL's origin (scheme, host and port).

The bearer token travels with every request, so every target is checked *before* anything is
sent: absolute URLs, ``@odata.nextLink``/``@odata.deltaLink`` values and redirect targets.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx

from shared.errors import UnsafeRequestError

__all__ = ["BaseUrl", "directory_object_url", "group_url", "user_url"]

_DEFAULT_PORTS = {"https": 443, "http": 80}


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme, 0)


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _check_text(target: str) -> None:
    if _CONTROL_CHARACTER.search(target):
        raise UnsafeRequestError(f"URL {target[:80]!r} contains control characters")


# httpx refuses longer URLs (httpx._urlparse.MAX_URL_LENGTH); checked here so a relative
# target fails the same way whether or not an httpx.URL is built for it.
_MAX_URL_LENGTH = 65_536


def _is_relative(target: object) -> bool:
    """A relative path (``/users``, ``users/x``), or anything that must be refused as one
    (missing, blank, scheme-relative ``//host``); absolute URLs are not."""
    return not isinstance(target, str) or target.startswith("/") or "://" not in target


def _check_relative(target: object, base_length: int) -> None:
    if not isinstance(target, str) or not target.strip():
        raise UnsafeRequestError("request URL is missing")
    _check_text(target)
    if target.startswith("//") or target.startswith("\\"):
        raise UnsafeRequestError(f"scheme-relative URL {target[:80]!r} refused")
    if base_length + 1 + len(target) > _MAX_URL_LENGTH:
        raise UnsafeRequestError(f"URL {target[:80]!r}… is longer than {_MAX_URL_LENGTH}")


class BaseUrl:
    """An https base URL (``DAEMON_API_BASE_URL``: Graph v1.0 in its cloud, or the sandbox)
    and the rules around it."""

    def __init__(self, base_url: str) -> None:
        _check_text(base_url)
        url = httpx.URL(base_url)
        if url.scheme.lower() != "https" or not url.host:
            raise UnsafeRequestError(
                f"base URL {base_url!r} must be an absolute https URL "
                "(e.g. https://graph.microsoft.com/v1.0)"
            )
        if url.query or url.fragment or url.userinfo:
            raise UnsafeRequestError(
                f"base URL {base_url!r} must not carry a query, fragment or credentials"
            )
        self.url = url
        self.text = str(url).rstrip("/")
        self.path = url.path.rstrip("/")
        self.origin = _origin(url)

    def __repr__(self) -> str:
        return f"BaseUrl({self.text!r})"

    def same_origin(self, url: httpx.URL) -> bool:
        return _origin(url) == self.origin

    def resolve(self, target: str) -> httpx.URL:
        """The absolute URL for ``target`` (relative path or same-origin absolute URL).

        Raises UnsafeRequestError for another scheme, host or port, scheme-relative
        ``//host`` forms and control characters.
        """
        if _is_relative(target):
            _check_relative(target, len(self.text))
            return httpx.URL(self.text + "/" + target.lstrip("/"))
        _check_text(target)
        url = httpx.URL(target)
        if not self.same_origin(url):
            raise UnsafeRequestError(
                f"refused to send the token to {url.scheme}://{url.host}"
                + (f":{url.port}" if url.port else "")
                + f": only {self.origin[0]}://{self.origin[1]}:{self.origin[2]} is allowed"
            )
        return url

    def relative(self, target: str) -> str:
        """``target`` as a path relative to the base URL (``/users?...``), as $batch wants.

        Same-origin absolute URLs below the base path are made relative; anything else that
        is absolute raises UnsafeRequestError.
        """
        if _is_relative(target):
            # The common case (every operation is checked before its run starts): the same
            # checks as resolve() without building an httpx.URL, which cost ~20 µs each.
            _check_relative(target, len(self.text))
            return "/" + target.lstrip("/")
        url = self.resolve(target)
        raw = url.raw_path.decode("ascii")
        prefix = self.path + "/"
        if not raw.startswith(prefix):
            raise UnsafeRequestError(
                f"URL {target[:80]!r} is outside the base URL {self.text!r}; "
                "batch URLs must be relative to it"
            )
        return "/" + raw[len(prefix) :]


# Characters a path segment may carry unescaped (RFC 3986 pchar): a userPrincipalName such as
# ``ada@contoso.com`` stays readable, a guest's ``#EXT#`` is escaped.
_SEGMENT_SAFE = "@.-_~!$&'()*+,;=:"


def _object_url(base: BaseUrl | str, collection: str, object_id: str) -> str:
    root = base if isinstance(base, BaseUrl) else BaseUrl(base)
    if not isinstance(object_id, str) or not object_id.strip():
        raise UnsafeRequestError(f"{collection} reference: the object id is missing")
    if "/" in object_id or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in object_id):
        raise UnsafeRequestError(
            f"{collection} reference: object id {object_id[:80]!r} contains '/' or control "
            "characters"
        )
    return f"{root.text}/{collection}/{quote(object_id, safe=_SEGMENT_SAFE)}"


def directory_object_url(base: BaseUrl | str, object_id: str) -> str:
    """``{base}/directoryObjects/{id}``: the ``@odata.id`` of a member reference
    (``POST /groups/{id}/members/$ref``, ``members@odata.bind``), built from the configured
    API base so national clouds (``https://graph.microsoft.us/v1.0``…) work. Graph wants the
    reference on its own host and version:
    https://learn.microsoft.com/graph/api/group-post-members"""
    return _object_url(base, "directoryObjects", object_id)


def user_url(base: BaseUrl | str, id_or_upn: str) -> str:
    """``{base}/users/{id or userPrincipalName}`` (a reference to a user)."""
    return _object_url(base, "users", id_or_upn)


def group_url(base: BaseUrl | str, group_id: str) -> str:
    """``{base}/groups/{id}`` (a reference to a group)."""
    return _object_url(base, "groups", group_id)
