"""The batch engine: any number of operations in, exactly one final Result per operation out.

Modules, one concern each:

- ``run``: :class:`BatchEngine` and the run loop (launching, sending, whole-batch failures);
- ``scheduler``: the ready queue (dependencies honoured by the engine, linear cost);
- ``batches``: building fully parallel ``$batch`` payloads and parsing their answers;
- ``coalesce``: member adds to one group coalesced into one ``members@odata.bind`` write;
- ``settle``: the outcome rules (retries, failures, cascades, replication delay);
- ``readback``: idempotent creates (a conflict is read back and matched);
- ``rules``: Graph's answers classified (conflict, "already exist", "does not exist",
  transient, 429 waits, throttling headers);
- ``state``, ``report``: bookkeeping and what a run hands back.
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
