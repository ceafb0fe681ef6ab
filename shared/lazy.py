"""Package faces that import their submodules on first use (PEP 562).

A package lists each name it exports with the submodule that defines it and sets
``__getattr__ = lazy_attributes(__name__, where)``: ``import shared.host`` then costs
nothing, and ``shared.host.FunctionsHost`` imports ``shared.host.host`` when first read.
The packages on the cold path of a function invocation use it, so that importing one small
part (a schedule parser, the error codes) does not pay for the SDKs behind the rest.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing on the cold path
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``where`` maps each exported name to the
    submodule (relative to ``package``) that defines it."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{module}"), name)

    return __getattr__
