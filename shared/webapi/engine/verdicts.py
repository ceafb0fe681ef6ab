"""The engine's outcome rules, pure: one answer → a verdict naming what happens next.

Each function looks at one answer (its status and body, plus the few facts about the
operation the rule needs) and returns a verdict; the modules that act on them own the
side effects (``batch_answer.py`` for a batch's envelope, ``settle.py`` for an operation's
own request, ``bind.py`` for a coalesced member bind, ``readback.py`` for the read-back of
a create conflict). The rules:

- 2xx → succeeded; its dependants become ready.
- 429 → retried after Retry-After (never earlier), not counted as an attempt (time-bound).
  A 429 inside a batch does not prove the write was not applied, so what is resent must be
  idempotent: a member add's "already exist" and a DELETE's 404 then mean done, a create's
  conflict is read back. A POST without CreateIdentity is resent too (Graph documents a 429
  as not processed; such POSTs are not planned by the jobs).
- 500/502/503/504 → retried when the request is safe to resend, else reported failed with
  ``outcome_unknown`` (a POST without CreateIdentity may have been applied).
- Member add "already exist" → succeeded (``resolved_conflict``); a DELETE answered 404
  after an earlier send whose outcome was unknown (or was 429'd: Graph may have applied it)
  → succeeded.
- A create conflict with a CreateIdentity → read back (``readback.py``).
- "Does not exist" for an operation that touches an object created earlier in this run (it
  depends on a POST that succeeded, or its URL or reference names a created object) →
  retried with backoff within ``replication_seconds`` (``replication.py``), then failed
  with the API's error.
- Anything else → failed with the API's error. A failure fails every operation that
  depends on it (status 424, code ``failedDependency``, naming the root and its error); a
  give-up makes them give up the same way (they may all succeed on a later run).
"""

from __future__ import annotations

import enum
from typing import Any

from shared.webapi.engine.rules import (
    TRANSIENT_5XX,
    does_not_exist,
    is_conflict,
    references_exist,
)

__all__ = [
    "Bind",
    "Envelope",
    "ReadBack",
    "Single",
    "bind_verdict",
    "envelope_verdict",
    "readback_verdict",
    "single_verdict",
]


def _ok(status: int) -> bool:
    return 200 <= status < 300


class Envelope(enum.Enum):
    """What a ``$batch`` envelope's status means for every operation inside it."""

    ANSWERED = "answered"  # 200: each item carries its own answer
    THROTTLED = "throttled"  # 429: refused as a whole, nothing applied; all retried later
    LOST = "lost"  # 5xx: outcome unknown; resent when safe
    REFUSED = "refused"  # 401/403, or a batch of isolated requests: they all fail
    ISOLATE = "isolate"  # any other status: each request resent alone to find the culprit


def envelope_verdict(status: int, *, all_isolated: bool) -> Envelope:
    """The verdict on a batch answered ``status``; ``all_isolated``: every operation in it
    was already being sent alone (so nothing is left to isolate)."""
    if status == 429:
        return Envelope.THROTTLED
    if status == 200:
        return Envelope.ANSWERED
    if status >= 500:
        return Envelope.LOST
    if status in (401, 403) or all_isolated:
        return Envelope.REFUSED
    return Envelope.ISOLATE


class Single(enum.Enum):
    """What a non-429 answer to an operation's own request means."""

    SUCCEEDED = "succeeded"
    RESEND = "resend"  # 424: never asked for (no dependsOn is sent), just try again
    TRANSIENT = "transient"  # 5xx: retried when safe to resend, else outcome unknown
    ALREADY_MEMBER = "already_member"  # "added object references already exist": done
    DELETED_EARLIER = "deleted_earlier"  # 404 to a DELETE that may have been applied: done
    READ_BACK = "read_back"  # a create conflict with a CreateIdentity: read the object back
    NOT_FOUND = "not_found"  # retried while replicating when eligible, else failed
    FAILED = "failed"


def single_verdict(
    status: int, body: Any, *, method: str, maybe_applied: bool, has_identity: bool
) -> Single:
    """The verdict on an operation's own request answered ``status`` (not 429).
    ``maybe_applied``: an earlier send's outcome was unknown or 429'd; ``has_identity``:
    the operation carries a CreateIdentity."""
    if _ok(status):
        return Single.SUCCEEDED
    if status == 424:
        return Single.RESEND
    if status in TRANSIENT_5XX:
        return Single.TRANSIENT
    if references_exist(status, body):
        return Single.ALREADY_MEMBER
    if status == 404 and method == "DELETE" and maybe_applied:
        return Single.DELETED_EARLIER
    if has_identity and is_conflict(status, body):
        return Single.READ_BACK
    if does_not_exist(status, body):
        return Single.NOT_FOUND
    return Single.FAILED


class Bind(enum.Enum):
    """What a non-429 answer to a coalesced ``members@odata.bind`` PATCH means."""

    SUCCEEDED = "succeeded"  # every member added
    RETRY = "retry"  # 5xx or 424: resent (a member add is safe to resend)
    NOT_FOUND = "not_found"  # retried while replicating when eligible, else FALL_BACK
    FALL_BACK = "fall_back"  # 400/404: one add per member finds the one refused
    FAILED = "failed"  # any other refusal (403…) applies to every member alike


def bind_verdict(status: int, body: Any) -> Bind:
    """The verdict on a coalesced bind answered ``status`` (not 429)."""
    if _ok(status):
        return Bind.SUCCEEDED
    if status in TRANSIENT_5XX or status == 424:
        return Bind.RETRY
    if does_not_exist(status, body) and not references_exist(status, body):
        return Bind.NOT_FOUND
    if status in (400, 404):
        return Bind.FALL_BACK
    return Bind.FAILED


class ReadBack(enum.Enum):
    """What a non-429 answer to the read-back GET of a create conflict means."""

    RESOLVED = "resolved"  # exactly one object matches: the create is done
    NO_MATCH = "no_match"  # none yet: retried while replicating, else the conflict fails
    SEVERAL = "several"  # ambiguous: the conflict fails, naming the count
    RETRY = "retry"  # 5xx: read back again
    NOT_FOUND = "not_found"  # retried while replicating, else failed
    FAILED = "failed"


def readback_verdict(status: int, body: Any, matched: int) -> ReadBack:
    """The verdict on a read-back answered ``status`` (not 429) in which ``matched``
    objects carry the expected identity (0 unless ``status`` is 2xx)."""
    if _ok(status):
        if matched == 1:
            return ReadBack.RESOLVED
        return ReadBack.NO_MATCH if matched == 0 else ReadBack.SEVERAL
    if status in TRANSIENT_5XX:
        return ReadBack.RETRY
    if does_not_exist(status, body):
        return ReadBack.NOT_FOUND
    return ReadBack.FAILED
