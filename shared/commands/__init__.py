"""The subcommands of ``python -m shared`` that are more than a call (:mod:`shared.cli`
parses the command line and dispatches):

- ``enqueue``: validate a job message and send it to the jobs queue;
- ``requeue``: ``requeue-poison``, move poison messages back after a fix;
- ``dev_storage``: ``--azurite``, a development option that needs a clone of the repo.

Nothing is imported here: each command imports what it needs when it runs.
"""

from __future__ import annotations

__all__ = ["dev_storage", "enqueue", "requeue"]
