"""Everything ``durable_host`` needs from ``azure.durable_functions`` beyond its public API.

The host replays orchestrators through the SDK's own ``TaskOrchestrationExecutor`` (see
``episode.py``) and reads the SDK's state afterwards. That needs a few private attributes
and one patch; they all live here, behind typed functions, so that an SDK upgrade breaks in
one module and ``tests/host/test_sdk_adapter.py`` says which attribute moved:

* the context's ``_histories`` (set: the host passes its cached ``HistoryEvent`` objects),
  ``_add_to_open_tasks`` (wrapped per context, to see every task the replay numbers),
  ``_input_expected_type`` (set, as ``Orchestrator.handle`` does), ``_actions`` and
  ``_sequence_number`` (read), and the public ``open_tasks``;
* the handle's ``orchestrator_function`` and ``_df_input_type``, set by the SDK's decorators;
* the executor's ``initialize``/``execute``/``exception``/``output``/
  ``orchestration_invocation_succeeded``, and its ``get_orchestrator_state_str``, replaced per
  executor by the decisions it makes without the JSON it builds (see ``_decided_state``);
* ``CallSubOrchestratorAction._input``, the retry state of ``RetryAbleTask``
  (``retry_options``, ``num_attempts``, ``actions``) and ``NoOpAction.metadata``;
* the module-level ``dt_parse`` of ``models.history.HistoryEvent``, replaced by a fast ISO
  parser when the host calls ``install_fast_timestamps()`` (never at import).

The SDK ships no type information: mypy treats its modules as ``Any`` (one override in
``pyproject.toml``), and this module turns what it reads into the host's own types.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from azure.durable_functions.models.actions.CallActivityAction import CallActivityAction
from azure.durable_functions.models.actions.CallActivityWithRetryAction import CallActivityWithRetryAction
from azure.durable_functions.models.actions.CallEntityAction import CallEntityAction
from azure.durable_functions.models.actions.CallHttpAction import CallHttpAction
from azure.durable_functions.models.actions.CallSubOrchestratorAction import CallSubOrchestratorAction
from azure.durable_functions.models.actions.CallSubOrchestratorWithRetryAction import CallSubOrchestratorWithRetryAction
from azure.durable_functions.models.actions.ContinueAsNewAction import ContinueAsNewAction
from azure.durable_functions.models.actions.CreateTimerAction import CreateTimerAction
from azure.durable_functions.models.actions.NoOpAction import NoOpAction
from azure.durable_functions.models.actions.SignalEntityAction import SignalEntityAction
from azure.durable_functions.models.DurableOrchestrationContext import DurableOrchestrationContext
from azure.durable_functions.models.history.HistoryEvent import HistoryEvent
from azure.durable_functions.models.Task import TaskBase
from azure.durable_functions.models.TaskOrchestrationExecutor import TaskOrchestrationExecutor
from azure.durable_functions.models.utils.df_serialization import df_dumps

from .events import SCHEDULING_EVENTS, EventType

# The constructor of the context, untyped here: the host passes the JSON fields as the extension
# sends them (``parentInstanceId`` may be null).
_Context: Callable[..., Any] = DurableOrchestrationContext

# Timer settings the Azure Storage backend sends (V3 schema splits longer timers).
LONG_TIMER_INTERVAL = "3.00:00:00"
MAX_SHORT_TIMER = "6.00:00:00"
# NoOpAction metadata of the timer the SDK allocates between two attempts of a retrying task.
RETRY_TIMER = "-WithRetry timer"


def sdk_version() -> str:
    return importlib.metadata.version("azure-functions-durable")


class SdkHistoryEvent(Protocol):
    """An SDK ``HistoryEvent``: the host only caches it and hands it back to the executor."""

    @property
    def event_type(self) -> int: ...


class OrchestratorHandle(Protocol):
    """What ``@app.orchestration_trigger`` registers (``Orchestrator.create(fn)``'s handle)."""

    def __call__(self, context: Any) -> str: ...


def sdk_event(event: dict[str, Any]) -> SdkHistoryEvent:
    """The SDK's ``HistoryEvent`` for one history event dict."""
    return cast(SdkHistoryEvent, HistoryEvent(**event))


# ---------------------------------------------------------------------- the timestamp patch

# The module object, typed Any: ``dt_parse`` is its import of ``dateutil.parser.parse``.
_history_event_module: Any = sys.modules[HistoryEvent.__module__]
_dateutil_parse: Callable[[str], datetime] = _history_event_module.dt_parse


def _parse_timestamp(text: str) -> datetime:
    """ISO timestamps as ``dateutil`` would parse them, ~30x faster for the host's own format.

    ``HistoryEvent`` parses every event's ``Timestamp`` with ``dateutil``; that was the largest
    cost of an episode. The host writes ``%Y-%m-%dT%H:%M:%S.%fZ``, which ``fromisoformat``
    reads exactly; anything else still goes to ``dateutil``.
    """
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return _dateutil_parse(text)


def install_fast_timestamps() -> None:
    """Make ``HistoryEvent`` parse timestamps with ``_parse_timestamp`` (idempotent)."""
    _history_event_module.dt_parse = _parse_timestamp


def fast_timestamps_installed() -> bool:
    return bool(_history_event_module.dt_parse is _parse_timestamp)


# ---------------------------------------------------------------------- one replay


@dataclass
class Scheduled:
    """A task the orchestrator started in this episode, with the id the SDK gave it."""

    kind: str  # activity | timer | suborchestration | entity_call
    task_id: int
    name: str = ""
    input: str | None = None
    fire_at: datetime | None = None
    instance_id: str | None = None
    version: str | None = None


@dataclass
class Signal:
    """A ``signal_entity`` call (fire and forget)."""

    instance_id: str
    operation: str
    input_: str | None


@dataclass
class Replay:
    """The SDK's state after one episode, in the host's terms."""

    error: str | None  # the orchestrator raised (its message), or the replay diverged from the history
    succeeded: bool  # the orchestrator returned
    output: Any  # its return value
    custom_status: Any  # None when falsy, as the SDK leaves it out
    next_task_id: int  # first sequence number not allocated yet
    action_count: int  # actions so far in this execution
    continue_as_new: bool = False
    new_input: str | None = None  # the ContinueAsNew input, JSON text
    signals: list[Signal] = field(default_factory=list)
    scheduled: list[Scheduled] = field(default_factory=list)
    nondeterministic: bool = False  # ``error`` is DTFx's message for a replay that diverged, the whole output


# The orchestration context of the episode running on this thread, for the replay log filter,
# and the executor reused by this thread.
_current = threading.local()


def replaying() -> bool | None:
    """Whether the orchestrator running on this thread is replaying; None outside episodes."""
    ctx = getattr(_current, "context", None)
    return None if ctx is None else bool(ctx.is_replaying)


def _executor() -> Any:
    """A reset executor, reused per thread: its constructor builds a namedtuple class each time,
    while ``initialize()`` is exactly the per-invocation reset the SDK relies on."""
    executor = getattr(_current, "executor", None)
    if executor is None:
        executor = _current.executor = TaskOrchestrationExecutor()
        executor.get_orchestrator_state_str = functools.partial(_decided_state, executor)
    else:
        executor.initialize()
    return executor


def _decided_state(executor: Any) -> str:
    """What ``get_orchestrator_state_str`` decides at the end of ``execute``, without its JSON.

    The SDK serialises every action of the orchestration so far into the state text Azure's worker
    sends to the extension, after every episode; the host reads the actions from the context and
    never used that text, which was about a sixth of an episode's replay time. Kept as the SDK
    does them: an output that is not JSON becomes the orchestration's error, and an error is raised
    from ``execute`` with the orchestrator's exception as its cause (``replay`` reads that cause).
    """
    if executor.output is not None:
        try:
            json.dumps(executor.output)
        except Exception as exc:  # noqa: BLE001 - the SDK turns any serialisation error into the failure
            executor.output = None
            executor.exception = exc
    if executor.exception is not None:
        raise Exception(str(executor.exception)) from executor.exception
    return ""


def custom_status_json(value: Any) -> str:
    """The custom status as the SDK writes it on Azure: inside its whole state, through ``df_dumps``.

    So an object with ``to_json`` is written with its class and module (and, under strict typing, only at the
    top of the state, so not here), and what JSON cannot hold raises ``TypeError``, failing the orchestration.
    """
    return json.dumps(json.loads(df_dumps({"customStatus": value}))["customStatus"], separators=(",", ":"))


def replay(
    handle: OrchestratorHandle,
    *,
    instance_id: str,
    parent_instance_id: str | None,
    context_input: str | None,
    history: list[SdkHistoryEvent],
    head: list[dict[str, Any]],
    first_new_id: int,
    prev_action_count: int,
    episode_time: datetime,
) -> Replay:
    """Do what ``Orchestrator.handle`` does, keeping the context, and read what is new.

    ``head`` is the first OrchestratorStarted/ExecutionStarted pair as dicts: the context
    constructor reads the start time and version from them; ``history`` (SDK objects) is what
    the executor replays.
    """
    # Any: the host reads and sets private attributes no stub declares.
    ctx: Any = _Context(
        history=head,
        instanceId=instance_id,
        isReplaying=False,
        parentInstanceId=parent_instance_id,
        input=context_input,
        upperSchemaVersion=1,
        upperSchemaVersionNew=2,
        longRunningTimerIntervalDuration=LONG_TIMER_INTERVAL,
        maximumShortTimerDuration=MAX_SHORT_TIMER,
    )
    ctx._histories = history
    ctx._input_expected_type = getattr(handle, "_df_input_type", None)
    replayed = _record_tasks(ctx)
    executor: Any = _executor()
    error: str | None = None
    _current.context = ctx
    try:
        executor.execute(ctx, history, cast(Any, handle).orchestrator_function)
    except Exception as exc:  # noqa: BLE001 - the orchestrator's error, whatever it is, fails the orchestration
        cause = executor.exception if executor.exception is not None else exc
        error = str(cause) or str(type(cause))
    finally:
        _current.context = None
        del ctx._add_to_open_tasks  # the wrapper refers to the context: not one more cycle for the collector
    divergence = None if error is not None else nondeterminism(history, replayed, episode_time)
    actions: list[Any] = ctx._actions[0]
    result = Replay(
        error=error or divergence,
        succeeded=error is None and divergence is None and bool(executor.orchestration_invocation_succeeded),
        output=None,
        custom_status=ctx.custom_status or None,
        next_task_id=int(ctx._sequence_number),
        action_count=len(actions),
        nondeterministic=divergence is not None,
    )
    if result.error is not None:
        return result
    result.signals = [
        Signal(a.instance_id, a.operation, a.input_)
        for a in actions[prev_action_count:]
        if isinstance(a, SignalEntityAction)
    ]
    if ctx.will_continue_as_new:
        can = next(a for a in actions if isinstance(a, ContinueAsNewAction))
        result.continue_as_new, result.new_input = True, can.input_
        return result
    if result.succeeded:
        result.output = executor.output
        return result
    result.scheduled = _new_tasks(ctx, first_new_id, episode_time)
    return result


def _record_tasks(ctx: Any) -> dict[int, Any]:
    """Every task the replay numbers, by sequence id, as the SDK hands it to the context.

    ``open_tasks`` loses a task once its result is replayed; the extension compares every action the
    replay produced with the history, so the host keeps them all (retry timers and re-attempts included:
    the SDK numbers them through the same method).
    """
    numbered: dict[int, Any] = {}
    add_to_open_tasks = ctx._add_to_open_tasks

    def recording(task: Any) -> None:
        add_to_open_tasks(task)
        task_id = getattr(task, "id", None)
        if isinstance(task_id, int) and task_id >= 0:  # external events have none (-1), composites None
            numbered.setdefault(task_id, task)

    ctx._add_to_open_tasks = recording
    return numbered


# What DTFx calls the action the replay produced, by the host's kind of task (its messages name them).
_DTFX_ACTIONS = {
    "activity": "ScheduleTaskOrchestratorAction",
    "timer": "CreateTimerOrchestratorAction",
    "suborchestration": "CreateSubOrchestrationAction",
    "entity_call": "SendEventOrchestratorAction",
}
_CHANGED = "Was a change made to the orchestrator code after this instance had already started running?"
NONDETERMINISM_PREFIX = "Non-Deterministic workflow detected: "


def nondeterminism(history: list[SdkHistoryEvent], replayed: dict[int, Any], now: datetime) -> str | None:
    """DTFx's failure for a replay that does not schedule what the history says it scheduled, else None.

    On Azure the extension replays the SDK's actions into DTFx, which checks each TaskScheduled,
    TimerCreated and SubOrchestrationInstanceCreated event of the history against the action with the
    same sequence number (``TaskOrchestrationContext.Handle*Event``): there must be one, of the same kind,
    with the same name (ignoring case). Otherwise the orchestration fails with
    ``NonDeterministicOrchestrationException``, whose message, behind :data:`NONDETERMINISM_PREFIX`, is its
    whole output; without the check a renamed step would silently receive the old step's result.

    Not after a rewind (a history with the host's ``Rewound:`` marker): without the failures it removed, the
    SDK numbers retries and compensations differently (see "Rewind" in the README), which DTFx's own rewind
    trips over as well (Azure/durabletask#811); the rewound instance keeps its chance to complete.
    """
    found: Any
    for found in history:
        kind = SCHEDULING_EVENTS.get(found.event_type)  # an IntEnum: hashes as its value
        if kind is None:
            continue
        task = replayed.get(found.event_id)
        now_scheduled = _describe(found.event_id, task, now) if task is not None else None
        message = _divergence(kind, found, now_scheduled)
        if message is not None:
            return None if _rewound(history) else NONDETERMINISM_PREFIX + message
    return None


REWOUND_MARKER = "Rewound: "  # the Data of the GenericEvent a rewind adds to the history


def _rewound(history: list[SdkHistoryEvent]) -> bool:
    return any(
        ev.event_type == EventType.GenericEvent and str(getattr(ev, "Data", "")).startswith(REWOUND_MARKER)
        for ev in history
    )


def _divergence(kind: str, ev: Any, replayed: Scheduled | None) -> str | None:
    """DTFx's message when ``replayed`` (None: nothing has that sequence number) does not match ``ev``."""
    task_id, name = ev.event_id, ev.Name
    if replayed is not None and replayed.kind == kind and (kind == "timer" or _same_name(name, replayed.name)):
        return None  # every step of a replay that matches ends here, before any message is built
    instead = None if replayed is None else _DTFX_ACTIONS[replayed.kind]
    if kind == "activity":
        if replayed is None:
            return (
                f"A previous execution of this orchestration scheduled an activity task with sequence ID {task_id} "
                f"and name '{name}' (version ''), but the current replay execution hasn't (yet?) scheduled this "
                f"task. {_CHANGED}"
            )
        said = (
            "A previous execution of this orchestration scheduled an activity task with sequence number "
            f"{task_id} named '{name}'"
        )
        if replayed.kind != kind:
            return (
                f"{said}, but the current orchestration replay instead produced a {instead} action with this "
                f"sequence number. {_CHANGED}"
            )
        return (
            f"{said}, but the current orchestration replay instead scheduled an activity task named "
            f"'{replayed.name}' with this sequence number.  {_CHANGED}"
        )
    if kind == "timer":
        said = f"A previous execution of this orchestration scheduled a timer task with sequence number {task_id}"
        if replayed is None:
            return f"{said} but the current replay execution hasn't (yet?) scheduled this task. {_CHANGED}"
        return (
            f"{said} named but the current orchestration replay instead produced a {instead} action with this "
            f"sequence number. {_CHANGED}"
        )
    said = (
        f"A previous execution of this orchestration scheduled a sub-orchestration task with sequence ID {task_id} "
        f"and name '{name}' (version '{getattr(ev, 'Version', None) or ''}', instance ID '{ev.InstanceId}')"
    )
    if replayed is None:
        return f"{said}, but the current replay execution hasn't (yet?) scheduled this task. {_CHANGED}"
    if replayed.kind != kind:
        return (
            f"{said}, but the current orchestration replay instead produced a {instead} action at this sequence "
            f"number. {_CHANGED}"
        )
    return (
        f"{said}, but the current orchestration replay instead scheduled a sub-orchestration task with name "
        f"{replayed.name} at this sequence number. {_CHANGED}"
    )


def _same_name(recorded: Any, replayed: str) -> bool:
    """Function names as DTFx compares them (``OrdinalIgnoreCase``; Functions' names are ASCII)."""
    return str(recorded).casefold() == replayed.casefold()


def _new_tasks(ctx: Any, first_new_id: int, now: datetime) -> list[Scheduled]:
    tasks = sorted(
        (
            (key, task)
            for key, task in list(ctx.open_tasks.items())
            if isinstance(key, int) and key >= first_new_id and isinstance(task, TaskBase)
        ),
        key=lambda pair: pair[0],
    )
    return [_describe(task_id, task, now) for task_id, task in tasks]


def _describe(task_id: int, task: Any, now: datetime) -> Scheduled:
    action = task.action_repr[0] if isinstance(task.action_repr, list) else task.action_repr
    if isinstance(action, NoOpAction):
        retry = task.parent  # a RetryAbleTask: the SDK asked for a retry timer or a re-attempt
        if action.metadata == RETRY_TIMER:
            options = retry.retry_options
            done = retry.num_attempts >= options.max_number_of_attempts
            delay = 0 if done else options.first_retry_interval_in_milliseconds
            return Scheduled("timer", task_id, fire_at=now + timedelta(milliseconds=delay))
        action = retry.actions[0] if isinstance(retry.actions, list) else retry.actions
    if isinstance(action, (CallActivityAction, CallActivityWithRetryAction)):
        return Scheduled("activity", task_id, action.function_name, action.input_)
    if isinstance(action, CreateTimerAction):
        return Scheduled("timer", task_id, fire_at=action.fire_at)
    if isinstance(action, (CallSubOrchestratorAction, CallSubOrchestratorWithRetryAction)):
        return Scheduled(
            "suborchestration",
            task_id,
            action.function_name,
            action._input,
            instance_id=action.instance_id,
            version=action.version,
        )
    if isinstance(action, CallHttpAction):
        return Scheduled("activity", task_id, "BuiltIn::HttpActivity", json.dumps(action.http_request.to_json()))
    if isinstance(action, CallEntityAction):
        return Scheduled("entity_call", task_id, action.operation, action.input_, instance_id=action.instance_id)
    raise RuntimeError(f"durable_host: unsupported task type {type(action).__name__}")


# ---------------------------------------------------------------------- shape check

# Parameters the host passes by name.
_CONTEXT_PARAMETERS = (
    "history",
    "instanceId",
    "isReplaying",
    "parentInstanceId",
    "input",
    "upperSchemaVersion",
    "upperSchemaVersionNew",
    "longRunningTimerIntervalDuration",
    "maximumShortTimerDuration",
)
_EXECUTE_PARAMETERS = ("context", "history", "fn")
# Attributes read from objects the SDK builds, by the class that builds them.
_CONTEXT_ATTRIBUTES = (
    "_add_to_open_tasks",
    "_histories",
    "_actions",
    "_sequence_number",
    "open_tasks",
    "will_continue_as_new",
    "custom_status",
    "is_replaying",
)
_EXECUTOR_ATTRIBUTES = (
    "initialize",
    "execute",
    "exception",
    "output",
    "orchestration_invocation_succeeded",
    "get_orchestrator_state_str",
)


def _missing(obj: object, names: tuple[str, ...], what: str) -> list[str]:
    present = set(dir(obj))  # class and instance attributes, without evaluating properties
    return [f"{what} has no attribute {name!r}" for name in names if name not in present]


def _parameters_missing(fn: Callable[..., Any], names: tuple[str, ...], what: str) -> list[str]:
    parameters = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return []
    return [f"{what} takes no parameter {name!r}" for name in names if name not in parameters]


def shape_problems() -> list[str]:
    """What this adapter reads from the SDK and the installed SDK no longer has (empty: all there).

    ``tests/host/test_sdk_adapter.py`` fails with this list and the SDK version. It checks the
    names and signatures, then replays a retrying orchestrator through ``replay``, which reads
    every private attribute listed in the module docstring.
    """
    import azure.durable_functions as df
    from azure.durable_functions.models.RetryOptions import RetryOptions

    problems: list[str] = []
    if not callable(getattr(_history_event_module, "dt_parse", None)):
        problems.append(f"{_history_event_module.__name__} has no module-level dt_parse to replace")
    problems += _parameters_missing(DurableOrchestrationContext.__init__, _CONTEXT_PARAMETERS, "context constructor")
    problems += _parameters_missing(TaskOrchestrationExecutor.execute, _EXECUTE_PARAMETERS, "executor.execute")
    head = [
        {"EventType": 12, "EventId": -1, "IsPlayed": False, "Timestamp": "2024-05-01T10:00:00.000000Z"},
        {
            "EventType": 0,
            "EventId": -1,
            "IsPlayed": False,
            "Timestamp": "2024-05-01T10:00:00.000000Z",
            "Name": "probe",
            "Input": None,
            "Version": "",
        },
    ]
    try:
        ctx = _Context(history=head, instanceId="probe", isReplaying=False, parentInstanceId=None, input=None)
        problems += _missing(ctx, _CONTEXT_ATTRIBUTES, "DurableOrchestrationContext")
        problems += _missing(TaskOrchestrationExecutor(), _EXECUTOR_ATTRIBUTES, "TaskOrchestrationExecutor")
        sub = CallSubOrchestratorAction("probe", {"a": 1}, "child", "1.0")
        problems += _missing(sub, ("function_name", "_input", "instance_id", "version"), "CallSubOrchestratorAction")
        problems += _missing(CallActivityAction("probe", 1), ("function_name", "input_"), "CallActivityAction")
        problems += _missing(ContinueAsNewAction(1), ("input_",), "ContinueAsNewAction")
        problems += _missing(NoOpAction(RETRY_TIMER), ("metadata",), "NoOpAction")
        problems += _missing(
            RetryOptions(1000, 2), ("first_retry_interval_in_milliseconds", "max_number_of_attempts"), "RetryOptions"
        )
    except Exception as exc:  # noqa: BLE001 - any failure to build the SDK's objects is the finding
        problems.append(f"building SDK objects failed: {type(exc).__name__}: {exc}")

    def retrying(context: Any) -> Any:
        value = yield context.call_activity_with_retry("probe", RetryOptions(1000, 2), "x")
        return value

    handle = cast(OrchestratorHandle, df.Orchestrator.create(retrying))
    if not hasattr(handle, "orchestrator_function"):
        problems.append("Orchestrator.create(fn) returns a handle without orchestrator_function")
        return problems
    now = datetime.fromisoformat("2024-05-01T10:00:00+00:00")
    history: list[dict[str, Any]] = [*head]
    expected = [("activity", 0), ("timer", 1), ("activity", 2)]
    found: list[tuple[str, int]] = []
    try:
        for step, completion in enumerate(
            [
                None,
                {"EventType": 6, "TaskScheduledId": 0, "Reason": "no", "Details": None},
                {"EventType": 11, "TimerId": 1, "FireAt": "2024-05-01T10:00:01.000000Z"},
            ]
        ):
            if completion is not None:
                history += [
                    {"EventType": 12, "EventId": -1, "IsPlayed": False, "Timestamp": "2024-05-01T10:00:01.000000Z"},
                    {"EventId": -1, "IsPlayed": False, "Timestamp": "2024-05-01T10:00:01.000000Z", **completion},
                ]
            result = replay(
                handle,
                instance_id="probe",
                parent_instance_id=None,
                context_input=None,
                history=[sdk_event(e) for e in history],
                head=head,
                first_new_id=step,
                prev_action_count=0,
                episode_time=now,
            )
            if result.error is not None:
                problems.append(f"replaying a retrying activity failed: {result.error}")
                return problems
            found += [(s.kind, s.task_id) for s in result.scheduled]
            history += [
                {"EventType": 4 if s.kind == "activity" else 10, "EventId": s.task_id, "IsPlayed": False}
                | {"Timestamp": "2024-05-01T10:00:00.000000Z", "Name": s.name, "FireAt": "2024-05-01T10:00:01Z"}
                for s in result.scheduled
            ]
    except Exception as exc:  # noqa: BLE001 - an SDK that changed shape fails in any way: report it
        problems.append(f"replaying a retrying activity raised {type(exc).__name__}: {exc}")
        return problems
    if found != expected:
        problems.append(f"a retrying activity's tasks and ids are {found}, expected {expected}")
    return problems
