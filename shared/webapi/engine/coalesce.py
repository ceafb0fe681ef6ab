"""Member adds coalesced: many ``POST /groups/{id}/members/$ref`` become one write.

Graph adds up to 20 members in one ``PATCH /groups/{id}`` with
``{"members@odata.bind": [url, ...]}`` (https://learn.microsoft.com/graph/api/group-update,
example "Add multiple members to a group in a single request"). That is one write against
the tenant's write budget instead of up to 20, so joiners and movers go through the budget
up to 20× faster for their group adds.

Rules:

- Coalescable: ``POST /groups/{id}/members/$ref`` (no query) whose body is exactly
  ``{"@odata.id": url}``, with no header other than a JSON Content-Type, no
  CreateIdentity and no explicit ``idempotent``. Those that are ready at the same time and
  target the same group share one PATCH (at most 20 references, each once); each keeps its
  own Result.
- The PATCH is all-or-nothing. On 400 "already exist" (one reference is a member already),
  a missing reference ("does not exist", 404) or any other 400 (a malformed reference) the
  engine falls back to one ``POST …/$ref`` per member for that group's operations to find
  which one: there an "already exist" answer means done and a bad reference fails only its
  own operation. Other refusals (403…) apply to every member alike and fail them all.
- Replication delay: when every reference (or the group) was created earlier in the same
  run, a "does not exist" answer is first retried as a whole, with backoff, within the
  engine's replication bound; only then does it fall back to one by one.
- A refused PATCH does not count as an attempt of its operations; a 429 or 5xx retries them
  (coalesced again with whatever is ready then): a member add is safe to resend.

Where it sits: :func:`member_add` marks each operation when the run starts (``run.py``);
the scheduler (``scheduler.py``) builds the binds; ``bind.py`` settles their answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from shared.webapi.operations import Prepared

__all__ = ["MAX_MEMBERS_PER_BIND", "member_add"]

MAX_MEMBERS_PER_BIND = 20


def _json_headers_only(headers: Mapping[str, str]) -> bool:
    for key, value in headers.items():
        if key.lower() != "content-type" or "json" not in value.split(";", 1)[0].lower():
            return False
    return True


def member_add(prep: Prepared) -> tuple[str, str] | None:
    """(group id, ``@odata.id``) when ``prep`` is a coalescable member add, else None."""
    op = prep.op
    if prep.method != "POST" or op.idempotency is not None or op.idempotent is not None:
        return None
    parts = urlsplit(prep.url)
    if parts.query or parts.fragment:
        return None
    segments = parts.path.strip("/").split("/")
    if len(segments) != 4 or segments[0].lower() != "groups" or segments[2:] != ["members", "$ref"]:
        return None
    if not segments[1]:
        return None
    body = op.body
    if not isinstance(body, Mapping) or set(body) != {"@odata.id"}:
        return None
    ref = body["@odata.id"]
    if not isinstance(ref, str) or not ref:
        return None
    if not _json_headers_only(op.headers):
        return None
    return segments[1], ref
