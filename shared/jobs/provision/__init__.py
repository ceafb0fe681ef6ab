"""``provision``: joiners, movers and leavers.

Payload::

    {"joiners": [{"employeeId": "E1", "givenName": "Ada", "surname": "Lovelace",
                  "department": "R&D", "jobTitle": "Engineer", "groups": ["<group id>"]}],
     "movers":  [{"employeeId": "E2", "department": "Sales", "groups": [...],
                  "removeGroups": [...]}],
     "leavers": [{"employeeId": "E3"} | {"id": "<user object id>"}]}

A run has three steps, each a named function in a module of its own (the job,
:class:`ProvisionJob` in ``job.py``, chains them):

1. :func:`validate_payload` (``people.py``) checks every person on its own (types,
   characters, Graph's length limits, group ids); a bad person becomes a *problem* naming
   the person and the field, and everyone else goes on.
2. :func:`read_current_state` (``state.py``) reads each person's account(s) from the
   directory. A read that failed (5xx, transport, throttled past the bound, token or
   permission) raises :class:`RetryableJobError`: nothing is applied and the message is
   redelivered. A 404 or an empty result is an answer ("no such user"), not a failure.
3. :func:`plan_person` (``planners.py``: :func:`plan_joiner`, :func:`plan_mover`,
   :func:`plan_leaver`) turns a person and the state read into operations — pure
   functions, no I/O.

Redelivery changes nothing: the plan compares with the directory's state, the way Graph
stores values (an empty optional attribute means "clear it" and is stored as null; an empty
``displayName`` is refused, as Graph refuses it), a joiner that exists is treated as a
mover, a disabled and signed-out leaver is skipped, a member already in a group is not added
again.

Identity rules:

- ``employeeId`` is compared case-insensitively, as the directory's ``$filter`` does.
- The userPrincipalName is ``given.surname.<employee id>@DAEMON_USER_DOMAIN`` where the last
  segment encodes the (case-folded) employee id injectively: letters and digits as they
  are, ``-`` kept, ``_`` → ``_u``, ``.`` → ``_d``. Two employee ids never give the same UPN
  ("FZ-77" → ``…​.fz-77@``, "fz77" → ``…​.fz77@``). Before a create the UPN itself is read: an
  account holding it with another employeeId is a problem for that joiner (never a silent
  failure), one with the same employeeId is that joiner (a lagging ``$filter`` index).
- Every account matching a leaver's employeeId is disabled and signed out; more than one
  account matching a joiner's or mover's employeeId is a problem (which one to change is
  ambiguous).
"""

from __future__ import annotations

from shared.jobs.provision.job import ProvisionJob, plan_people, remember_revocations, validate
from shared.jobs.provision.people import (
    ATTRIBUTE_LIMITS,
    ATTRIBUTES,
    Person,
    Validated,
    user_principal_name,
    validate_payload,
    validate_person,
)
from shared.jobs.provision.planners import (
    PersonPlan,
    merge,
    plan_joiner,
    plan_leaver,
    plan_mover,
    plan_person,
)
from shared.jobs.provision.state import (
    EXPAND_LIMIT,
    CurrentState,
    interpret_reads,
    read_current_state,
    read_operations,
)

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_LIMITS",
    "EXPAND_LIMIT",
    "CurrentState",
    "Person",
    "PersonPlan",
    "ProvisionJob",
    "Validated",
    "interpret_reads",
    "merge",
    "plan_joiner",
    "plan_leaver",
    "plan_mover",
    "plan_people",
    "plan_person",
    "read_current_state",
    "read_operations",
    "remember_revocations",
    "user_principal_name",
    "validate",
    "validate_payload",
    "validate_person",
]
