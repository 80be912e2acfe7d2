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

Reading the SDK's state needs its private attributes: that is ``sdk_adapter.py``'s job, so this
module only speaks the host's types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .sdk_adapter import OrchestratorHandle, Scheduled, SdkHistoryEvent, Signal, replay, sdk_event

__all__ = ["EpisodeResult", "Scheduled", "Signal", "run_episode", "sdk_event"]


@dataclass
class EpisodeResult:
    done: bool  # returned or continued as new
    output: Any = None
    error: str | None = None
    custom_status: Any = None
    continue_as_new: str | None = None  # new input (JSON text) when continuing as new
    continued: bool = False
    scheduled: list[Scheduled] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    next_task_id: int = 0
    action_count: int = 0
    nondeterministic: bool = False  # ``error`` is DTFx's message for a replay that diverged from the history


def run_episode(
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
) -> EpisodeResult:
    """Replay ``history`` through the user's generator and collect what is new.

    ``head`` is the first OrchestratorStarted/ExecutionStarted pair as dicts: the context
    constructor reads the start time and version from them; ``history`` (SDK objects) is what
    the executor replays.
    """
    r = replay(
        handle,
        instance_id=instance_id,
        parent_instance_id=parent_instance_id,
        context_input=context_input,
        history=history,
        head=head,
        first_new_id=first_new_id,
        prev_action_count=prev_action_count,
        episode_time=episode_time,
    )
    return EpisodeResult(
        done=r.succeeded,
        output=r.output,
        error=r.error,
        custom_status=r.custom_status,
        continue_as_new=r.new_input,
        continued=r.continue_as_new,
        scheduled=r.scheduled,
        signals=r.signals,
        next_task_id=r.next_task_id,
        action_count=r.action_count,
        nondeterministic=r.nondeterministic,
    )
