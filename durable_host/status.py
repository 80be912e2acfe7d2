"""Instance status bodies and ``historyEvents``, shaped like the extension's
``DurableOrchestrationStatus`` JSON so the SDK client and any Azure tool can read them.
"""

from __future__ import annotations

import json
from typing import Any

from .events import EventType, status_ts
from .model import Instance, RuntimeStatus

_HIDDEN = {EventType.OrchestratorStarted, EventType.OrchestratorCompleted}
# A completion and the kind of event that scheduled it (merged into the completion once it exists).
_MERGED_INTO = {
    EventType.TaskCompleted: EventType.TaskScheduled,
    EventType.TaskFailed: EventType.TaskScheduled,
    EventType.SubOrchestrationInstanceCompleted: EventType.SubOrchestrationInstanceCreated,
    EventType.SubOrchestrationInstanceFailed: EventType.SubOrchestrationInstanceCreated,
}
_ORIGINS = frozenset(_MERGED_INTO.values())
_WITH_RESULT = {EventType.TaskCompleted, EventType.SubOrchestrationInstanceCompleted, EventType.ExecutionCompleted}


def _parse(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def status_body(
    inst: Instance,
    *,
    show_input: bool = True,
    history: list[dict[str, Any]] | None = None,
    show_history_output: bool = False,
) -> dict[str, Any]:
    """The status JSON of ``GET instances/{id}`` (``historyEvents`` only when asked)."""
    body: dict[str, Any] = {"name": inst.name, "instanceId": inst.instance_id}
    if inst.version:  # the extension omits ``version`` when the instance has none
        body["version"] = inst.version
    body.update(
        {
            "runtimeStatus": inst.status,
            "input": _parse(inst.input) if show_input else None,
            "customStatus": _parse(inst.custom_status),
            "output": _parse(inst.output),
            "createdTime": status_ts(inst.created),
            "lastUpdatedTime": status_ts(inst.updated),
        }
    )
    if history is not None:
        body["historyEvents"] = history_events(history, show_input=show_input, show_output=show_history_output)
    return body


def status_json(inst: Instance, *, show_input: bool) -> bytes:
    """``status_body`` without history, as UTF-8 JSON, made once per change of the instance.

    Clients poll ``statusQueryGetUri`` many times per task, mostly while nothing changed: parsing
    the input and output JSON and encoding the body again each time was a quarter of a poll's
    CPU time in the host process.
    """
    key = (
        show_input,
        inst.name,
        inst.execution_id,
        inst.status,
        inst.updated,
        inst.created,
        inst.version,
        inst.input,
        inst.output,
        inst.custom_status,
    )
    cached = inst.status_cache
    if cached is not None and cached[0] == key:
        return cached[1]
    body = json.dumps(status_body(inst, show_input=show_input)).encode()
    inst.status_cache = (key, body)
    return body


def history_events(history: list[dict[str, Any]], *, show_input: bool, show_output: bool) -> list[dict[str, Any]]:
    """Apply the extension's transformation (see the protocol spec, §6).

    As in the extension's ``GetDurableOrchestrationStatusAsync``, a TaskScheduled or
    SubOrchestrationInstanceCreated event is listed until its completion arrives and is then
    merged into it, and ``Input`` stays the JSON text the history holds (only ``Result`` is
    parsed), so a tool written against Azure reads the same shapes here.
    """
    out: list[dict[str, Any] | None] = []
    origins: dict[tuple[EventType, Any], tuple[int, dict[str, Any]]] = {}  # (kind, EventId) -> (index, event)
    for raw in history:
        kind = EventType(raw["EventType"])
        if kind in _HIDDEN:
            continue
        ev = {k: v for k, v in raw.items() if k not in ("EventId", "IsPlayed")}
        ev["EventType"] = kind.name
        if kind in _ORIGINS:
            origins[(kind, raw["EventId"])] = (len(out), raw)
            ev.pop("Version", None)
        elif kind in _MERGED_INTO:
            found = origins.pop((_MERGED_INTO[kind], ev.pop("TaskScheduledId", None)), None)
            if found is not None:
                index, origin = found
                out[index] = None
                ev.update(
                    FunctionName=origin.get("Name"), ScheduledTime=origin.get("Timestamp"), Input=origin.get("Input")
                )
        elif kind == EventType.ExecutionStarted:
            ev["FunctionName"] = ev.pop("Name", None)
            for key in ("OrchestrationInstance", "ParentInstance", "Version", "Tags"):
                ev.pop(key, None)
        elif kind == EventType.ExecutionCompleted:
            code = ev.get("OrchestrationStatus")
            status = RuntimeStatus.from_code(code) if isinstance(code, int) else None
            ev["OrchestrationStatus"] = status.value if status is not None else "Unknown"
        elif kind == EventType.TimerFired:
            ev.pop("TimerId", None)
        if kind in _WITH_RESULT:
            if show_output:
                ev["Result"] = _parse(ev.get("Result"))
            else:
                ev.pop("Result", None)
        if not show_input:
            ev.pop("Input", None)
        out.append(ev)
    return [ev for ev in out if ev is not None]
