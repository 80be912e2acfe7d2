"""In-memory state of the task hub: orchestration instances and the messages sent to them.

Memory is the working copy; ``store.py`` is the durable log of every change and maps these
dataclasses to its rows by column name. Which status may follow which is ``lifecycle.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict


class RuntimeStatus(StrEnum):
    """``OrchestrationRuntimeStatus``: the names the status API shows and the store keeps."""

    Running = "Running"
    Completed = "Completed"
    ContinuedAsNew = "ContinuedAsNew"
    Failed = "Failed"
    Canceled = "Canceled"
    Terminated = "Terminated"
    Pending = "Pending"
    Suspended = "Suspended"

    @property
    def code(self) -> int:
        """DTFx's ``OrchestrationStatus`` number, as ``ExecutionCompleted`` events carry it."""
        return _STATUS_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> RuntimeStatus | None:
        return _STATUS_BY_CODE.get(code)


_STATUS_CODES = {status: code for code, status in enumerate(RuntimeStatus)}
_STATUS_BY_CODE = {code: status for status, code in _STATUS_CODES.items()}

TERMINAL = frozenset({RuntimeStatus.Completed, RuntimeStatus.Failed, RuntimeStatus.Terminated, RuntimeStatus.Canceled})
ALL_STATUSES = tuple(RuntimeStatus)


class ControlKind(StrEnum):
    """What a ``Message`` asks of an instance."""

    EVENT = "event"  # append ``Message.event`` (TaskCompleted, EventRaised, TimerFired, ...)
    TERMINATE = "terminate"
    SUSPEND = "suspend"
    RESUME = "resume"


class ParentRef(TypedDict):
    """The execution and task of the parent orchestration a sub-orchestration reports to."""

    instance_id: str
    execution_id: str
    task_id: int


@dataclass
class Message:
    """Something delivered to an instance's next episode.

    ``kind`` is ``EVENT`` (``event`` holds a history event to append, e.g. TaskCompleted or
    EventRaised) or a control operation: ``TERMINATE``, ``SUSPEND``, ``RESUME``.
    A message with ``visible_at`` in the future is a durable timer.
    """

    id: int
    instance_id: str
    execution_id: str | None
    kind: ControlKind
    event: dict[str, Any] | None = None
    reason: str | None = None
    visible_at: float = 0.0


@dataclass
class Instance:
    """One orchestration instance (current execution only, as the status API shows)."""

    instance_id: str
    name: str
    execution_id: str
    status: RuntimeStatus
    input: str | None  # JSON text of the input token
    created: float
    updated: float
    output: str | None = None  # JSON text
    custom_status: str | None = None  # JSON text
    parent: ParentRef | None = None
    version: str | None = None
    # Working state, rebuilt from the store on restart.
    history: list[dict[str, Any]] | None = field(default_factory=list)
    persisted: int = 0  # history events already written to the store
    sdk_events: list[Any] = field(default_factory=list)  # cached SDK HistoryEvent objects
    inbox: list[Message] = field(default_factory=list)
    next_task_id: int = 0  # first sequence number the SDK has not allocated yet
    action_count: int = 0  # actions the SDK returned so far (new ones follow)
    queued: bool = False  # waiting in the ready queue (or for not_before)
    not_before: float = 0.0  # earliest start of the next episode (see Engine)
    # The last status body served, encoded, with what it was made of (see status.status_json).
    status_cache: tuple[tuple[Any, ...], bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL
