"""One orchestrator episode through the SDK's own replay engine.

We do what the SDK's ``Orchestrator.create(...).handle`` does (build a
``DurableOrchestrationContext``, run ``TaskOrchestrationExecutor.execute``) but keep the
context afterwards. That matters for correctness and speed:

* **Sequence ids.** The SDK numbers tasks itself, including the ones it allocates for retries
  while it *processes* a TaskFailed (the retry timer) or a TimerFired (the re-attempt); those
  never appear in ``actions``. Reading ``context.open_tasks`` after the episode gives every new
  id with the exact task behind it, however many completions the episode delivered, so the
  host can batch completions the way DTFx does and still emit the ids the SDK expects.
* **Speed.** Parsing history JSON and timestamps again in every episode would be quadratic; the
  host keeps the SDK's ``HistoryEvent`` objects per instance and only builds new ones.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

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

# Timer settings the Azure Storage backend sends (V3 schema splits longer timers).
LONG_TIMER_INTERVAL = "3.00:00:00"
MAX_SHORT_TIMER = "6.00:00:00"

history_event_module = sys.modules[HistoryEvent.__module__]

# The orchestration context of the episode running on this thread, for the replay log filter.
current = threading.local()


def _parse_timestamp(text: str, _slow=history_event_module.dt_parse) -> datetime:
    """ISO timestamps as ``dateutil`` would parse them, ~30x faster for the host's own format.

    ``HistoryEvent`` parses every event's ``Timestamp`` with ``dateutil``; that was the largest
    cost of an episode. The host writes ``%Y-%m-%dT%H:%M:%S.%fZ``, which ``fromisoformat``
    reads exactly; anything else still goes to ``dateutil``.
    """
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return _slow(text)


history_event_module.dt_parse = _parse_timestamp


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
class EpisodeResult:
    done: bool  # returned or continued as new
    output: Any = None
    error: str | None = None
    custom_status: Any = None
    continue_as_new: str | None = None  # new input (JSON text) when continuing as new
    continued: bool = False
    scheduled: list[Scheduled] = field(default_factory=list)
    signals: list[SignalEntityAction] = field(default_factory=list)
    next_task_id: int = 0
    action_count: int = 0


def _executor() -> TaskOrchestrationExecutor:
    """A reset executor, reused per thread: its constructor builds a namedtuple class each time,
    while ``initialize()`` is exactly the per-invocation reset the SDK relies on."""
    executor = getattr(current, "executor", None)
    if executor is None:
        executor = current.executor = TaskOrchestrationExecutor()
    else:
        executor.initialize()
    return executor


def sdk_event(event: dict[str, Any]) -> HistoryEvent:
    return HistoryEvent(**event)


def run_episode(
    handle: Callable[..., str],
    *,
    instance_id: str,
    parent_instance_id: str | None,
    context_input: str | None,
    history: list[HistoryEvent],
    head: list[dict[str, Any]],
    first_new_id: int,
    prev_action_count: int,
    episode_time: datetime,
) -> EpisodeResult:
    """Replay ``history`` through the user's generator and collect what is new.

    ``head`` is the first OrchestratorStarted/ExecutionStarted pair as dicts: the context
    constructor reads the start time and version from them; ``history`` (SDK objects) is what
    the executor replays.
    """
    ctx = DurableOrchestrationContext(
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
    executor = _executor()
    error: str | None = None
    current.context = ctx
    try:
        executor.execute(ctx, history, handle.orchestrator_function)
    except Exception as exc:
        cause = executor.exception if executor.exception is not None else exc
        error = str(cause) or str(type(cause))
    finally:
        current.context = None
    actions = ctx._actions[0]
    result = EpisodeResult(
        done=error is None and executor.orchestration_invocation_succeeded,
        error=error,
        custom_status=ctx.custom_status or None,
        next_task_id=ctx._sequence_number,
        action_count=len(actions),
    )
    if error is not None:
        return result
    new_actions = actions[prev_action_count:]
    result.signals = [a for a in new_actions if isinstance(a, SignalEntityAction)]
    if ctx.will_continue_as_new:
        can = next(a for a in actions if isinstance(a, ContinueAsNewAction))
        result.continued, result.continue_as_new = True, can.input_
        return result
    if result.done:
        result.output = executor.output
        return result
    result.scheduled = _new_tasks(ctx, first_new_id, episode_time)
    return result


def _new_tasks(ctx: DurableOrchestrationContext, first_new_id: int, now: datetime) -> list[Scheduled]:
    tasks = sorted(
        (key, task)
        for key, task in list(ctx.open_tasks.items())
        if isinstance(key, int) and key >= first_new_id and isinstance(task, TaskBase)
    )
    return [_describe(task_id, task, now) for task_id, task in tasks]


def _describe(task_id: int, task: TaskBase, now: datetime) -> Scheduled:
    action = task.action_repr[0] if isinstance(task.action_repr, list) else task.action_repr
    if isinstance(action, NoOpAction):
        retry = task.parent  # a RetryAbleTask: the SDK asked for a retry timer or a re-attempt
        if action.metadata == "-WithRetry timer":
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
