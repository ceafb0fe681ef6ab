"""Idempotent creates: a create conflict is resolved by reading the object back.

A POST create that answers "already exists" (ObjectConflict) may have been made by an
earlier attempt whose answer was lost, by a 429'd attempt that Graph applied anyway, or by
another run creating the same object at the same moment. So a conflict is **always** read
back (also on a first attempt): the operation's :class:`CreateIdentity` names a GET and the
attribute to match. Exactly one match → the object exists, the create counts as done
(``resolved_conflict``); none → the conflict is with another object, a permanent failure —
but only once the read-back still finds nothing after the replication bound (a new object
may not be readable by ``$filter`` for a while, "Designing for Eventual Consistency for
Microsoft Entra":
https://devblogs.microsoft.com/identity/designing-for-eventual-consistency-for-microsoft-entra);
several → ambiguous, a failure naming the count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.webapi.operations import CreateIdentity

__all__ = ["matches"]


def matches(ident: CreateIdentity, found: Any) -> list[Mapping[str, Any]]:
    """The objects in a read-back answer (one object, or a collection's ``value``) whose
    identity attribute equals the expected value."""
    candidates = (
        found["value"]
        if isinstance(found, Mapping) and isinstance(found.get("value"), list)
        else [found]
    )
    return [c for c in candidates if isinstance(c, Mapping) and ident.matches(c)]
