"""``python -m shared.host``: the runner's command line (:mod:`shared.host.cli`)."""

from __future__ import annotations

import sys

from shared.host.cli import main, redact

__all__ = ["main", "redact"]

if __name__ == "__main__":
    sys.exit(main())
