"""Sequence ids when several retry failures and timers arrive in one episode.

The host reads the ids from the SDK's own state after each episode (``episode.run_episode``);
this test drives the SDK with hand-built batched histories, in the order DTFx would deliver
them, and checks that every id the host schedules is the one the SDK later resolves (and that
the replays, retry timers and re-attempts included, match the history's scheduled steps).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import pytest

from durable_host.episode import Scheduled, run_episode, sdk_event
from durable_host.events import EventType, event

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def _orchestrator(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    results = yield context.task_all(
        [
            context.call_activity_with_retry("A", options, "a"),
            context.call_activity_with_retry("B", options, "b"),
            context.call_activity("C", "c"),
        ]
    )
    return results


class _Handle:
    orchestrator_function = staticmethod(_orchestrator)


class Driver:
    """Appends episodes to a history the way the engine does and runs the SDK over it."""

    def __init__(self):
        self.history = [
            event(EventType.OrchestratorStarted, T0.timestamp()),
            event(EventType.ExecutionStarted, T0.timestamp(), Name="o", Input=None, Version=""),
        ]
        self.next_id = 0
        self.actions = 0
        self.step = 0

    def episode(self, *delivered: dict):
        self.step += 1
        now = T0 + timedelta(seconds=10 * self.step)
        if self.step > 1:
            self.history += [event(EventType.OrchestratorStarted, now.timestamp()), *delivered]
        result = run_episode(
            _Handle,
            instance_id="i",
            parent_instance_id=None,
            context_input=None,
            history=[sdk_event(e) for e in self.history],
            head=self.history[:2],
            first_new_id=self.next_id,
            prev_action_count=self.actions,
            episode_time=now,
        )
        assert result.error is None, result.error
        self.next_id, self.actions = result.next_task_id, result.action_count
        # what the engine records for them, so that every later replay is also checked against it
        self.history += [scheduled_event(s, now) for s in result.scheduled]
        self.history.append(event(EventType.OrchestratorCompleted, now.timestamp()))
        return result, now


def scheduled_event(item: Scheduled, now: datetime) -> dict:
    if item.kind == "timer":
        return event(EventType.TimerCreated, now.timestamp(), item.task_id, FireAt=item.fire_at.isoformat())
    return event(EventType.TaskScheduled, now.timestamp(), item.task_id, Name=item.name, Input=item.input)


def failed(task_id: int) -> dict:
    return event(EventType.TaskFailed, TaskScheduledId=task_id, Reason="boom", Details=None)


def completed(task_id: int, value: str) -> dict:
    return event(EventType.TaskCompleted, TaskScheduledId=task_id, Result=f'"{value}"')


def fired(timer_id: int) -> dict:
    return event(EventType.TimerFired, TimerId=timer_id)


def test_batched_failures_and_timers_get_the_sdk_ids():
    d = Driver()
    first, _ = d.episode()
    assert [(s.kind, s.task_id, s.name) for s in first.scheduled] == [
        ("activity", 0, "A"),
        ("activity", 1, "B"),
        ("activity", 2, "C"),
    ]

    # Both retrying tasks fail and C completes, all in one episode: two retry timers.
    second, now = d.episode(failed(1), completed(2, "C!"), failed(0))
    assert [(s.kind, s.task_id) for s in second.scheduled] == [("timer", 3), ("timer", 4)]
    assert all(s.fire_at == now + timedelta(seconds=1) for s in second.scheduled)

    # B failed first, so timer 3 is B's: firing both (in reverse) re-attempts each task.
    third, _ = d.episode(fired(4), fired(3))
    reattempts = {s.task_id: (s.name, s.input) for s in third.scheduled}
    assert reattempts == {5: ("A", '"a"'), 6: ("B", '"b"')}

    # A's re-attempt (id 5) fails again while B's (id 6) succeeds: one more timer, for A.
    fourth, _ = d.episode(completed(6, "B!"), failed(5))
    assert [(s.kind, s.task_id) for s in fourth.scheduled] == [("timer", 7)]
    fifth, _ = d.episode(fired(7))
    assert [(s.kind, s.task_id, s.name) for s in fifth.scheduled] == [("activity", 8, "A")]
    last, _ = d.episode(completed(8, "A!"))
    assert last.done and last.output == ["A!", "B!", "C!"]


def test_exhausted_retry_waits_for_a_final_immediate_timer():
    d = Driver()
    d.episode()
    d.episode(completed(0, "A!"), completed(2, "C!"), failed(1))  # timer 3 for B
    d.episode(fired(3))  # B attempt 2: id 4
    d.episode(failed(4))  # timer 5
    d.episode(fired(5))  # B attempt 3: id 6
    result, now = d.episode(failed(6))
    # after the last attempt, DTFx still schedules one timer that fires at once
    assert [(s.kind, s.task_id, s.fire_at) for s in result.scheduled] == [("timer", 7, now)]
    d.history += [event(EventType.OrchestratorStarted, now.timestamp()), fired(7)]
    final = run_episode(
        _Handle,
        instance_id="i",
        parent_instance_id=None,
        context_input=None,
        history=[sdk_event(e) for e in d.history],
        head=d.history[:2],
        first_new_id=d.next_id,
        prev_action_count=d.actions,
        episode_time=now,
    )
    assert final.error is not None and final.error.startswith("boom")
