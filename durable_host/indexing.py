"""Index ``function_app.py`` the way Azure's Python worker does, then classify what the host runs.

Importing, finding the single ``FunctionRegister`` and the load-time checks are the worker
library's own (``azure_worker``); trigger and binding metadata come from the ``azure-functions``
library itself, so decorators, blueprints and validation behave exactly as on Azure. This module
only sorts the functions into what the host serves.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, cast

import azure.functions as func
from azure.functions.decorators.http import HttpTrigger
from azure.functions.decorators.queue import QueueTrigger
from azure.functions.decorators.timer import TimerTrigger

from .azure_worker import IndexingError, check_functions, index_app

log = logging.getLogger("durable_host")

SUPPORTED_BINDINGS = {
    "httpTrigger",
    "http",
    "orchestrationTrigger",
    "activityTrigger",
    "entityTrigger",
    "durableClient",
    "queueTrigger",
    "timerTrigger",
}


@dataclass(frozen=True)
class FunctionInfo:
    """What every invocable function has in common."""

    name: str  # the function name printed and logged (``Functions.<name>``)
    fn: Callable[..., Any]  # what the worker calls
    trigger_param: str
    is_async: bool
    wants_context: bool  # has an unbound parameter named ``context``
    client_param: str | None  # durable client input binding, if any


class _Common(TypedDict):
    """The ``FunctionInfo`` fields, gathered before the kind of function is known."""

    name: str
    fn: Callable[..., Any]
    trigger_param: str
    is_async: bool
    wants_context: bool
    client_param: str | None


@dataclass(frozen=True)
class HttpFunction(FunctionInfo):
    route: str = ""
    methods: tuple[str, ...] = ()  # empty means every method
    auth_level: str = "function"


@dataclass(frozen=True)
class QueueFunction(FunctionInfo):
    queue_name: str = ""  # as declared: ``%Setting%`` references are resolved when the host starts
    connection: str = ""  # app setting name; empty means ``AzureWebJobsStorage``


@dataclass(frozen=True)
class TimerFunction(FunctionInfo):
    schedule: str = ""  # NCRONTAB or TimeSpan, as declared (``%Setting%`` resolved at start)
    run_on_startup: bool = False
    use_monitor: bool | None = None  # ``None``: Azure's default, decided by the schedule


@dataclass(frozen=True)
class DurableFunction(FunctionInfo):
    registered_name: str = ""  # name the Durable extension registers (case-insensitive)


@dataclass
class FunctionIndex:
    """The app's functions by kind; durable lookups are case-insensitive like the extension's."""

    http: list[HttpFunction] = field(default_factory=list)
    queues: list[QueueFunction] = field(default_factory=list)
    timers: list[TimerFunction] = field(default_factory=list)
    orchestrators: dict[str, DurableFunction] = field(default_factory=dict)
    activities: dict[str, DurableFunction] = field(default_factory=dict)
    entities: dict[str, DurableFunction] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def orchestrator(self, name: str) -> DurableFunction | None:
        return self.orchestrators.get(name.lower())

    def activity(self, name: str) -> DurableFunction | None:
        return self.activities.get(name.lower())

    def entity(self, name: str) -> DurableFunction | None:
        return self.entities.get(name.lower())


def load_app(app_dir: Path, script_file: str = "function_app.py") -> list[func.Function]:
    """Import the script and index its functions as Azure's worker does, with the worker's checks."""
    app_dir = Path(app_dir).resolve()
    os.chdir(app_dir)  # azure.durable_functions reads host.json relative to the working directory
    functions = index_app(app_dir, script_file)
    check_functions(functions)
    return functions


def _parameters(fn: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__wrapped__", None))


def index_functions(functions: list[func.Function]) -> FunctionIndex:
    """Classify the app's functions; unsupported triggers or bindings are skipped with a reason."""
    index = FunctionIndex()
    for function in functions:
        fn = function.get_user_function()
        name = function.get_function_name() or fn.__name__  # the decorators always set one
        trigger = function.get_trigger()
        bindings = function.get_bindings()
        if trigger is None:  # the worker's checks refuse such an app before this runs
            raise IndexingError(f"function '{name}' has no trigger")
        unsupported = sorted({str(b.type) for b in bindings} - SUPPORTED_BINDINGS)
        if unsupported:
            index.skipped.append((name, f"unsupported binding type(s): {', '.join(unsupported)}"))
            continue
        bound = {b.name for b in bindings}
        params = _parameters(fn)
        unbound = [p for p in params if p not in bound and p != "context"]
        if unbound:
            raise IndexingError(f"function '{name}': parameter(s) {unbound} match no binding")
        client = next((b.name for b in bindings if b.type == "durableClient"), None)
        common = _Common(
            name=name,
            fn=fn,
            trigger_param=trigger.name,
            is_async=_is_async(fn),
            wants_context="context" in params and "context" not in bound,
            client_param=client,
        )
        if trigger.type == "httpTrigger":
            trigger = cast(HttpTrigger, trigger)
            methods = tuple(_enum_value(m).upper() for m in (trigger.methods or ()))
            index.http.append(
                HttpFunction(
                    **common,
                    route=(trigger.route or name).strip("/"),
                    methods=methods,
                    auth_level=_enum_value(trigger.auth_level).lower(),
                )
            )
        elif trigger.type == "queueTrigger":
            queue = cast(QueueTrigger, trigger)
            index.queues.append(
                QueueFunction(**common, queue_name=str(queue.queue_name), connection=str(queue.connection or ""))
            )
        elif trigger.type == "timerTrigger":
            timer = cast(TimerTrigger, trigger)
            index.timers.append(
                TimerFunction(
                    **common,
                    schedule=str(timer.schedule),
                    run_on_startup=bool(timer.run_on_startup),
                    use_monitor=timer.use_monitor,
                )
            )
        elif trigger.type == "orchestrationTrigger":
            registered = str(getattr(trigger, "orchestration", None) or name)
            index.orchestrators[registered.lower()] = DurableFunction(**common, registered_name=registered)
        elif trigger.type == "activityTrigger":
            registered = str(getattr(trigger, "activity", None) or name)
            index.activities[registered.lower()] = DurableFunction(**common, registered_name=registered)
        elif trigger.type == "entityTrigger":
            registered = str(getattr(trigger, "entity_name", None) or name)
            index.entities[registered.lower()] = DurableFunction(**common, registered_name=registered)
        else:
            index.skipped.append((name, f"unsupported trigger type {trigger.type}"))
    return index
