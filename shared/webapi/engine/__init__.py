"""The batch engine: any number of operations in, exactly one final Result per operation out.

Modules, one concern each, in the order an operation meets them:

- ``run``: :class:`BatchEngine` and the run loop (validating, launching, waiting, the final
  report);
- ``scheduler``: the ready queue (dependencies honoured by the engine, linear cost);
- ``coalesce``: which member adds to one group may share one ``members@odata.bind`` write;
- ``send``: one batch (or one direct request) paced, counted and sent;
- ``batches``: building fully parallel ``$batch`` payloads and parsing their answers;
- ``batch_answer``: a batch's answer turned into per-item decisions (the envelope, missing
  and throttled items, the throttling headers);
- ``verdicts``: the outcome rules, pure — one answer → what happens next;
- ``settle``: :class:`~shared.webapi.engine.settle.Settler`, the operations' final
  results, retries, cascades, and the answers to an operation's own request;
- ``bind``: a coalesced bind's answer, and the fallback to one add per member;
- ``readback``: idempotent creates (a conflict is read back and matched);
- ``replication``: objects created in this run, and the replication-delay retry;
- ``rules``: Graph's answers classified (conflict, "already exist", "does not exist",
  transient, 429 waits, throttling headers);
- ``state``, ``report``: bookkeeping and what a run hands back.

The public names are below; the modules' own names are for the engine and its tests.
"""

from __future__ import annotations

from shared.webapi.engine.report import EngineReport, EngineStats, Progress, ProgressCallback
from shared.webapi.engine.run import DEFAULT_REPLICATION_SECONDS, BatchEngine

__all__ = [
    "DEFAULT_REPLICATION_SECONDS",
    "BatchEngine",
    "EngineReport",
    "EngineStats",
    "Progress",
    "ProgressCallback",
]
