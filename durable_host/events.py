"""History events in the Durable Task Framework's JSON shape, and the time formats around them.

The SDK replays an orchestrator over these dicts (``HistoryEvent(**event)``), the management
API shows them, and the store persists them; building them in one place keeps the three
consistent with what the .NET extension sends.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any


class EventType(IntEnum):
    """``HistoryEventType`` values shared by DTFx and the Python SDK."""

    ExecutionStarted = 0
    ExecutionCompleted = 1
    ExecutionFailed = 2
    ExecutionTerminated = 3
    TaskScheduled = 4
    TaskCompleted = 5
    TaskFailed = 6
    SubOrchestrationInstanceCreated = 7
    SubOrchestrationInstanceCompleted = 8
    SubOrchestrationInstanceFailed = 9
    TimerCreated = 10
    TimerFired = 11
    OrchestratorStarted = 12
    OrchestratorCompleted = 13
    EventSent = 14
    EventRaised = 15
    ContinueAsNew = 16
    GenericEvent = 17
    HistoryState = 18
    ExecutionSuspended = 19
    ExecutionResumed = 20


# The events that schedule a task, by the kind of task the host gives it (``sdk_adapter.Scheduled.kind``);
# their EventId is the task's sequence number.
SCHEDULING_EVENTS: dict[EventType, str] = {
    EventType.TaskScheduled: "activity",
    EventType.TimerCreated: "timer",
    EventType.SubOrchestrationInstanceCreated: "suborchestration",
}


def iso_ts(epoch: float) -> str:
    """History timestamp: ISO 8601 with microseconds and ``Z`` (the SDK needs an aware time)."""
    # isoformat is three times faster than strftime, and every history event has a timestamp
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def status_ts(epoch: float) -> str:
    """Status timestamps use .NET's ``ToString("s") + "Z"``: no fractional seconds."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")[:-6] + "Z"


def parse_ts(text: str) -> float:
    """Parse an ISO 8601 time (``Z``, offsets, or naive meaning UTC) to epoch seconds.

    A year of fewer than four digits is padded, as the extension does: the SDK formats ``datetime.min`` (what
    Microsoft's purge sample passes) with ``strftime``, which on Linux writes year 1 as ``1``.
    """
    value = text.strip()
    year, dash, rest = value.partition("-")
    if dash and year.isascii() and year.isdigit() and len(year) < 4:
        value = f"{year:0>4}-{rest}"
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def event(event_type: EventType, epoch: float | None = None, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    """One history event with the four keys every SDK ``HistoryEvent`` requires."""
    return {
        "EventType": int(event_type),
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": iso_ts(time.time() if epoch is None else epoch),
        **fields,
    }
