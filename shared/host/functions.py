"""The app's functions as the host sees them: name, trigger, output bindings, user code.

``FunctionApp.get_functions()`` may be called only once per app object, so the list is built
once per app and kept (weakly keyed by the app). Binding properties may use ``%AppSetting%``
expressions; they are resolved from the settings mapping, and an unset setting is a
:class:`~shared.errors.SettingError` naming it.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import BindingError, SettingError

__all__ = [
    "SUPPORTED_OUTPUTS",
    "SUPPORTED_TRIGGERS",
    "Binding",
    "BindingError",
    "FunctionSpec",
    "app_functions",
    "resolve_expressions",
    "resolve_functions",
]

SUPPORTED_TRIGGERS = frozenset({"timerTrigger", "queueTrigger"})
SUPPORTED_OUTPUTS = frozenset({"queue"})

_EXPRESSION = re.compile(r"%([^%]+)%")
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")
_POISON_SUFFIX = "-poison"

_cache: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = weakref.WeakKeyDictionary()


def app_functions(app: Any) -> tuple[Any, ...]:
    """``app.get_functions()``, called once per app object (a second call would raise)."""
    functions = _cache.get(app)
    if functions is None:
        root = logging.getLogger()
        root.addFilter(_drop_auth_level_notice)
        try:
            functions = tuple(app.get_functions())
        finally:
            root.removeFilter(_drop_auth_level_notice)
        _cache[app] = functions
    return functions


def _drop_auth_level_notice(record: logging.LogRecord) -> bool:
    """azure-functions warns on the root logger that an HTTP auth level does not apply to a
    non-HTTP app; it is noise for an app without HTTP functions."""
    return not str(record.msg).startswith("Auth level is not applied")


def resolve_expressions(
    value: str, env: Mapping[str, str], *, function: str, binding_property: str
) -> str:
    """Replace each ``%Name%`` in ``value`` by the app setting ``Name``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        setting = (env.get(name) or "").strip()
        if not setting:
            raise SettingError(
                name,
                f"is not set, but function {function}'s binding property "
                f"{binding_property} refers to it as %{name}%",
            )
        return setting

    return _EXPRESSION.sub(replace, value)


@dataclass(frozen=True)
class Binding:
    """One binding with its ``%Setting%`` expressions resolved."""

    name: str
    type: str
    direction: str
    properties: Mapping[str, Any] = field(default_factory=dict)

    @property
    def queue_name(self) -> str:
        return str(self.properties["queueName"])

    @property
    def connection(self) -> str:
        return str(self.properties.get("connection") or "AzureWebJobsStorage")


@dataclass(frozen=True)
class FunctionSpec:
    """A function the emulator can run."""

    name: str
    trigger: Binding
    outputs: tuple[Binding, ...]
    user_function: Callable[..., Any] = field(repr=False)
    wants_context: bool = False

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)

    @property
    def queue_name(self) -> str | None:
        return self.trigger.queue_name if self.trigger.type == "queueTrigger" else None


def _check_queue_name(function: str, prop: str, name: str, *, trigger: bool) -> None:
    if not _QUEUE_NAME.match(name):
        raise BindingError(
            f"function {function}: {prop} {name!r} is not a valid queue name (3-63 lowercase "
            "letters, digits and single hyphens, starting and ending with a letter or digit)"
        )
    if trigger and len(name) + len(_POISON_SUFFIX) > 63:
        raise BindingError(
            f"function {function}: {prop} {name!r} is too long for its poison queue "
            f"{name}{_POISON_SUFFIX!r} (63 characters at most)"
        )


def _spec(function: Any, env: Mapping[str, str]) -> FunctionSpec:
    name = str(function.get_function_name())
    document = json.loads(function.get_function_json())
    trigger: Binding | None = None
    outputs: list[Binding] = []
    for raw in document.get("bindings", []):
        kind = str(raw.get("type", ""))
        direction = str(raw.get("direction", "")).upper()
        binding_name = str(raw.get("name", ""))
        props: dict[str, Any] = {}
        for key, value in raw.items():
            if key in ("type", "direction", "name"):
                continue
            props[key] = (
                resolve_expressions(value, env, function=name, binding_property=key)
                if isinstance(value, str)
                else value
            )
        binding = Binding(binding_name, kind, direction, props)
        if kind.endswith("Trigger"):
            if kind not in SUPPORTED_TRIGGERS:
                raise BindingError(
                    f"function {name}: trigger type {kind} is not emulated (only "
                    f"{', '.join(sorted(SUPPORTED_TRIGGERS))})"
                )
            trigger = binding
            if kind == "queueTrigger":
                _check_queue_name(name, "queueName", binding.queue_name, trigger=True)
        elif direction == "OUT" and kind in SUPPORTED_OUTPUTS:
            _check_queue_name(name, "queueName", binding.queue_name, trigger=False)
            outputs.append(binding)
        else:
            raise BindingError(
                f"function {name}: binding {binding_name!r} of type {kind} ({direction}) is "
                f"not emulated (outputs: {', '.join(sorted(SUPPORTED_OUTPUTS))})"
            )
    if trigger is None:
        raise BindingError(f"function {name} has no trigger")
    user_function = function.get_user_function()
    bound = {trigger.name, *(b.name for b in outputs)}
    parameters = inspect.signature(user_function).parameters
    wants_context = "context" in parameters and "context" not in bound
    for parameter in parameters:
        if parameter not in bound and parameter != "context":
            raise BindingError(
                f"function {name}: parameter {parameter!r} matches no binding (the worker "
                "would refuse to index the app)"
            )
    for binding_name in bound - {"$return"}:
        if binding_name not in parameters:
            raise BindingError(
                f"function {name}: binding {binding_name!r} has no parameter of that name"
            )
    return FunctionSpec(
        name=name,
        trigger=trigger,
        outputs=tuple(outputs),
        user_function=user_function,
        wants_context=wants_context,
    )


def resolve_functions(functions: Sequence[Any], env: Mapping[str, str]) -> dict[str, FunctionSpec]:
    """Specs for ``functions`` (``azure.functions`` Function objects), by function name."""
    specs: dict[str, FunctionSpec] = {}
    for function in functions:
        spec = _spec(function, env)
        if spec.name in specs:
            raise BindingError(f"two functions are named {spec.name}")
        specs[spec.name] = spec
    return specs
