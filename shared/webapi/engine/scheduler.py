"""Which operations go out next, at a cost linear in the number of operations.

An operation enters the ready queue once every operation it depends on has succeeded (the
run counts down ``Op.waiting``), keyed by (not before, input position). Operations become
ready in time order, so most pushes append to a FIFO (O(1)); a push that would break its
order (a retry due later than what follows) goes to a heap; a pop takes the earlier of the
two heads. A launch touches only what is due and never scans the pending operations.

Coalescable member adds are also listed per group, so a bind for a group collects that
group's due adds from anywhere in the queue, not only those next to each other. An entry
taken through one structure is skipped lazily in the others (``Op.queued`` names the live
entry); so are operations settled while queued (a cascade).
"""

from __future__ import annotations

import heapq
from collections import deque

from shared.webapi.engine.coalesce import MAX_MEMBERS_PER_BIND
from shared.webapi.engine.state import Item, Kind, Op, Phase

__all__ = ["ReadyQueue", "fill"]

_Entry = tuple[float, int, int, Op]  # (not_before, input index, sequence, op)
_SCAN = 4 * MAX_MEMBERS_PER_BIND  # entries of a group's list looked at per bind


class ReadyQueue:
    """Ready operations keyed by (not_before, input index), with per-group member adds."""

    def __init__(self, *, coalesce: bool = True) -> None:
        self.coalesce = coalesce
        self._fifo: deque[_Entry] = deque()
        self._heap: list[_Entry] = []
        self._groups: dict[str, deque[tuple[int, Op]]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._fifo) + len(self._heap)

    def group_of(self, op: Op) -> str | None:
        """The group whose bind ``op`` may join now, or None."""
        if (
            self.coalesce
            and op.member is not None
            and op.phase is Phase.SEND
            and not op.solo
            and not op.isolate
        ):
            return op.member[0]
        return None

    def push(self, op: Op) -> None:
        self._seq += 1
        op.queued = self._seq
        entry = (op.not_before, op.index, self._seq, op)
        fifo = self._fifo
        if not fifo or entry[:2] >= fifo[-1][:2]:
            fifo.append(entry)
        else:
            heapq.heappush(self._heap, entry)
        group = self.group_of(op)
        if group is not None:
            self._groups.setdefault(group, deque()).append((self._seq, op))

    @staticmethod
    def _live(seq: int, op: Op) -> bool:
        return op.queued == seq and op.final is None

    def _head(self) -> _Entry | None:
        fifo, heap = self._fifo, self._heap
        while fifo and not self._live(fifo[0][2], fifo[0][3]):
            fifo.popleft()
        while heap and not self._live(heap[0][2], heap[0][3]):
            heapq.heappop(heap)
        if fifo and heap:
            return fifo[0] if fifo[0][:2] <= heap[0][:2] else heap[0]
        if fifo:
            return fifo[0]
        return heap[0] if heap else None

    def next_due(self) -> float | None:
        """When the earliest queued operation may go, or None when the queue is empty."""
        head = self._head()
        return head[0] if head is not None else None

    def peek_due(self, now: float) -> Op | None:
        head = self._head()
        if head is None or head[0] > now:
            return None
        return head[3]

    def pop(self) -> Op:
        head = self._head()
        assert head is not None
        if self._fifo and self._fifo[0] is head:
            self._fifo.popleft()
        else:
            heapq.heappop(self._heap)
        op = head[3]
        op.queued = 0
        return op

    def take_group(self, group: str, now: float, room: int, refs: set[str]) -> list[Op]:
        """Up to ``room`` due member adds to ``group`` whose references are not in ``refs``
        (taken out of the queue; ``refs`` is updated)."""
        pending = self._groups.get(group)
        if not pending:
            return []
        taken: list[Op] = []
        keep: list[tuple[int, Op]] = []
        scanned = 0
        while pending and len(taken) < room and scanned < _SCAN:
            seq, op = pending.popleft()
            if not self._live(seq, op) or self.group_of(op) != group:
                continue
            scanned += 1
            assert op.member is not None
            if op.not_before > now or op.member[1] in refs:
                keep.append((seq, op))
                continue
            op.queued = 0
            refs.add(op.member[1])
            taken.append(op)
        pending.extendleft(reversed(keep))
        if not pending:
            del self._groups[group]
        return taken


def fill(queue: ReadyQueue, now: float, size: int) -> list[Item]:
    """Pop the due operations for one batch: at most ``size`` items.

    A member add opens a bind for its group that collects the group's other due adds (up
    to 20 references, each once) as one item. An isolated operation (its batch was refused
    as a whole) travels alone.
    """
    items: list[Item] = []
    binds: dict[str, Item] = {}
    while True:
        op = queue.peek_due(now)
        if op is None:
            break
        if op.isolate:
            if items:
                break
            queue.pop()
            return [Item(Kind.READBACK if op.phase is Phase.READBACK else Kind.SINGLE, [op])]
        group = queue.group_of(op)
        if group is not None:
            assert op.member is not None
            bind = binds.get(group)
            if (
                bind is not None
                and len(bind.ops) < MAX_MEMBERS_PER_BIND
                and op.member[1] not in bind.refs
            ):
                queue.pop()
                bind.ops.append(op)
                bind.refs.add(op.member[1])
                continue
        if len(items) >= size:
            break
        queue.pop()
        if group is not None:
            item = Item(Kind.MEMBERS, [op], group)
            item.ops += queue.take_group(group, now, MAX_MEMBERS_PER_BIND - 1, item.refs)
            binds[group] = item
        elif op.phase is Phase.READBACK:
            item = Item(Kind.READBACK, [op])
        else:
            item = Item(Kind.SINGLE, [op])
        items.append(item)
    return items
