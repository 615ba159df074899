"""Read a v2 ``FunctionApp``'s functions and bindings into plain typed records.

The harness reads the same JSON the worker sends the host at indexing time
(``Function.get_function_json()``), so a decorator the library changes still reads the way the host
reads it. ``get_functions()`` may be called only once per app object (a second call raises), so the
result is cached per app.
"""

from __future__ import annotations

import inspect
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger("funchost")

HTTP_TRIGGER = "httpTrigger"
QUEUE_TRIGGER = "queueTrigger"
TIMER_TRIGGER = "timerTrigger"
EVENTHUB_TRIGGER = "eventHubTrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER, EVENTHUB_TRIGGER)
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")


class IndexedFunction(Protocol):
    """The part of ``azure.functions.decorators.Function`` the harness uses."""

    def get_function_name(self) -> str | None: ...

    def get_user_function(self) -> Callable[..., Any]: ...

    def get_function_json(self) -> str: ...


class FunctionSource(Protocol):
    """Anything with ``get_functions()``: a ``FunctionApp`` (or a test double)."""

    def get_functions(self) -> list[Any]: ...


@dataclass(frozen=True)
class FunctionInfo:
    """One function: its name, the user callable, and its trigger binding as the host sees it."""

    name: str
    func: Callable[..., Any]
    trigger_type: str
    trigger: dict[str, Any]
    bindings: tuple[dict[str, Any], ...] = field(default=())
    retry: dict[str, Any] | None = None  # the ``@app.retry`` policy, as the worker reports it to the host

    @property
    def arg_name(self) -> str:
        """The parameter the trigger value is passed as."""
        return str(self.trigger["name"])

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    @property
    def wants_context(self) -> bool:
        """The worker passes ``context`` only to functions that declare a parameter of that name."""
        return "context" in inspect.signature(self.func).parameters

    # HTTP trigger -------------------------------------------------------------------------------
    @property
    def auth_level(self) -> str:
        return str(self.trigger.get("authLevel", "function")).lower()

    @property
    def route(self) -> str:
        """The route template; the host uses the function name when the binding sets none."""
        route = self.trigger.get("route")
        return str(route) if route else self.name

    @property
    def methods(self) -> tuple[str, ...]:
        methods = self.trigger.get("methods")
        if not methods:
            return ALL_METHODS
        return tuple(str(m).upper() for m in methods)

    # Queue trigger ------------------------------------------------------------------------------
    @property
    def queue_name(self) -> str:
        return str(self.trigger.get("queueName", ""))

    @property
    def connection(self) -> str | None:
        value = self.trigger.get("connection")
        return str(value) if value else None

    # Event Hubs trigger -------------------------------------------------------------------------
    @property
    def event_hub_name(self) -> str:
        return str(self.trigger.get("eventHubName", ""))

    @property
    def consumer_group(self) -> str:
        return str(self.trigger.get("consumerGroup") or "$Default")

    @property
    def cardinality(self) -> str:
        return str(self.trigger.get("cardinality", "one")).lower()

    # Timer trigger ------------------------------------------------------------------------------
    @property
    def schedule(self) -> str:
        return str(self.trigger.get("schedule", ""))

    @property
    def run_on_startup(self) -> bool:
        return bool(self.trigger.get("runOnStartup", False))

    @property
    def use_monitor(self) -> bool | None:
        value = self.trigger.get("useMonitor")
        return None if value is None else bool(value)


_CACHE: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def functions_of(app: FunctionSource) -> list[Any]:
    """``app.get_functions()``, called once per app object however many hosts serve it."""
    try:
        return _CACHE[app]
    except KeyError:
        pass
    except TypeError:  # not weak-referenceable: cannot cache, call once
        return app.get_functions()
    functions = app.get_functions()
    _CACHE[app] = functions
    return functions


def _unsupported_bindings(bindings: list[dict[str, Any]]) -> list[str]:
    """Bindings other than the trigger and the HTTP ``$return``: the harness cannot bind them."""
    names = []
    for binding in bindings:
        direction = str(binding.get("direction", "")).upper()
        btype = str(binding.get("type", ""))
        if btype in SUPPORTED_TRIGGERS:
            continue
        if btype == "http" and direction in ("OUT", "1") and binding.get("name") == "$return":
            continue
        names.append(f"{btype} ({binding.get('name')})")
    return names


def _retry_policy(function: Any) -> dict[str, Any] | None:
    """The function's retry setting (``@app.retry``); the worker sends it beside the bindings."""
    settings = getattr(function, "get_settings_dict", None)
    policy = settings("retry_policy") if settings is not None else None
    return dict(policy) if isinstance(policy, dict) else None


def index(app: FunctionSource, errors: dict[str, str] | None = None) -> list[FunctionInfo]:
    """Every function the harness can run; the others are logged, recorded in ``errors`` and left out,
    as the host reports a function in error and keeps serving the rest."""
    errors = {} if errors is None else errors
    found = []
    for function in functions_of(app):
        name = function.get_function_name() or function.get_user_function().__name__
        spec = json.loads(function.get_function_json())
        bindings: list[dict[str, Any]] = list(spec.get("bindings", []))
        triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
        problem = None
        if len(triggers) != 1:
            problem = f"{len(triggers)} triggers (expected one)"
        elif triggers[0]["type"] not in SUPPORTED_TRIGGERS:
            problem = f"trigger '{triggers[0]['type']}' is not supported by funchost"
        elif unsupported := _unsupported_bindings(bindings):
            problem = f"bindings funchost does not support: {', '.join(unsupported)}"
        if problem is not None:
            logger.error("The '%s' function is in error: %s", name, problem)
            errors[name] = problem
            continue
        trigger = triggers[0]
        found.append(
            FunctionInfo(
                name=name,
                func=function.get_user_function(),
                trigger_type=str(trigger["type"]),
                trigger=dict(trigger),
                bindings=tuple(bindings),
                retry=_retry_policy(function),
            )
        )
    return found
