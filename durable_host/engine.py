"""The orchestration engine: instances, messages, timers and orchestrator episodes.

This is the part of the Durable Task Framework the host re-implements. Design:

* **Memory is the working copy, SQLite the log.** Every change to an instance is applied in
  memory and queued to the store as one operation (see ``store.py``); only client-visible
  answers wait for durability.
* **Messages.** Everything that reaches an orchestration (its start, activity results, timers,
  raised events, sub-orchestration results, terminate/suspend/resume) is a ``Message`` in its
  inbox. One episode consumes *all* messages that are ready, like DTFx, so a fan-in of 1,000
  activities replays the orchestrator a few times rather than 1,000 times.
* **One episode at a time per instance**, on the event loop thread: an episode is pure,
  deterministic Python that must not block, and running it inline avoids thread hand-offs.
* **Ids come from the SDK** (see ``episode.py``), so batching never breaks retry numbering.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from . import lifecycle, sdk_adapter
from .activities import ActivityDispatcher, Outcome, WorkItem
from .episode import Scheduled, run_episode
from .events import SCHEDULING_EVENTS, EventType, event, iso_ts, parse_ts
from .indexing import FunctionIndex
from .lifecycle import Transition
from .model import ControlKind, Instance, Message, ParentRef, RuntimeStatus
from .store import Operation, Store

log = logging.getLogger("durable_host")

# Yield the event loop to I/O after this much episode work (seconds).
EPISODE_SLICE = 0.01


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def execution_head(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first OrchestratorStarted and ExecutionStarted of an execution, which the SDK's context reads.

    Not simply the first two events: a suspend and resume of a Pending instance come before them."""
    wanted = (EventType.OrchestratorStarted, EventType.ExecutionStarted)
    return [next(e for e in history if e["EventType"] == kind) for kind in wanted]


def context_input(token_json: str | None) -> str | None:
    """The ``input`` field of the SDK context: a string token's value, else the JSON text."""
    if token_json is None:
        return None
    token = json.loads(token_json)
    return token if isinstance(token, str) else token_json


def orchestrator_failure(name: str, error: str) -> str:
    return f"Orchestrator function '{name}' failed: {error}"


class Engine:
    """Owns every instance of one task hub and runs their episodes."""

    def __init__(self, index: FunctionIndex, store: Store, *, default_version: str | None = None):
        sdk_adapter.install_fast_timestamps()
        self.index = index
        self.store = store
        self.default_version = default_version  # host.json ``defaultVersion``
        self.instances: dict[str, Instance] = {}
        self.activities: ActivityDispatcher | None = None
        self._ready: deque[Instance] = deque()
        self._wake = asyncio.Event()
        self._waiters: dict[str, list[asyncio.Future[Instance]]] = {}
        self._next_message_id = 1
        self._next_activity_id = 1
        self._runner: asyncio.Task[None] | None = None
        self.episodes = 0

    # ------------------------------------------------------------------ lifecycle

    def recover(self) -> None:
        """Rebuild memory from the store: unfinished work continues where the log left it."""
        snapshot = self.store.load()
        self._next_message_id = snapshot.max_message_id + 1
        self._next_activity_id = snapshot.max_activity_id + 1
        for inst in snapshot.instances:
            self.instances[inst.instance_id] = inst
            if not inst.terminal:
                lifecycle.load_history(inst, self.store.load_history(inst.instance_id))
        for msg in snapshot.messages:
            self._deliver(msg)
        assert self.activities is not None
        for item in snapshot.activities:
            self.activities.submit(item)
        unfinished = sum(1 for i in self.instances.values() if not i.terminal)
        if unfinished or snapshot.activities:
            log.info(
                "Task hub recovered: %d unfinished orchestration(s), %d activity(ies) to rerun",
                unfinished,
                len(snapshot.activities),
            )

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run_ready())

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    # ------------------------------------------------------------------ ids and messages

    def new_message(
        self,
        instance_id: str,
        execution_id: str | None,
        kind: ControlKind,
        *,
        event_: dict[str, Any] | None = None,
        reason: str | None = None,
        visible_at: float = 0.0,
    ) -> Message:
        msg = Message(self._next_message_id, instance_id, execution_id, kind, event_, reason, visible_at)
        self._next_message_id += 1
        return msg

    def _deliver(self, msg: Message) -> None:
        """Hand a (durably queued) message to its instance, or arm it as a timer."""
        delay = msg.visible_at - time.time()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._fire, msg)
            return
        inst = self.instances.get(msg.instance_id)
        if inst is None:
            self.store.submit_nowait([self.store.delete_messages([msg.id])])
            return
        inst.inbox.append(msg)
        self._make_ready(inst)

    def _fire(self, msg: Message) -> None:
        msg.visible_at = 0.0
        self._deliver(msg)

    def _make_ready(self, inst: Instance) -> None:
        """Queue an episode; one that replays a long history waits to gather more messages.

        An instance's next episode starts no sooner than its last episode's duration after it
        ended, so replaying never takes more than about half of an instance's time: a fan-in of
        1,000 completions is delivered in a few large batches instead of hundreds of small ones,
        while short orchestrations (sub-millisecond episodes) are not delayed noticeably.
        """
        if inst.queued:
            return
        inst.queued = True
        delay = inst.not_before - time.perf_counter()
        if delay > 0.001:
            asyncio.get_running_loop().call_later(delay, self._enqueue, inst)
        else:
            self._enqueue(inst)

    def _enqueue(self, inst: Instance) -> None:
        self._ready.append(inst)
        self._wake.set()

    def send(self, msg: Message) -> Operation:
        """Queue ``msg`` for delivery; returns the statement that makes it durable."""
        self._deliver(msg)
        return [self.store.save_message(msg)]

    # ------------------------------------------------------------------ waiting

    def wait_terminal(self, instance_id: str) -> asyncio.Future[Instance]:
        future: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(instance_id, []).append(future)
        return future

    def _notify(self, inst: Instance) -> None:
        for future in self._waiters.pop(inst.instance_id, []):
            if not future.done():
                future.set_result(inst)

    # ------------------------------------------------------------------ instance creation

    def create_instance(
        self,
        name: str,
        instance_id: str,
        input_json: str | None,
        *,
        parent: ParentRef | None = None,
        version: str | None = None,
    ) -> Operation:
        """Create (or replace a finished) instance and send its ExecutionStarted.

        Without an explicit ``version`` the instance gets ``defaultVersion``, for client starts
        and sub-orchestrations alike, as the extension assigns it.
        """
        now = time.time()
        old = self.instances.get(instance_id)
        inst = lifecycle.create(
            instance_id,
            name,
            input_json,
            now,
            replaces=old,
            parent=parent,
            version=self.default_version if version is None else version,
        )
        ops: Operation = []
        if old is not None:
            ops += self.forget(old)
        self.instances[instance_id] = inst
        ops.append(self.store.save_instance(inst))
        ops += self._send_started(inst, now)
        return ops

    def _send_started(self, inst: Instance, now: float) -> Operation:
        started = lifecycle.execution_started(inst, now)
        return self.send(self.new_message(inst.instance_id, inst.execution_id, ControlKind.EVENT, event_=started))

    def forget(self, inst: Instance) -> Operation:
        """Remove an instance from memory; the statements remove it from the store."""
        self.instances.pop(inst.instance_id, None)
        inst.inbox.clear()
        lifecycle.release_history(inst)
        return self.store.delete_instance(inst.instance_id)

    # ------------------------------------------------------------------ activities

    def on_activity_done(self, item: WorkItem, outcome: Outcome) -> None:
        if outcome.ok:
            ev = event(EventType.TaskCompleted, TaskScheduledId=item.task_id, Result=outcome.result)
        else:
            ev = event(
                EventType.TaskFailed, TaskScheduledId=item.task_id, Reason=outcome.reason, Details=outcome.details
            )
        msg = self.new_message(item.instance_id, item.execution_id, ControlKind.EVENT, event_=ev)
        self.store.submit_nowait([self.store.delete_activity(item.id), *self.send(msg)])

    # ------------------------------------------------------------------ episodes

    async def _run_ready(self) -> None:
        while True:
            while not self._ready:
                self._wake.clear()
                await self._wake.wait()
            slice_end = time.perf_counter() + EPISODE_SLICE
            while self._ready and time.perf_counter() < slice_end:
                inst = self._ready.popleft()
                inst.queued = False
                try:
                    self.process(inst)
                except Exception:
                    log.exception("%s: internal error while running an episode", inst.instance_id)
            await asyncio.sleep(0)

    def process(self, inst: Instance) -> None:
        """Consume the inbox of ``inst``: control operations, then one orchestrator episode."""
        if self.instances.get(inst.instance_id) is not inst or not inst.inbox:
            return
        messages, inst.inbox = inst.inbox, []
        ops: Operation = []
        if inst.terminal:  # late activity results, timers and events are dropped
            self.store.submit_nowait([self.store.delete_messages(m.id for m in messages)])
            return
        now = time.time()
        received = lifecycle.receive(inst, messages, now)
        if received.terminated:
            self._ended(inst, now, ops)
            self._commit(inst, ops, messages)
            return
        # Held messages stay in the store and in the inbox until the instance resumes.
        inst.inbox = received.held + inst.inbox
        if received.deliver:
            try:
                self._episode(inst, [m.event for m in received.deliver if m.event is not None], now, ops)
            except Exception as exc:  # a bug of the host or an app it cannot serve: fail it, never leave it stuck
                log.exception("%s: internal error while running an episode", inst.instance_id)
                ops.clear()  # nothing the broken episode decided is carried out
                if lifecycle.allows(Transition.FAIL, inst.status):
                    error = f"the local host could not run this episode: {type(exc).__name__}: {exc}"
                    lifecycle.fail(inst, dumps(orchestrator_failure(inst.name, error)), now)
                    self._ended(inst, now, ops)
        inst.updated = now
        self._commit(inst, ops, [m for m in messages if m not in received.held])

    def _commit(self, inst: Instance, ops: Operation, consumed: list[Message]) -> None:
        head: Operation = [self.store.save_instance(inst)]
        if inst.history is not None and inst.persisted < len(inst.history):
            head.append(self.store.save_history(inst.instance_id, inst.persisted, inst.history[inst.persisted :]))
            inst.persisted = len(inst.history)
        if consumed:
            head.append(self.store.delete_messages(m.id for m in consumed))
        if inst.terminal:  # a wait-mode answer (the output, 200) only once the end is durable
            self.store.after_commit(lambda: self._notify(inst))
        self.store.submit_nowait(head + ops)
        if inst.terminal:
            # a status read may see the end at once (it answers from memory): make it durable as soon as
            # possible rather than after the group-commit window
            self.store.flush()
            lifecycle.release_history(inst)  # read back from the store when asked

    def _episode(self, inst: Instance, new_events: list[dict[str, Any]], now: float, ops: Operation) -> None:
        function = self.index.orchestrator(inst.name)
        lifecycle.record(inst, [event(EventType.OrchestratorStarted, now), *new_events])
        if function is None:
            error = f"The function '{inst.name}' doesn't exist, is disabled, or is not an orchestrator function."
            lifecycle.fail(inst, dumps(orchestrator_failure(inst.name, error)), now)
            self._ended(inst, now, ops)
            return
        if lifecycle.allows(Transition.START, inst.status):
            lifecycle.start(inst)
        started = time.perf_counter()
        assert inst.history is not None
        result = run_episode(
            function.fn,
            instance_id=inst.instance_id,
            parent_instance_id=inst.parent["instance_id"] if inst.parent else None,
            context_input=context_input(inst.input),
            history=inst.sdk_events,
            head=execution_head(inst.history),
            first_new_id=inst.next_task_id,
            prev_action_count=inst.action_count,
            episode_time=datetime.fromtimestamp(now, UTC),
        )
        self.episodes += 1
        ended = time.perf_counter()
        inst.not_before = ended + (ended - started)
        log.info(
            "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)",
            function.name,
            "Failed" if result.error else "Succeeded",
            inst.instance_id,
            (time.perf_counter() - started) * 1000,
        )
        try:
            inst.custom_status = (
                sdk_adapter.custom_status_json(result.custom_status) if result.custom_status is not None else None
            )
        except (TypeError, ValueError) as exc:  # Azure: the SDK fails to write its state, the orchestration fails
            # (in the worker, before the extension could compare the replay with the history)
            result.error = f"the custom status cannot be serialized to JSON: {exc}"
            result.nondeterministic = False
        for signal in result.signals if result.error is None else []:
            ops += self.signal_entity(signal.instance_id, signal.operation, signal.input_)
        if result.error is not None:
            log.error(
                "%s: Function '%s (Orchestrator)' failed with an error: %s", inst.instance_id, inst.name, result.error
            )
            # a divergent replay fails with DTFx's message as the whole output, as on Azure
            failure = result.error if result.nondeterministic else orchestrator_failure(inst.name, result.error)
            lifecycle.fail(inst, dumps(failure), now)
            self._ended(inst, now, ops)
        elif result.continued:
            lifecycle.continue_as_new(inst, result.continue_as_new)
            ops.append(self.store.delete_history(inst.instance_id))
            ops += self._send_started(inst, now)
        elif result.done:
            try:
                output = dumps(result.output)
            except (TypeError, ValueError) as exc:
                lifecycle.fail(inst, dumps(orchestrator_failure(inst.name, str(exc))), now)
            else:
                lifecycle.complete(inst, output, now)
            self._ended(inst, now, ops)
        else:
            # Only an episode that goes on commits its task ids: a failed episode's decisions are
            # discarded (as in DTFx), so a rewind replays from the last committed ones.
            inst.next_task_id, inst.action_count = result.next_task_id, result.action_count
            scheduled = [self._schedule(inst, item, now, ops) for item in result.scheduled]
            lifecycle.record(inst, [*scheduled, event(EventType.OrchestratorCompleted, now)])

    def _ended(self, inst: Instance, now: float, ops: Operation) -> None:
        """An execution ended (completed, failed or terminated): tell the parent, if any."""
        if inst.parent:
            ops += self._report_to_parent(inst, now)

    def _report_to_parent(self, inst: Instance, now: float) -> Operation:
        """Send the result of a finished sub-orchestration to its parent's execution."""
        parent = inst.parent
        assert parent is not None and inst.output is not None
        if inst.status == RuntimeStatus.Completed:
            ev = event(
                EventType.SubOrchestrationInstanceCompleted, now, TaskScheduledId=parent["task_id"], Result=inst.output
            )
        else:
            reason = (
                json.loads(inst.output)
                if inst.status == RuntimeStatus.Failed
                else f"Orchestration '{inst.name}' was {inst.status.lower()}: {json.loads(inst.output)}"
            )
            ev = event(
                EventType.SubOrchestrationInstanceFailed,
                now,
                TaskScheduledId=parent["task_id"],
                Reason=reason,
                Details=None,
            )
        return self.send(self.new_message(parent["instance_id"], parent["execution_id"], ControlKind.EVENT, event_=ev))

    def _schedule(self, inst: Instance, item: Scheduled, now: float, ops: Operation) -> dict[str, Any]:
        """Turn one new SDK task into its history event and side effect."""
        if item.kind == "activity":
            ops += self._dispatch_activity(inst, item.task_id, item.name, item.input)
            return event(EventType.TaskScheduled, now, item.task_id, Name=item.name, Input=item.input)
        if item.kind == "timer":
            assert item.fire_at is not None
            fire_at = item.fire_at if item.fire_at.tzinfo else item.fire_at.replace(tzinfo=UTC)
            fire_ts = fire_at.timestamp()
            ops += self._arm_timer(inst, item.task_id, fire_ts)
            return event(EventType.TimerCreated, now, item.task_id, FireAt=iso_ts(fire_ts))
        if item.kind == "suborchestration":
            child_id = (
                item.instance_id
                or uuid.uuid5(uuid.NAMESPACE_URL, f"{inst.instance_id}/{inst.execution_id}/{item.task_id}").hex
            )
            created = event(
                EventType.SubOrchestrationInstanceCreated,
                now,
                item.task_id,
                Name=item.name,
                Version=item.version or "",  # as DTFx records it (its non-determinism message names it)
                InstanceId=child_id,
                Input=item.input,
            )
            existing = self.instances.get(child_id)
            if existing is not None and not existing.terminal:
                failed = event(
                    EventType.SubOrchestrationInstanceFailed,
                    now,
                    TaskScheduledId=item.task_id,
                    Details=None,
                    Reason=f"An orchestration with instance ID '{child_id}' is already running.",
                )
                ops += self.send(
                    self.new_message(inst.instance_id, inst.execution_id, ControlKind.EVENT, event_=failed)
                )
                return created
            parent = ParentRef(instance_id=inst.instance_id, execution_id=inst.execution_id, task_id=item.task_id)
            ops += self.create_instance(
                item.name,
                child_id,
                dumps(item.input) if item.input is not None else None,
                parent=parent,
                version=item.version,
            )
            return created
        if item.kind == "entity_call":
            return self.call_entity(inst, item, now, ops)
        raise RuntimeError(f"unknown scheduled kind {item.kind}")

    def _arm_timer(self, inst: Instance, task_id: int, fire_ts: float) -> Operation:
        """The durable timer: a TimerFired message that becomes visible at ``fire_ts``."""
        fired = event(EventType.TimerFired, fire_ts, TimerId=task_id, FireAt=iso_ts(fire_ts))
        return self.send(
            self.new_message(inst.instance_id, inst.execution_id, ControlKind.EVENT, event_=fired, visible_at=fire_ts)
        )

    def _dispatch_activity(self, inst: Instance, task_id: int, name: str, input_: str | None) -> Operation:
        work = WorkItem(self._next_activity_id, inst.instance_id, inst.execution_id, task_id, name, input_)
        self._next_activity_id += 1
        activities = self.activities
        assert activities is not None
        self.store.after_commit(lambda: activities.submit(work))  # once the episode that scheduled it is durable
        return [self.store.save_activity(work)]

    # ------------------------------------------------------------------ rewind

    def rewind(
        self,
        inst: Instance,
        histories: dict[str, list[dict[str, Any]]],
        reason: str | None,
        parent_execution_id: str | None = None,
    ) -> Operation:
        """Revive a Failed instance as if its failures had not happened yet.

        As DTFx's rewind does, failure results leave the history and the instance gets a new
        execution id, so results still in flight for the failed execution are ignored when they
        arrive. Then every task left without a result is issued again, not only the failed ones:
        results that reached the instance after it had failed (the other branches of a fan-out)
        were dropped, and waiting for them would leave it Running forever. ``histories`` holds
        the history of ``inst`` and of each Failed sub-orchestration to rewind with it, read
        beforehand (a Failed instance's history no longer changes); this method does not yield,
        so nothing can happen to the instances between the checks and the changes.
        """
        now = time.time()
        execution_id = uuid.uuid4().hex
        if parent_execution_id is not None:
            assert inst.parent is not None
            inst.parent = {**inst.parent, "execution_id": parent_execution_id}
        children = {
            e["EventId"]: e["InstanceId"]
            for e in histories[inst.instance_id]
            if e["EventType"] == EventType.SubOrchestrationInstanceCreated
        }
        kept = [
            _with_execution_ids(e, inst, execution_id)
            for e in histories[inst.instance_id]
            if not _undone_by_rewind(e, children, histories)
        ]
        lifecycle.rewind(inst, execution_id, kept, now)
        ops: Operation = [
            self.store.delete_history(inst.instance_id),
            self.store.save_instance(inst),
            self.store.save_history(inst.instance_id, 0, kept),
        ]
        for task in _unanswered(kept):
            ops += self._issue_again(inst, task, histories, reason, now)
        # Replay at once, as a rewind that only has to re-run the orchestrator itself needs.
        rewound = event(EventType.GenericEvent, now, Data=f"{sdk_adapter.REWOUND_MARKER}{reason or ''}")
        ops += self.send(self.new_message(inst.instance_id, execution_id, ControlKind.EVENT, event_=rewound))
        log.info("%s: Function '%s (Orchestrator)' was rewound. Reason: %s", inst.instance_id, inst.name, reason)
        return ops

    def _issue_again(
        self,
        inst: Instance,
        task: dict[str, Any],
        histories: dict[str, list[dict[str, Any]]],
        reason: str | None,
        now: float,
    ) -> Operation:
        """Make the result of a scheduled task come (again) to the rewound execution."""
        kind = task["EventType"]
        if kind == EventType.TaskScheduled:
            return self._dispatch_activity(inst, task["EventId"], task["Name"], task.get("Input"))
        if kind == EventType.TimerCreated:
            return self._arm_timer(inst, task["EventId"], parse_ts(task["FireAt"]))
        child = self.instances.get(task["InstanceId"])
        if child is None or not child.parent or child.parent["instance_id"] != inst.instance_id:
            return []  # purged or started anew elsewhere: nothing can answer any more
        if child.instance_id in histories and lifecycle.allows(Transition.REWIND, child.status):
            return self.rewind(child, histories, reason, inst.execution_id)
        # A running child reports to the new execution when it ends; a finished one, whose
        # result the Failed parent dropped, reports again now.
        child.parent = {**child.parent, "execution_id": inst.execution_id}
        ops: Operation = [self.store.save_instance(child)]
        return ops + self._report_to_parent(child, now) if child.terminal else ops

    # ------------------------------------------------------------------ entities (extension points)

    def signal_entity(self, scheduler_id: str, operation: str, input_: str | None) -> Operation:
        raise NotImplementedError("entities are not supported by this host")

    def call_entity(self, inst: Instance, item: Scheduled, now: float, ops: Operation) -> dict[str, Any]:
        raise NotImplementedError("entities are not supported by this host")


# History events that carry a task's result (by TaskScheduledId); events.SCHEDULING_EVENTS schedule them.
_RESULTS = frozenset(
    {
        EventType.TaskCompleted,
        EventType.TaskFailed,
        EventType.SubOrchestrationInstanceCompleted,
        EventType.SubOrchestrationInstanceFailed,
    }
)


def _undone_by_rewind(ev: dict[str, Any], children: dict[int, str], histories: dict[str, list[dict[str, Any]]]) -> bool:
    """Whether a rewind removes ``ev``: the failures it undoes and the end of the execution.

    A sub-orchestration's failure is undone only when that child is rewound too (its history is
    in ``histories``); a child that was terminated, for instance, stays a failure.
    """
    kind = ev["EventType"]
    if kind == EventType.SubOrchestrationInstanceFailed:
        return children.get(ev["TaskScheduledId"]) in histories
    return kind in (EventType.TaskFailed, EventType.ExecutionCompleted)


def _unanswered(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Activities, timers and sub-orchestrations of ``history`` that have no result in it."""
    answered = {e["TaskScheduledId"] for e in history if e["EventType"] in _RESULTS} | {
        e["TimerId"] for e in history if e["EventType"] == EventType.TimerFired
    }
    return [e for e in history if e["EventType"] in SCHEDULING_EVENTS and e["EventId"] not in answered]


def _with_execution_ids(ev: dict[str, Any], inst: Instance, execution_id: str) -> dict[str, Any]:
    """``ev``; an ExecutionStarted event gets the new execution id and the parent's current one."""
    if ev["EventType"] != EventType.ExecutionStarted:
        return ev
    started = {**ev, "OrchestrationInstance": {**ev["OrchestrationInstance"], "ExecutionId": execution_id}}
    if inst.parent:
        started["ParentInstance"] = {
            **ev["ParentInstance"],
            "OrchestrationInstance": {
                **ev["ParentInstance"]["OrchestrationInstance"],
                "ExecutionId": inst.parent["execution_id"],
            },
        }
    return started
