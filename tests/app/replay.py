"""Drive an orchestrator's SDK handle through replayed histories, without any host.

This is the replay protocol of Durable Functions' out-of-process SDK (what ``durable_host/episode.py``
drives for the real host) reduced to what orchestrator unit tests need: each episode sends the whole
history, reads the cumulative actions, schedules the new ones with DTFx sequence ids, then delivers
exactly one completion (the "safe allocation rule", which keeps retry timer and re-attempt ids right).
Activities are plain Python callables given by the test.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions._durable_functions import OrchestrationContext

Activity = Callable[[Any], Any]

CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY, WHEN_ANY, WHEN_ALL = 0, 1, 11, 12


@dataclass
class Episode:
    actions: list[dict[str, Any]]  # the actions that were new in this episode, flattened
    custom_status: Any


@dataclass
class ReplayRun:
    output: Any = None
    error: str | None = None
    episodes: list[Episode] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)  # every activity invocation, in order
    retry_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per activity name, as scheduled


class ReplayDriver:
    def __init__(self, handle: Callable[[Any], str], activities: dict[str, Activity]) -> None:
        self.handle = handle
        self.activities = activities
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.sequence = 0

    def _event(self, event_type: int, event_id: int = -1, **fields: Any) -> dict[str, Any]:
        self.clock += timedelta(milliseconds=10)
        return {
            "EventType": event_type,
            "EventId": event_id,
            "IsPlayed": False,
            "Timestamp": self.clock.isoformat().replace("+00:00", "Z"),
            **fields,
        }

    def _episode(self, run: ReplayRun, instance_id: str, orchestration_input: Any) -> dict[str, Any]:
        last_start = max(i for i, e in enumerate(run.history) if e["EventType"] == 12)
        for position, event in enumerate(run.history):
            event["IsPlayed"] = position < last_start
        context = {
            "history": run.history,
            "input": json.dumps(orchestration_input),
            "instanceId": instance_id,
            "isReplaying": False,
            "parentInstanceId": None,
            "upperSchemaVersion": 1,
            "upperSchemaVersionNew": 2,
        }
        try:
            return json.loads(self.handle(OrchestrationContext(json.dumps(context))))
        except Exception as exc:  # noqa: BLE001  the SDK reports orchestrator failures as a bare Exception
            message, _, state = str(exc).partition("\n\n$OutOfProcData$:")
            return {**json.loads(state), "error": message}

    @staticmethod
    def _flatten(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        flat: list[dict[str, Any]] = []
        for action in actions:
            if action["actionType"] in (WHEN_ANY, WHEN_ALL):
                flat.extend(ReplayDriver._flatten(action["compoundActions"]))
            else:
                flat.append(action)
        return flat

    def run(self, instance_id: str, orchestration_input: Any, max_episodes: int = 500) -> ReplayRun:
        run = ReplayRun()
        run.history += [
            self._event(12),
            self._event(0, Name="orchestrator", Version="", Input=json.dumps(orchestration_input)),
        ]
        processed = 0
        ready: deque[tuple[int, dict[str, Any], int, Any]] = deque()  # one completion per episode
        for _ in range(max_episodes):
            state = self._episode(run, instance_id, orchestration_input)
            run.history.append(self._event(13))
            actions = state["actions"][0] if state.get("actions") else []
            new = self._flatten(actions[processed:])
            processed = len(actions)
            run.episodes.append(Episode(new, state.get("customStatus")))
            ready.extend(self._schedule(run, action, 1) for action in new)
            if state.get("error"):
                run.error = state["error"]
                return run
            if state.get("isDone"):
                run.output = state.get("output")
                return run
            if not ready:
                raise AssertionError(f"orchestrator waits for nothing the driver can deliver: {state}")
            run.history.append(self._event(12))
            self._deliver(run, *ready.popleft(), ready)
        raise AssertionError("orchestration did not finish")

    def _schedule(self, run: ReplayRun, action: dict[str, Any], attempt: int) -> tuple[int, dict[str, Any], int, Any]:
        """Record TaskScheduled with the next sequence id and run the activity."""
        if action["actionType"] not in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
            raise AssertionError(f"unexpected action {action}")
        task_id = self._next_id()
        name = action["functionName"]
        run.history.append(self._event(4, task_id, Name=name, Input=action["input"]))
        payload = json.loads(action["input"])
        run.calls.append((name, payload))
        if "retryOptions" in action:
            run.retry_options[name] = action["retryOptions"]
        try:
            result: Any = self.activities[name](payload)
        except Exception as exc:  # noqa: BLE001  the activity's failure becomes its TaskFailed event
            result = exc
        return task_id, action, attempt, result

    def _next_id(self) -> int:
        self.sequence += 1
        return self.sequence - 1

    def _deliver(
        self,
        run: ReplayRun,
        task_id: int,
        action: dict[str, Any],
        attempt: int,
        result: Any,
        ready: deque[tuple[int, dict[str, Any], int, Any]],
    ) -> None:
        """Append the completion; a failed retried task also gets the SDK's retry timer (§3.1)."""
        if not isinstance(result, Exception):
            run.history.append(self._event(5, TaskScheduledId=task_id, Result=json.dumps(result)))
            return
        name = action["functionName"]
        reason = f"Activity function '{name}' failed: {type(result).__name__}: {result}"
        run.history.append(self._event(6, TaskScheduledId=task_id, Reason=reason, Details=None))
        if action["actionType"] != CALL_ACTIVITY_WITH_RETRY:
            return
        timer_id = self._next_id()
        run.history.append(self._event(10, timer_id, FireAt=self.clock.isoformat()))
        run.history.append(self._event(11, TimerId=timer_id))
        if attempt < action["retryOptions"]["maxNumberOfAttempts"]:
            ready.appendleft(self._schedule(run, action, attempt + 1))
