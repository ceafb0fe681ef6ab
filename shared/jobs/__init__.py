"""The jobs: queue messages planned into API operations, applied by the batch engine.

A message (``envelope.py``) names a job (``registry.py``): ``provision`` (joiners, movers,
leavers: the ``provision`` package) or ``operations`` (allow-listed raw operations:
``operations.py``). The queue entry point (``dispatch.py``, with the outcome table) runs it
through ``run.py`` under the attempt ledger's decisions (``deliveries.py``) and records it
(``records.py``). The sweep timer (``sweep_timer.py``) plans the leaver policy
(``sweep.py``) and fans it out as provision messages. A job is given a narrow
:class:`JobContext` (``context.py``), never the function instance; ``services.py`` builds it.

To add a job: a class with ``name`` and ``async def plan(self, ctx: JobContext) -> Plan``
(:class:`Job` in ``base.py``) in a module of its own, listed in ``registry.py``.
"""

from __future__ import annotations

from shared.lazy import lazy_attributes

# Imported on first use (PEP 562): ``shared.jobs.envelope`` is imported on light paths (the
# CLI's enqueue, the demo) that must not pay for the engine and the state store.
_WHERE = {
    "Job": "base",
    "Plan": "base",
    "RunStatus": "base",
    "RunSummary": "base",
    "DoneLedger": "context",
    "JobContext": "context",
    "JobSettings": "context",
    "handle_queue_message": "dispatch",
    "JobMessage": "envelope",
    "parse_message": "envelope",
    "OperationsJob": "operations",
    "ProvisionJob": "provision",
    "JOBS": "registry",
    "run_job": "run",
    "JobServices": "services",
    "job_context": "services",
    "SweepPlan": "sweep",
    "plan_sweep": "sweep",
    "SweepResult": "sweep_timer",
    "run_sweep_timer": "sweep_timer",
}


__getattr__ = lazy_attributes(__name__, _WHERE)


__all__ = [
    "JOBS",
    "DoneLedger",
    "Job",
    "JobContext",
    "JobMessage",
    "JobServices",
    "JobSettings",
    "OperationsJob",
    "Plan",
    "ProvisionJob",
    "RunStatus",
    "RunSummary",
    "SweepPlan",
    "SweepResult",
    "handle_queue_message",
    "job_context",
    "parse_message",
    "plan_sweep",
    "run_job",
    "run_sweep_timer",
]
