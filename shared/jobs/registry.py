"""The jobs a queue message may name: ``{"job": "<name>", ...}`` → the job that plans it.

To add a job: write a class with a ``name`` and ``async def plan(self, ctx: JobContext) ->
Plan`` (see :class:`shared.jobs.base.Job`), in a module of its own, and list it here.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.jobs.base import Job
from shared.jobs.operations import OperationsJob
from shared.jobs.provision import ProvisionJob

__all__ = ["JOBS"]

JOBS: Mapping[str, Job] = {job.name: job for job in (ProvisionJob(), OperationsJob())}
