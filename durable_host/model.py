"""In-memory state of the task hub: orchestration instances and the messages sent to them.

Memory is the working copy; ``store.py`` is the durable log of every change. Keeping both
shapes in one module makes the mapping to SQLite rows obvious.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
ALL_STATUSES = ("Running", "Completed", "ContinuedAsNew", "Failed", "Canceled", "Terminated", "Pending", "Suspended")


@dataclass
class Message:
    """Something delivered to an instance's next episode.

    ``kind`` is ``event`` (``event`` holds a history event to append, e.g. TaskCompleted or
    EventRaised) or a control operation: ``terminate``, ``suspend``, ``resume``.
    A message with ``visible_at`` in the future is a durable timer.
    """

    id: int
    instance_id: str
    execution_id: str | None
    kind: str
    event: dict[str, Any] | None = None
    reason: str | None = None
    visible_at: float = 0.0

    def body_json(self) -> str:
        return json.dumps({"kind": self.kind, "event": self.event, "reason": self.reason}, separators=(",", ":"))

    def row(self) -> tuple:
        return (self.id, self.instance_id, self.execution_id, self.visible_at, self.body_json())

    @classmethod
    def from_row(cls, row: tuple) -> Message:
        mid, instance_id, execution_id, visible_at, body = row
        data = json.loads(body)
        return cls(mid, instance_id, execution_id, data["kind"], data.get("event"), data.get("reason"), visible_at)


@dataclass
class Instance:
    """One orchestration instance (current execution only, as the status API shows)."""

    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None  # JSON text of the input token
    created: float
    updated: float
    output: str | None = None  # JSON text
    custom_status: str | None = None  # JSON text
    parent: dict[str, Any] | None = None  # {"instance_id", "execution_id", "task_id"}
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

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def row(self) -> tuple:
        return (
            self.instance_id,
            self.name,
            self.execution_id,
            self.status,
            self.input,
            self.output,
            self.custom_status,
            self.created,
            self.updated,
            json.dumps(self.parent) if self.parent else None,
            self.version,
            self.next_task_id,
            self.action_count,
        )

    @classmethod
    def from_row(cls, row: tuple) -> Instance:
        (
            instance_id,
            name,
            execution_id,
            status,
            input_,
            output,
            custom_status,
            created,
            updated,
            parent,
            version,
            next_task_id,
            action_count,
        ) = row
        return cls(
            instance_id,
            name,
            execution_id,
            status,
            input_,
            created,
            updated,
            output,
            custom_status,
            json.loads(parent) if parent else None,
            version,
            history=None,
            next_task_id=next_task_id,
            action_count=action_count,
        )
