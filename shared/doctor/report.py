"""What ``doctor`` reports: one :class:`Check` per line, passed or FAILED, in a :class:`Report`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Check", "Report"]


@dataclass
class Check:
    """One check: its verdict, one line of detail, the fix when it failed, warnings (which
    never fail it) and non-secret data for ``--json``."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warnings: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}

    def render(self) -> str:
        lines = []
        for check in self.checks:
            lines.append(f"[{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
            lines.extend(f"       warning: {warning}" for warning in check.warnings)
            if check.fix:
                lines.append(f"       fix: {check.fix}")
        lines.append("doctor: all checks passed" if self.ok else "doctor: some checks failed")
        return "\n".join(lines)
