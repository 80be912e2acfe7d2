"""The lifecycle of an orchestration instance: every allowed status change, and nothing else.

This module is the only place that changes ``Instance.status`` or appends to an instance's
history. Each transition checks the status it starts from against ``ALLOWED`` and raises
``TransitionRefused`` otherwise; callers that must answer a client (``operations.py``) ask
``allows`` first and refuse with the extension's HTTP error. Side effects (store statements,
messages to other instances, activities) stay with the engine: this module only changes the
instance in memory, so it is tested in-process without a store (``tests/host/test_lifecycle.py``).

Status changes, with the Durable Functions names:

=================  ===============================  ==========================================
transition         from                             to
=================  ===============================  ==========================================
create             (no instance) or a finished one  Pending (its ExecutionStarted is queued)
receive            Pending, Running, Suspended      (messages: the control ones below, events)
start              Pending                          Running (first episode of an execution)
event              Pending, Running                 unchanged (history events of an episode)
suspend            Pending, Running                 Suspended (a suspend is ignored otherwise)
resume             Suspended                        Running (a resume is ignored otherwise)
complete           Running                          Completed
fail               Pending, Running                 Failed
terminate          Pending, Running, Suspended      Terminated
continue-as-new    Running                          Pending, with a new execution
rewind             Failed                           Running, with a new execution
restart            a finished instance (in place)   Pending (a new instance with the old input)
=================  ===============================  ==========================================
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .events import EventType, event
from .model import TERMINAL, ControlKind, Instance, Message, ParentRef, RuntimeStatus
from .sdk_adapter import sdk_event

log = logging.getLogger("durable_host")

S = RuntimeStatus


class Transition(StrEnum):
    CREATE = "create"
    RECEIVE = "receive"
    START = "start"
    EVENT = "event"
    SUSPEND = "suspend"
    RESUME = "resume"
    COMPLETE = "complete"
    FAIL = "fail"
    TERMINATE = "terminate"
    CONTINUE_AS_NEW = "continue-as-new"
    REWIND = "rewind"
    RESTART = "restart"


ACTIVE = frozenset({S.Pending, S.Running, S.Suspended})

# Transition -> the statuses it may start from.
ALLOWED: dict[Transition, frozenset[RuntimeStatus]] = {
    Transition.CREATE: TERMINAL,
    Transition.RECEIVE: ACTIVE,
    Transition.START: frozenset({S.Pending}),
    Transition.EVENT: frozenset({S.Pending, S.Running}),
    Transition.SUSPEND: frozenset({S.Pending, S.Running}),
    Transition.RESUME: frozenset({S.Suspended}),
    Transition.COMPLETE: frozenset({S.Running}),
    Transition.FAIL: frozenset({S.Pending, S.Running}),
    Transition.TERMINATE: ACTIVE,
    Transition.CONTINUE_AS_NEW: frozenset({S.Running}),
    Transition.REWIND: frozenset({S.Failed}),
    Transition.RESTART: TERMINAL,
}


class TransitionRefused(Exception):
    """A status change the lifecycle does not allow (a bug in the caller, or a refused request)."""

    def __init__(self, transition: Transition, status: RuntimeStatus, instance_id: str = ""):
        allowed = ", ".join(sorted(ALLOWED[transition]))
        super().__init__(
            f"Instance '{instance_id}': cannot {transition.value} from {status.value} (allowed from: {allowed})."
        )
        self.transition = transition
        self.status = status


def allows(transition: Transition, status: RuntimeStatus) -> bool:
    """Whether ``transition`` may happen to an instance in ``status``."""
    return status in ALLOWED[transition]


def require(transition: Transition, inst: Instance) -> None:
    if not allows(transition, inst.status):
        raise TransitionRefused(transition, inst.status, inst.instance_id)


# ---------------------------------------------------------------------- history


def _append(inst: Instance, events: Iterable[dict[str, Any]]) -> None:
    assert inst.history is not None, f"{inst.instance_id}: history not loaded"
    for ev in events:
        inst.history.append(ev)
        inst.sdk_events.append(sdk_event(ev))


def record(inst: Instance, events: Iterable[dict[str, Any]]) -> None:
    """Append the history events of an episode (its start, delivered events, new tasks)."""
    require(Transition.EVENT, inst)
    _append(inst, events)


def load_history(inst: Instance, history: list[dict[str, Any]]) -> None:
    """Give an instance read back from the store its (already persisted) history."""
    inst.history, inst.persisted = history, len(history)
    inst.sdk_events = [sdk_event(e) for e in history]


def release_history(inst: Instance) -> None:
    """Drop a finished instance's history from memory: the store has it."""
    inst.history, inst.sdk_events = None, []


# ---------------------------------------------------------------------- creation


def execution_started(inst: Instance, now: float) -> dict[str, Any]:
    """The ExecutionStarted event of the instance's current execution."""
    parent = None
    if inst.parent:
        parent = {
            "Name": None,
            "OrchestrationInstance": {
                "InstanceId": inst.parent["instance_id"],
                "ExecutionId": inst.parent["execution_id"],
            },
            "TaskScheduleId": inst.parent["task_id"],
        }
    return event(
        EventType.ExecutionStarted,
        now,
        Name=inst.name,
        Input=inst.input,
        Version=inst.version or "",
        ParentInstance=parent,
        Tags=None,
        OrchestrationInstance={"InstanceId": inst.instance_id, "ExecutionId": inst.execution_id},
    )


def create(
    instance_id: str,
    name: str,
    input_json: str | None,
    now: float,
    *,
    replaces: Instance | None = None,
    parent: ParentRef | None = None,
    version: str | None = None,
) -> Instance:
    """A new Pending instance; it may replace a finished one with the same id, never an active one."""
    if replaces is not None:
        require(Transition.CREATE, replaces)
    inst = Instance(
        instance_id, name, uuid.uuid4().hex, S.Pending, input_json, now, now, parent=parent, version=version
    )
    log.info("%s: Function '%s (Orchestrator)' scheduled. Reason: NewInstance.", instance_id, name)
    return inst


def start(inst: Instance) -> None:
    """The first episode of an execution runs: Pending -> Running."""
    require(Transition.START, inst)
    inst.status = S.Running
    log.info("%s: Function '%s (Orchestrator)' started. IsReplay: False.", inst.instance_id, inst.name)


# ---------------------------------------------------------------------- messages


@dataclass
class Received:
    """What an instance does with the messages of one episode (see ``receive``)."""

    terminated: bool = False  # a terminate ended the execution; every message is consumed
    deliver: list[Message] = field(default_factory=list)  # events for the orchestrator, in order
    held: list[Message] = field(default_factory=list)  # events kept (not consumed) while suspended


def receive(inst: Instance, messages: Sequence[Message], now: float) -> Received:
    """Apply control messages in order and sort out the events for the episode.

    A terminate ends the execution at once (what follows it is dropped). A suspend of an
    instance that is not Pending or Running, or a resume of one that is not Suspended, is
    ignored, as the extension does. Events of another execution are dropped. While the
    instance is Suspended, its events are held until it resumes.
    """
    require(Transition.RECEIVE, inst)
    control: list[dict[str, Any]] = []
    received = Received()
    for msg in messages:
        if msg.kind == ControlKind.TERMINATE:
            terminate(inst, msg.reason, now)
            received.terminated = True
            return received
        if msg.kind == ControlKind.SUSPEND and allows(Transition.SUSPEND, inst.status):
            inst.status = S.Suspended
            control.append(event(EventType.ExecutionSuspended, now, Reason=msg.reason))
        elif msg.kind == ControlKind.RESUME and allows(Transition.RESUME, inst.status):
            inst.status = S.Running
            control.append(event(EventType.ExecutionResumed, now, Reason=msg.reason))
        elif msg.kind == ControlKind.EVENT and msg.execution_id in (None, inst.execution_id):
            received.deliver.append(msg)
    if inst.status == S.Suspended:
        received.held, received.deliver = received.deliver, []
    _append(inst, control)
    return received


# ---------------------------------------------------------------------- the end of an execution


def _finish(
    inst: Instance, status: RuntimeStatus, output: str, now: float, extra: Sequence[dict[str, Any]] = ()
) -> None:
    inst.status, inst.output, inst.updated = status, output, now
    tail = list(extra)
    if inst.history and inst.history[-1]["EventType"] not in (
        EventType.OrchestratorCompleted,
        EventType.ExecutionSuspended,
    ):
        tail.append(event(EventType.OrchestratorCompleted, now))
    tail.append(event(EventType.ExecutionCompleted, now, OrchestrationStatus=status.code, Result=output))
    if inst.history is not None:
        _append(inst, tail)
    log.info(
        "%s: Function '%s (Orchestrator)' %s.",
        inst.instance_id,
        inst.name,
        "was terminated" if status == S.Terminated else status.value.lower(),
    )


def complete(inst: Instance, output: str, now: float) -> None:
    """The orchestrator returned ``output`` (JSON text)."""
    require(Transition.COMPLETE, inst)
    _finish(inst, S.Completed, output, now)


def fail(inst: Instance, output: str, now: float) -> None:
    """The orchestrator (or the host on its behalf) failed; ``output`` is the JSON message."""
    require(Transition.FAIL, inst)
    _finish(inst, S.Failed, output, now)


def terminate(inst: Instance, reason: str | None, now: float) -> None:
    require(Transition.TERMINATE, inst)
    output = json.dumps(reason or "", separators=(",", ":"))
    _finish(inst, S.Terminated, output, now, [event(EventType.ExecutionTerminated, now, Input=reason)])


def continue_as_new(inst: Instance, new_input: str | None) -> None:
    """Start a fresh execution with the new input: new execution id, empty history, ids reset.

    The instance is Pending again until the new execution's first episode; the caller queues
    its ExecutionStarted (``execution_started``) and clears the stored history.
    """
    require(Transition.CONTINUE_AS_NEW, inst)
    inst.execution_id = uuid.uuid4().hex
    inst.input = json.dumps(new_input, separators=(",", ":")) if new_input is not None else None
    inst.status, inst.output = S.Pending, None
    inst.next_task_id = inst.action_count = 0
    inst.history, inst.sdk_events, inst.persisted = [], [], 0
    log.info("%s: Function '%s (Orchestrator)' continued as new.", inst.instance_id, inst.name)


def rewind(inst: Instance, execution_id: str, history: list[dict[str, Any]], now: float) -> None:
    """Revive a Failed instance as ``execution_id`` with ``history`` (its failures removed)."""
    require(Transition.REWIND, inst)
    inst.execution_id = execution_id
    load_history(inst, history)
    inst.status, inst.output, inst.updated = S.Running, None, now


def restart_allowed(inst: Instance, new_id: bool) -> bool:
    """A restart under a new id is always possible; in place, only once the instance finished."""
    return new_id or allows(Transition.RESTART, inst.status)
