"""The instance state machine, in-process: no host process, no HTTP, no writer thread.

Two levels, in the spirit of durabletask-python's executor tests (history in, decisions out):

* ``lifecycle`` on its own: every transition from every status, allowed or refused, and what
  each one writes to the instance and its history;
* the ``Engine`` and ``HubOperations`` over an in-memory SQLite store that executes each write at
  once, with real SDK orchestrators: start, events, suspend/resume, terminate, complete, fail,
  continue-as-new, rewind, restart, and recovery from the store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

from durable_host import lifecycle
from durable_host.activities import Outcome, WorkItem
from durable_host.engine import Engine
from durable_host.events import EventType, event
from durable_host.indexing import DurableFunction, FunctionIndex
from durable_host.lifecycle import ALLOWED, Transition, TransitionRefused
from durable_host.model import TERMINAL, ControlKind, Instance, Message, RuntimeStatus
from durable_host.operations import Conflict, Gone, HubOperations, PreconditionFailed
from durable_host.store import Operation, Store

pytestmark = pytest.mark.unit

S = RuntimeStatus
NOW = 1_700_000_000.0


# ---------------------------------------------------------------------- helpers


def instance(status: RuntimeStatus = S.Pending, **fields: Any) -> Instance:
    inst = Instance("inst", "orch", "exec-1", status, None, NOW, NOW, **fields)
    inst.history = [
        event(EventType.OrchestratorStarted, NOW),
        event(EventType.ExecutionStarted, NOW, Name="orch", Input=None, Version=""),
    ]
    return inst


def message(kind: ControlKind, mid: int = 1, **fields: Any) -> Message:
    return Message(mid, "inst", fields.pop("execution_id", None), kind, **fields)


def raised(name: str, value: Any, mid: int = 1, execution_id: str | None = None) -> Message:
    ev = event(EventType.EventRaised, NOW, Name=name, Input=json.dumps(value))
    return Message(mid, "inst", execution_id, ControlKind.EVENT, ev)


def kinds(history: list[dict[str, Any]] | None) -> list[EventType]:
    assert history is not None
    return [EventType(e["EventType"]) for e in history]


# Each transition as a call on an instance, for the refusal table.
CALLS: dict[Transition, Callable[[Instance], object]] = {
    Transition.START: lifecycle.start,
    Transition.EVENT: lambda i: lifecycle.record(i, [event(EventType.OrchestratorStarted, NOW)]),
    Transition.RECEIVE: lambda i: lifecycle.receive(i, [], NOW),
    Transition.COMPLETE: lambda i: lifecycle.complete(i, '"done"', NOW),
    Transition.FAIL: lambda i: lifecycle.fail(i, '"boom"', NOW),
    Transition.TERMINATE: lambda i: lifecycle.terminate(i, "stop", NOW),
    Transition.CONTINUE_AS_NEW: lambda i: lifecycle.continue_as_new(i, "1"),
    Transition.REWIND: lambda i: lifecycle.rewind(i, "exec-2", [], NOW),
    Transition.CREATE: lambda i: lifecycle.create("inst", "orch", None, NOW, replaces=i),
}


# ---------------------------------------------------------------------- the table


def test_every_transition_has_its_allowed_statuses() -> None:
    assert set(ALLOWED) == set(Transition)
    assert ALLOWED[Transition.REWIND] == {S.Failed}
    assert ALLOWED[Transition.RESUME] == {S.Suspended}
    assert ALLOWED[Transition.TERMINATE] == {S.Pending, S.Running, S.Suspended}
    assert ALLOWED[Transition.CREATE] == ALLOWED[Transition.RESTART] == TERMINAL
    # ContinuedAsNew is a DTFx status the host never leaves an instance in: nothing starts from it.
    assert not any(S.ContinuedAsNew in statuses for statuses in ALLOWED.values())


@pytest.mark.parametrize("transition", list(CALLS), ids=str)
@pytest.mark.parametrize("status", list(RuntimeStatus), ids=str)
def test_each_transition_runs_exactly_from_its_allowed_statuses(transition: Transition, status: RuntimeStatus) -> None:
    inst = instance(status)
    if status in ALLOWED[transition]:
        CALLS[transition](inst)
        assert lifecycle.allows(transition, status)
    else:
        with pytest.raises(TransitionRefused, match=f"cannot {transition.value} from {status.value}"):
            CALLS[transition](inst)
        assert inst.status == status, "a refused transition changes nothing"


# ---------------------------------------------------------------------- single transitions


def test_create_is_pending_with_a_new_execution_and_replaces_only_finished_instances() -> None:
    inst = lifecycle.create("inst", "orch", '"in"', NOW, version="2.0")
    assert (inst.status, inst.input, inst.version, inst.created, inst.updated) == (S.Pending, '"in"', "2.0", NOW, NOW)
    again = lifecycle.create("inst", "orch", None, NOW, replaces=instance(S.Completed))
    assert again.execution_id != inst.execution_id
    with pytest.raises(TransitionRefused):
        lifecycle.create("inst", "orch", None, NOW, replaces=instance(S.Running))


def test_execution_started_names_the_parent_execution() -> None:
    inst = instance(parent={"instance_id": "p", "execution_id": "pe", "task_id": 4}, version="1")
    started = lifecycle.execution_started(inst, NOW)
    assert started["EventType"] == EventType.ExecutionStarted
    assert started["ParentInstance"]["OrchestrationInstance"] == {"InstanceId": "p", "ExecutionId": "pe"}
    assert started["ParentInstance"]["TaskScheduleId"] == 4
    assert started["OrchestrationInstance"] == {"InstanceId": "inst", "ExecutionId": "exec-1"}
    assert started["Version"] == "1"


def test_start_runs_a_pending_instance_once() -> None:
    inst = instance(S.Pending)
    lifecycle.start(inst)
    assert inst.status == S.Running
    with pytest.raises(TransitionRefused):
        lifecycle.start(inst)


def test_record_appends_history_and_sdk_events_together() -> None:
    inst = instance(S.Running)
    inst.sdk_events = [lifecycle.sdk_event(e) for e in inst.history or []]
    lifecycle.record(inst, [event(EventType.OrchestratorStarted, NOW), raised("go", 1).event or {}])
    assert kinds(inst.history)[-2:] == [EventType.OrchestratorStarted, EventType.EventRaised]
    assert len(inst.sdk_events) == len(inst.history or [])


def test_complete_appends_the_end_of_the_execution() -> None:
    inst = instance(S.Running)
    lifecycle.complete(inst, '"out"', NOW + 1)
    assert (inst.status, inst.output, inst.updated) == (S.Completed, '"out"', NOW + 1)
    assert kinds(inst.history)[-2:] == [EventType.OrchestratorCompleted, EventType.ExecutionCompleted]
    assert inst.history is not None
    assert inst.history[-1]["OrchestrationStatus"] == 1
    assert inst.history[-1]["Result"] == '"out"'


def test_fail_is_allowed_before_the_first_episode() -> None:
    """A missing orchestrator function fails the instance while it is still Pending."""
    inst = instance(S.Pending)
    lifecycle.fail(inst, '"no such function"', NOW)
    assert inst.status == S.Failed
    assert inst.history is not None and inst.history[-1]["OrchestrationStatus"] == 3


def test_terminate_records_the_reason_as_output() -> None:
    inst = instance(S.Suspended)
    lifecycle.terminate(inst, "enough", NOW)
    assert (inst.status, inst.output) == (S.Terminated, '"enough"')
    assert kinds(inst.history)[-3:] == [
        EventType.ExecutionTerminated,
        EventType.OrchestratorCompleted,
        EventType.ExecutionCompleted,
    ]
    assert inst.history is not None and inst.history[-1]["OrchestrationStatus"] == 5


def test_terminate_without_reason_is_an_empty_string() -> None:
    inst = instance(S.Running)
    lifecycle.terminate(inst, None, NOW)
    assert inst.output == '""'


def test_continue_as_new_starts_a_fresh_pending_execution() -> None:
    inst = instance(S.Running, next_task_id=5, action_count=3, output=None)
    inst.persisted = 7
    lifecycle.continue_as_new(inst, "42")
    assert inst.status == S.Pending, "ContinuedAsNew is never left on the instance"
    assert inst.execution_id != "exec-1"
    assert (inst.input, inst.next_task_id, inst.action_count, inst.persisted) == ('"42"', 0, 0, 0)
    assert inst.history == [] and inst.sdk_events == []
    lifecycle.continue_as_new(instance(S.Running), None)  # no input: null


def test_rewind_revives_a_failed_instance_with_its_history() -> None:
    inst = instance(S.Failed, output='"boom"')
    kept = [event(EventType.OrchestratorStarted, NOW)]
    lifecycle.rewind(inst, "exec-2", kept, NOW + 5)
    assert (inst.status, inst.output, inst.execution_id, inst.updated) == (S.Running, None, "exec-2", NOW + 5)
    assert inst.history == kept and inst.persisted == 1 and len(inst.sdk_events) == 1


def test_restart_in_place_needs_a_finished_instance() -> None:
    assert lifecycle.restart_allowed(instance(S.Completed), new_id=False)
    assert not lifecycle.restart_allowed(instance(S.Running), new_id=False)
    assert lifecycle.restart_allowed(instance(S.Running), new_id=True)


# ---------------------------------------------------------------------- receiving messages


def test_events_of_the_current_execution_are_delivered_in_order() -> None:
    inst = instance(S.Running)
    msgs = [raised("a", 1, 1), raised("b", 2, 2, execution_id="exec-1"), raised("old", 3, 3, execution_id="exec-0")]
    received = lifecycle.receive(inst, msgs, NOW)
    assert [m.id for m in received.deliver] == [1, 2], "events of another execution are dropped"
    assert not received.held and not received.terminated


def test_suspend_holds_events_until_resume() -> None:
    inst = instance(S.Running)
    received = lifecycle.receive(inst, [message(ControlKind.SUSPEND, 1, reason="wait"), raised("a", 1, 2)], NOW)
    assert inst.status == S.Suspended
    assert [m.id for m in received.held] == [2] and not received.deliver
    assert kinds(inst.history)[-1] == EventType.ExecutionSuspended
    received = lifecycle.receive(inst, [message(ControlKind.RESUME, 3), *received.held], NOW)
    assert inst.status == S.Running
    assert [m.id for m in received.deliver] == [2]
    assert kinds(inst.history)[-1] == EventType.ExecutionResumed


def test_suspend_and_resume_out_of_place_are_ignored() -> None:
    inst = instance(S.Running)
    lifecycle.receive(inst, [message(ControlKind.RESUME)], NOW)
    assert inst.status == S.Running
    suspended = instance(S.Suspended)
    before = len(suspended.history or [])
    lifecycle.receive(suspended, [message(ControlKind.SUSPEND)], NOW)
    assert suspended.status == S.Suspended and len(suspended.history or []) == before


def test_terminate_ends_the_batch() -> None:
    inst = instance(S.Running)
    received = lifecycle.receive(inst, [message(ControlKind.TERMINATE, 1, reason="r"), raised("a", 1, 2)], NOW)
    assert received.terminated and not received.deliver
    assert inst.status == S.Terminated


def test_a_finished_instance_receives_nothing() -> None:
    with pytest.raises(TransitionRefused):
        lifecycle.receive(instance(S.Completed), [raised("a", 1)], NOW)


# ---------------------------------------------------------------------- the engine over an in-memory store


class InlineStore(Store):
    """The task hub in an in-memory SQLite database; every write executes at once."""

    def __init__(self) -> None:
        super().__init__(Path(":memory:"))
        self.operations: list[Operation] = []

    def submit_nowait(self, operation: Operation) -> None:
        self.operations.append(operation)
        for future, _, exc in self._execute(self._conn, [(operation, None, [])]):
            assert future is None and exc is None, exc
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)  # run by the next write, which commits at once

    def submit(self, operation: Operation) -> asyncio.Future[None]:
        self.submit_nowait(operation)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def query(self, fn: Callable[[Any], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(fn(self._conn))
        return future


class Activities:
    """Stands in for the dispatcher: work items wait here until the test completes them."""

    def __init__(self) -> None:
        self.items: list[WorkItem] = []

    def submit(self, item: WorkItem) -> None:
        self.items.append(item)


def hello(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    greeting = yield context.call_activity("say", context.get_input())
    return f"{greeting}!"


def waiter(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    value = yield context.wait_for_external_event("go")
    return value


def counter(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    n = context.get_input()
    yield context.call_activity("say", n)
    if n < 2:
        context.continue_as_new(n + 1)
        return None
    return n


def parent(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    result = yield context.call_sub_orchestrator("hello", "child", "child-1")
    return result


class Point:
    """A user type the SDK serializes with its ``to_json`` (as Azure writes output and custom status)."""

    def __init__(self, x: int) -> None:
        self.x = x

    def to_json(self) -> dict[str, int]:
        return {"x": self.x}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Point:
        return cls(data["x"])


def status_with_a_datetime(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    context.set_custom_status({"at": context.current_utc_datetime})
    yield context.call_activity("say", "a")


def status_with_an_object(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    context.set_custom_status(Point(1))
    yield context.call_activity("say", "a")
    return Point(2)  # the SDK refuses an output that plain JSON cannot hold: Failed, on Azure too


def calls_an_entity(context: df.DurableOrchestrationContext) -> Iterator[Any]:
    yield context.call_entity(df.EntityId("counter", "k"), "add", 1)


ORCHESTRATORS = {
    "hello": hello,
    "waiter": waiter,
    "counter": counter,
    "parent": parent,
    "status_with_a_datetime": status_with_a_datetime,
    "status_with_an_object": status_with_an_object,
    "calls_an_entity": calls_an_entity,
}


def function(name: str, fn: Callable[..., Any]) -> DurableFunction:
    return DurableFunction(
        name=name,
        fn=df.Orchestrator.create(fn),
        trigger_param="context",
        is_async=False,
        wants_context=False,
        client_param=None,
        registered_name=name,
    )


class Hub:
    """An engine, its store and its activities, driven step by step by the test."""

    def __init__(self, store: InlineStore | None = None) -> None:
        index = FunctionIndex(orchestrators={n: function(n, f) for n, f in ORCHESTRATORS.items()})
        self.store = store or InlineStore()
        self.engine = Engine(index, self.store)
        self.activities = Activities()
        self.engine.activities = self.activities  # type: ignore[assignment]  # a fake dispatcher
        self.ops = HubOperations(self.engine)
        self.engine._make_ready = self._make_ready  # type: ignore[method-assign]  # no pacing timers

    def start(self, name: str, instance_id: str, input_: Any = None) -> Instance:
        # As the SDK client sends it: a JSON string token holding the input's JSON text.
        input_json = json.dumps(json.dumps(input_)) if input_ is not None else None
        ops = self.engine.create_instance(name, instance_id, input_json)
        self.store.submit_nowait(ops)
        self.run()
        return self.engine.instances[instance_id]

    def send(self, instance_id: str, kind: ControlKind, **fields: Any) -> None:
        msg = self.engine.new_message(instance_id, None, kind, **fields)
        self.store.submit_nowait(self.engine.send(msg))
        self.run()

    def run(self) -> None:
        """Run episodes until no instance is ready (what ``Engine._run_ready`` does on the loop)."""
        while self.engine._ready:
            inst = self.engine._ready.popleft()
            inst.queued = False
            self.engine.process(inst)

    def _make_ready(self, inst: Instance) -> None:
        """``Engine._make_ready`` without its pacing (a timer on the event loop): ready at once."""
        if not inst.queued:
            inst.queued = True
            self.engine._enqueue(inst)

    def finish_activities(self, ok: bool = True) -> None:
        items, self.activities.items = self.activities.items, []
        for item in items:
            value = json.loads(item.input) if item.input else None
            outcome = (
                Outcome(True, result=json.dumps(f"hello {value}"))
                if ok
                else Outcome(False, reason=f"Activity function '{item.name}' failed: ValueError: no", details="{}")
            )
            self.engine.on_activity_done(item, outcome)
        self.run()

    def history(self, instance_id: str) -> list[EventType]:
        return [EventType(e["EventType"]) for e in self.store.load_history(instance_id)]

    def row(self, instance_id: str) -> dict[str, Any]:
        return next(i for i in self.store.load().instances if i.instance_id == instance_id).__dict__


def test_engine_runs_an_instance_from_pending_to_completed() -> None:
    hub = Hub()
    inst = hub.start("hello", "i1", "Tokyo")
    assert inst.status == S.Running
    assert [i.name for i in hub.activities.items] == ["say"]
    assert hub.history("i1") == [
        EventType.OrchestratorStarted,
        EventType.ExecutionStarted,
        EventType.TaskScheduled,
        EventType.OrchestratorCompleted,
    ]
    hub.finish_activities()
    assert (inst.status, inst.output) == (S.Completed, '"hello Tokyo!"')
    assert hub.history("i1")[-4:] == [
        EventType.OrchestratorStarted,
        EventType.TaskCompleted,
        EventType.OrchestratorCompleted,
        EventType.ExecutionCompleted,
    ]
    row = hub.row("i1")
    assert (row["status"], row["output"]) == (S.Completed, '"hello Tokyo!"')
    assert hub.store.load().messages == [], "every message was consumed"


def test_engine_holds_events_while_suspended_and_terminates() -> None:
    hub = Hub()
    inst = hub.start("waiter", "w1")
    hub.send("w1", ControlKind.SUSPEND, reason="pause")
    assert inst.status == S.Suspended
    hub.send("w1", ControlKind.EVENT, event_=event(EventType.EventRaised, Name="go", Input='"x"'))
    assert inst.status == S.Suspended and len(inst.inbox) == 1
    assert len(hub.store.load().messages) == 1, "a held event stays in the store"
    hub.send("w1", ControlKind.RESUME)
    assert (inst.status, inst.output) == (S.Completed, '"x"')
    assert EventType.ExecutionSuspended in hub.history("w1") and EventType.ExecutionResumed in hub.history("w1")

    other = hub.start("waiter", "w2")
    hub.send("w2", ControlKind.TERMINATE, reason="stop")
    assert (other.status, other.output) == (S.Terminated, '"stop"')
    hub.send("w2", ControlKind.EVENT, event_=event(EventType.EventRaised, Name="go", Input='"late"'))
    assert other.status == S.Terminated, "late messages of a finished instance are dropped"
    assert hub.store.load().messages == []


def test_engine_continues_as_new_with_a_fresh_history() -> None:
    hub = Hub()
    inst = hub.start("counter", "c1", 0)
    first_execution = inst.execution_id
    hub.finish_activities()  # n=0 -> continue as new with 1
    assert inst.execution_id != first_execution
    assert inst.status == S.Running
    assert hub.history("c1")[:2] == [EventType.OrchestratorStarted, EventType.ExecutionStarted]
    hub.finish_activities()  # n=1 -> 2
    hub.finish_activities()  # n=2 -> done
    assert (inst.status, inst.output) == (S.Completed, "2")


def test_engine_fails_and_rewinds_through_operations() -> None:
    hub = Hub()
    inst = hub.start("hello", "f1", "x")
    hub.finish_activities(ok=False)
    assert inst.status == S.Failed
    assert json.loads(inst.output or "null").startswith("Orchestrator function 'hello' failed: Activity function")
    failed_execution = inst.execution_id

    async def rewind() -> None:
        await hub.ops.rewind("f1", "retry")

    asyncio.run(rewind())
    assert inst.status == S.Running and inst.execution_id != failed_execution
    assert [i.name for i in hub.activities.items] == ["say"], "the failed activity is issued again"
    assert EventType.TaskFailed not in hub.history("f1")
    hub.run()
    hub.finish_activities()
    assert (inst.status, inst.output) == (S.Completed, '"hello x!"')


def test_operations_refuse_what_the_lifecycle_refuses() -> None:
    hub = Hub()
    hub.start("waiter", "r1")

    async def scenario() -> None:
        with pytest.raises(Conflict):
            await hub.ops.start("waiter", "r1", None)
        with pytest.raises(PreconditionFailed):
            await hub.ops.rewind("r1", None)
        with pytest.raises(Conflict):
            await hub.ops.restart("r1", new_id=False)
        await hub.ops.terminate("r1", "x")
        hub.run()
        with pytest.raises(Gone):
            await hub.ops.raise_event("r1", "go", None)
        with pytest.raises(Gone):
            await hub.ops.rewind("r1", None)  # finished, but not Failed
        restarted = await hub.ops.restart("r1", new_id=False)
        assert restarted.status == S.Pending and restarted.instance_id == "r1"
        hub.run()
        assert restarted.status == S.Running
        assert EventType.ExecutionStarted in kinds(await hub.ops.history(restarted))

    asyncio.run(scenario())


def test_sub_orchestration_reports_to_its_parent() -> None:
    hub = Hub()
    parent_inst = hub.start("parent", "p1")
    child = hub.engine.instances["child-1"]
    assert child.parent == {"instance_id": "p1", "execution_id": parent_inst.execution_id, "task_id": 0}
    hub.finish_activities()
    assert child.status == S.Completed
    assert (parent_inst.status, parent_inst.output) == (S.Completed, '"hello child!"')


def test_recovery_rebuilds_instances_from_the_store() -> None:
    hub = Hub()
    hub.start("hello", "k1", "Oslo")
    hub.start("waiter", "k2")
    hub.send("k2", ControlKind.SUSPEND)
    # A new engine over the same database: what a restart after SIGKILL reads.
    again = Hub(hub.store)
    again.engine.recover()
    k1, k2 = again.engine.instances["k1"], again.engine.instances["k2"]
    assert (k1.status, k2.status) == (S.Running, S.Suspended)
    assert k1.history is not None and len(k1.history) == len(k1.sdk_events) == 4
    assert [i.name for i in again.activities.items] == ["say"], "unfinished activities run again"
    again.finish_activities()
    assert (k1.status, k1.output) == (S.Completed, '"hello Oslo!"')


def test_a_suspend_and_resume_before_the_first_episode_leave_the_instance_able_to_run() -> None:
    """Right after continue-as-new, or right after a start, the instance is Pending: the control events come
    before OrchestratorStarted in its history, and the SDK's context must still find that one."""
    hub = Hub()
    hub.store.submit_nowait(hub.engine.create_instance("waiter", "s1", None))
    hub.send("s1", ControlKind.SUSPEND, reason="p")  # delivered in the same run as ExecutionStarted
    inst = hub.engine.instances["s1"]
    assert inst.status == S.Suspended
    hub.send("s1", ControlKind.RESUME)
    hub.send("s1", ControlKind.EVENT, event_=event(EventType.EventRaised, Name="go", Input='"x"'))
    assert (inst.status, inst.output) == (S.Completed, '"x"')


def test_a_custom_status_json_cannot_hold_fails_the_orchestration_instead_of_leaving_it_running() -> None:
    hub = Hub()
    inst = hub.start("status_with_a_datetime", "c1")
    assert inst.status == S.Failed and hub.activities.items == []
    assert "custom status cannot be serialized" in (inst.output or "")


def test_custom_status_and_output_objects_are_treated_as_the_sdk_treats_them() -> None:
    hub = Hub()
    inst = hub.start("status_with_an_object", "c2")
    assert json.loads(inst.custom_status or "null")["__data__"] == {"x": 1}
    hub.finish_activities()
    assert inst.status == S.Failed and "Object of type Point is not JSON serializable" in (inst.output or "")


def test_an_episode_the_host_cannot_run_fails_the_instance_and_leaves_nothing_behind() -> None:
    """An entity call in an app without entities (the host runs none): Azure fails the orchestration; the
    host failed inside the episode and left the instance Running for good."""
    hub = Hub()
    inst = hub.start("calls_an_entity", "e1")
    assert inst.status == S.Failed and "could not run this episode" in (inst.output or "")
    assert hub.store.load().messages == [] and hub.row("e1")["status"] == S.Failed
