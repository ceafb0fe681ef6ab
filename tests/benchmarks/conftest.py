"""matplotlib builds its font cache on first import, listing the system's fonts with
``fc-list`` in a subprocess; do that once per session, before the unit-test guard (which
refuses subprocesses inside a unit test) is in place."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def matplotlib_font_cache() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager

    assert font_manager.fontManager.ttflist  # the cache is built (and was non-empty)
