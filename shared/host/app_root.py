"""Where the runner's caller finds the app: the Functions app root, its ``host.json`` and
its ``function_app`` module.

The app root is the folder with ``function_app.py`` and ``host.json`` (the layout the
Python v2 programming model deploys:
https://learn.microsoft.com/azure/azure-functions/functions-reference-python#folder-structure).
It is, first that is given: the ``--app-root`` option; the ``AzureWebJobsScriptRoot``
setting, which the Functions host reads for the same folder
(https://learn.microsoft.com/azure/azure-functions/functions-app-settings#azurewebjobsscriptroot);
the current directory. Only the command lines use this module: the runner itself is given
the app object and the host.json path.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ConfigurationError

__all__ = ["DEFAULT_APP", "HELP", "SCRIPT_ROOT_SETTING", "AppRoot", "find_app_root", "load_app"]

SCRIPT_ROOT_SETTING = "AzureWebJobsScriptRoot"
DEFAULT_APP = "function_app:app"
HELP = (
    "the Functions app root: the folder with function_app.py and host.json (default: the "
    f"{SCRIPT_ROOT_SETTING} setting if set, else the current directory)"
)


@dataclass(frozen=True)
class AppRoot:
    """The app root and how it was chosen (for error messages)."""

    path: Path
    source: str

    @property
    def host_json(self) -> Path:
        return self.path / "host.json"


def find_app_root(
    option: Path | None, env: Mapping[str, str], *, cwd: Path | None = None
) -> AppRoot:
    """The app root from ``--app-root``, else ``AzureWebJobsScriptRoot``, else ``cwd``."""
    setting = (env.get(SCRIPT_ROOT_SETTING) or "").strip()
    if option is not None:
        root = AppRoot(option, "--app-root")
    elif setting:
        root = AppRoot(Path(setting), SCRIPT_ROOT_SETTING)
    else:
        root = AppRoot(cwd or Path.cwd(), "the current directory")
    if not root.path.is_dir():
        raise ConfigurationError(f"{root.source} {root.path}: no such directory")
    return AppRoot(root.path.resolve(), root.source)


def _import_problem(module_name: str, root: AppRoot, exc: ImportError) -> str:
    missing = exc.name or ""
    if missing == module_name or module_name.startswith(missing + "."):
        return (
            f"cannot import {module_name}: there is no {module_name} in {root.path} "
            f"({root.source}). Run from the Functions app root (the folder with "
            f"function_app.py and host.json), pass --app-root DIR or set {SCRIPT_ROOT_SETTING}"
        )
    return f"importing {module_name} from {root.path} failed: {exc}"


def load_app(spec: str, root: AppRoot) -> Any:
    """Import ``module:attribute`` (attribute default ``app``) with the app root first on
    ``sys.path``, as the worker imports ``function_app`` from the script root."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    if str(root.path) not in sys.path:
        sys.path.insert(0, str(root.path))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        problem = _import_problem(module_name, root, exc)
        raise ConfigurationError(f"--app {spec}: {problem}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise ConfigurationError(
            f"--app {spec}: module {module_name} has no attribute {attribute!r}"
        ) from exc
