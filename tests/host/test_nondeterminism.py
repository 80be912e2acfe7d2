"""A deployment that changes an orchestrator under a running instance fails it, as DTFx does on Azure.

The extension replays the SDK's actions into DTFx, which compares each scheduled step of the history with
the step the replay produced at the same sequence number; without that check a renamed step would receive
the old step's result. The host tests restart a real host on the same task hub with changed code; the unit
tests replay hand-built histories for the cases an app cannot easily stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import azure.durable_functions as df
import pytest

from durable_host.episode import EpisodeResult, run_episode, sdk_event
from durable_host.events import EventType, event
from durable_host.sdk_adapter import NONDETERMINISM_PREFIX, REWOUND_MARKER
from durable_host.testing import HostProcess

from .conftest import APPS, Api

CHANGED = "Was a change made to the orchestrator code after this instance had already started running?"


def _deploy(hub: Path, first_step: str) -> HostProcess:
    return HostProcess(APPS / "redeployed", hub_dir=hub, env={"REDEPLOYED_FIRST_STEP": first_step})


def _wait_for_history(api: Api, instance_id: str, event_type: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = api.status(instance_id, showHistory="true").json().get("historyEvents") or []
        if any(e["EventType"] == event_type for e in history):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {event_type} in {instance_id}'s history:\n{api.host.output[-4000:]}")


def _run_across_a_deployment(hub: Path, before: str, after: str) -> dict:
    """Start ``redeployed`` with ``before`` as its first step, wait until that step is done, restart the host
    on the same task hub with ``after`` and send ``go``; the instance's final status."""
    with _deploy(hub, before) as host:
        api = Api(host)
        r = api.session.post(f"{api.mgmt}/orchestrators/redeployed")
        assert r.status_code == 202, r.text
        iid = r.json()["id"]
        _wait_for_history(api, iid, "TaskCompleted")
    with _deploy(hub, after) as host:
        api = Api(host)
        r = api.session.post(f"{api.mgmt}/instances/{iid}/raiseEvent/go", json="ok")
        assert r.status_code == 202, r.text
        return api.wait(iid)


@pytest.mark.host
def test_an_unchanged_orchestrator_goes_on_after_a_deployment(tmp_path: Path) -> None:
    body = _run_across_a_deployment(tmp_path, "first_step", "first_step")
    assert body["runtimeStatus"] == "Completed", body
    assert body["output"] == ["first x", "ok"]


@pytest.mark.host
@pytest.mark.parametrize(
    ("after", "message"),
    [
        (
            "renamed_step",  # the old step's result would go to the renamed one
            "A previous execution of this orchestration scheduled an activity task with sequence number 0 named "
            "'first_step', but the current orchestration replay instead scheduled an activity task named "
            f"'renamed_step' with this sequence number.  {CHANGED}",
        ),
        (
            "nothing",  # the step is gone: the instance would complete at once
            "A previous execution of this orchestration scheduled an activity task with sequence ID 0 and name "
            f"'first_step' (version ''), but the current replay execution hasn't (yet?) scheduled this task. {CHANGED}",
        ),
        (
            "timer",  # a timer where the activity was
            "A previous execution of this orchestration scheduled an activity task with sequence number 0 named "
            "'first_step', but the current orchestration replay instead produced a CreateTimerOrchestratorAction "
            f"action with this sequence number. {CHANGED}",
        ),
    ],
    ids=["renamed", "removed", "replaced-by-a-timer"],
)
def test_a_changed_first_step_fails_the_instance_with_dtfxs_message(tmp_path: Path, after: str, message: str) -> None:
    body = _run_across_a_deployment(tmp_path, "first_step", after)
    assert body["runtimeStatus"] == "Failed", body
    assert body["output"] == NONDETERMINISM_PREFIX + message


T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def _replay_after(first_step: dict, orchestrator: Callable[[Any], Any]) -> EpisodeResult:
    """Replay ``orchestrator`` over a history whose first episode scheduled ``first_step`` (sequence number 0)."""
    return _replay([first_step, event(EventType.OrchestratorCompleted, T0.timestamp())], orchestrator)


def _replay(episodes: list[dict], orchestrator: Callable[[Any], Any]) -> EpisodeResult:
    """Replay ``orchestrator`` over its start, ``episodes`` and the start of one more episode."""
    history = [
        event(EventType.OrchestratorStarted, T0.timestamp()),
        event(EventType.ExecutionStarted, T0.timestamp(), Name="o", Input=None, Version=""),
        *episodes,
        event(EventType.OrchestratorStarted, T0.timestamp() + 1),
    ]
    handle = SimpleNamespace(orchestrator_function=orchestrator)
    return run_episode(
        cast(Any, handle),
        instance_id="i",
        parent_instance_id=None,
        context_input=None,
        history=[sdk_event(e) for e in history],
        head=history[:2],
        first_new_id=1,
        prev_action_count=1,
        episode_time=T0 + timedelta(seconds=1),
    )


@pytest.mark.unit
def test_activity_names_are_compared_ignoring_case_as_dtfx_does() -> None:
    def orchestrator(context: Any) -> Any:
        yield context.call_activity("SAY_HELLO", "x")
        return "done"

    scheduled = event(EventType.TaskScheduled, T0.timestamp(), 0, Name="say_hello", Input='"x"')
    result = _replay_after(scheduled, orchestrator)
    assert result.error is None and not result.nondeterministic and result.scheduled == []


@pytest.mark.unit
def test_a_renamed_sub_orchestration_is_a_divergence() -> None:
    def orchestrator(context: Any) -> Any:
        yield context.call_sub_orchestrator("new_child", None, "child-1")
        return "done"

    created = event(
        EventType.SubOrchestrationInstanceCreated,
        T0.timestamp(),
        0,
        Name="old_child",
        Version="1.5",
        InstanceId="child-1",
        Input=None,
    )
    result = _replay_after(created, orchestrator)
    assert result.nondeterministic and not result.done
    assert result.error == (
        f"{NONDETERMINISM_PREFIX}A previous execution of this orchestration scheduled a sub-orchestration task with "
        "sequence ID 0 and name 'old_child' (version '1.5', instance ID 'child-1'), but the current orchestration "
        f"replay instead scheduled a sub-orchestration task with name new_child at this sequence number. {CHANGED}"
    )


@pytest.mark.unit
def test_an_activity_where_a_timer_was_is_a_divergence() -> None:
    def orchestrator(context: Any) -> Any:
        yield context.call_activity("say_hello", "x")
        return "done"

    timer = event(EventType.TimerCreated, T0.timestamp(), 0, FireAt=T0.isoformat())
    result = _replay_after(timer, orchestrator)
    assert result.nondeterministic
    assert result.error == (
        f"{NONDETERMINISM_PREFIX}A previous execution of this orchestration scheduled a timer task with sequence "
        "number 0 named but the current orchestration replay instead produced a ScheduleTaskOrchestratorAction "
        f"action with this sequence number. {CHANGED}"
    )


@pytest.mark.unit
@pytest.mark.filterwarnings("ignore:Potential duplicate Task completion")  # the SDK's, for the orphaned TimerFired
def test_a_rewound_history_is_not_checked() -> None:
    """A rewind removes the failures, so the SDK no longer numbers the retry timer they caused (DTFx's rewind
    has the same problem); the host lets the rewound instance go on rather than fail it for a change that was
    never made."""

    def orchestrator(context: Any) -> Any:
        first = yield context.call_activity_with_retry("A", df.RetryOptions(1000, 3), "a")
        second = yield context.call_activity("B", "b")
        return [first, second]

    now = T0.timestamp()
    # A failed once (its TaskFailed is gone), retry timer 1 fired, attempt 2 succeeded, B (id 3) failed (gone too)
    after_a_rewind = [
        event(EventType.TaskScheduled, now, 0, Name="A", Input='"a"'),
        event(EventType.TimerCreated, now, 1, FireAt=T0.isoformat()),
        event(EventType.TimerFired, now, TimerId=1, FireAt=T0.isoformat()),
        event(EventType.TaskScheduled, now, 2, Name="A", Input='"a"'),
        event(EventType.TaskCompleted, now, TaskScheduledId=2, Result='"A!"'),
        event(EventType.TaskScheduled, now, 3, Name="B", Input='"b"'),
    ]
    unmarked = _replay(after_a_rewind, orchestrator)
    assert unmarked.nondeterministic  # what the check says of this history without the marker
    marker = event(EventType.GenericEvent, now, Data=f"{REWOUND_MARKER}x")
    rewound = _replay([*after_a_rewind, marker], orchestrator)
    assert rewound.error is None and not rewound.nondeterministic
