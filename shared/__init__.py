"""The daemon's product package (the Functions app layout names it ``shared/``).

Import the subpackage you need; nothing is loaded here, so ``function_app.py`` stays cheap to
index. The layers and where each concept lives: ``docs/architecture.md``.
"""

__all__: list[str] = []
