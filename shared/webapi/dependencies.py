"""``depends_on`` across a whole run: unknown ids, cycles, and failures that spread.

Operations name the operations they depend on; the batch engine sends one only after all of
those succeeded. Before anything is sent, :func:`check_dependencies` fails an operation that
names an unknown id or sits on a cycle, and :func:`fail_dependants` fails every operation that
depends (directly or not) on a failed one, naming it.

The graph is plain data: operation id → (input index, …) for the operations seen, id → the ids
it depends on, and {input index: error message} for the failures so far.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["check_dependencies", "fail_dependants"]

Indexed = Mapping[str, tuple[int, str, str]]
"""Operation id → (input index, method, relative url)."""


def _in_cycle(node: str, graph: Mapping[str, Sequence[str]], allowed: set[str]) -> bool:
    """Whether ``node`` reaches itself following depends_on through ``allowed`` ids only."""
    stack = [d for d in graph.get(node, ()) if d in allowed]
    seen: set[str] = set()
    while stack:
        cur = stack.pop()
        if cur == node:
            return True
        if cur in seen:
            continue
        seen.add(cur)
        stack.extend(d for d in graph.get(cur, ()) if d in allowed)
    return False


def _by_index(ids: Iterable[str], checked: Indexed) -> list[str]:
    """``ids`` in input order (errors are found, and reported, in that order)."""
    return sorted(ids, key=lambda i: checked[i][0])


def check_dependencies(
    checked: Indexed, graph: Mapping[str, Sequence[str]], errors: dict[int, str]
) -> None:
    """Among the operations still valid: unknown ids in depends_on, then cycles."""
    ids_ok = {i for i, (idx, _, _) in checked.items() if idx not in errors}
    for op_id in _by_index(ids_ok, checked):
        unknown = [d for d in graph[op_id] if d not in checked]
        if unknown:
            errors[checked[op_id][0]] = (
                f"operation {op_id!r}: depends_on names unknown operation(s) "
                + ", ".join(repr(u) for u in unknown)
            )
    valid = {i for i in ids_ok if checked[i][0] not in errors}
    for op_id in _by_index(valid, checked):
        if _in_cycle(op_id, graph, valid):
            errors[checked[op_id][0]] = f"operation {op_id!r}: depends_on forms a cycle"


def fail_dependants(
    checked: Indexed, graph: Mapping[str, Sequence[str]], errors: dict[int, str]
) -> None:
    """Dependants of failed operations fail too, naming the dependency (to a fixed point)."""
    changed = True
    while changed:
        changed = False
        for op_id in _by_index(checked, checked):
            idx = checked[op_id][0]
            if idx in errors:
                continue
            bad = [d for d in graph[op_id] if checked[d][0] in errors]
            if bad:
                errors[idx] = (
                    f"operation {op_id!r}: depends on {bad[0]!r}, which is invalid and was not sent"
                )
                changed = True
