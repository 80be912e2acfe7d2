"""Client operations on the task hub: start, raise event, terminate, suspend, resume, rewind,
restart, purge and queries.

These carry the semantics (which states allow what) independently of HTTP, so the management
API only maps them to status codes. Each operation returns once its change is durable.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import lifecycle
from .engine import Engine
from .events import EventType, event
from .lifecycle import Transition
from .model import TERMINAL, ControlKind, Instance, RuntimeStatus
from .store import Operation


class OperationError(Exception):
    """A refused operation; ``status`` is the HTTP status the extension answers with and
    ``summary`` the ``Message`` of its error body (the exception text is ``ExceptionMessage``).
    """

    status = 400

    def __init__(
        self,
        message: str,
        summary: str = "Something went wrong while processing your request",
        exception_type: str = "System.InvalidOperationException",
    ):
        super().__init__(message)
        self.summary = summary
        self.exception_type = exception_type


class BadRequest(OperationError):
    status = 400


class BadArgument(BadRequest):
    """What the extension's ``ArgumentException`` handler answers: an unknown orchestrator, a refused id."""

    def __init__(self, message: str):
        super().__init__(message, "One or more of the arguments submitted is incorrect", "System.ArgumentException")


class BadJson(BadRequest):
    """A body ``JToken.Load`` refuses."""

    def __init__(self, message: str):
        super().__init__(message, "Invalid JSON content", "Newtonsoft.Json.JsonReaderException")


class BadRequestMessage(BadRequest):
    """A refusal the extension answers with ``{"Message": ...}`` alone (``CreateErrorResponse(status, text)``)."""


class BadRequestText(BadRequest):
    """A refusal the extension answers with the message as a bare JSON string."""


class NotFound(OperationError):
    status = 404


class Conflict(OperationError):
    status = 409


class Gone(OperationError):
    status = 410


class PreconditionFailed(OperationError):
    status = 412


MAX_INSTANCE_ID_LENGTH = 256


def check_instance_id(instance_id: str) -> None:
    """Refuse the ids the extension's ``StartNewAsync`` refuses.

    ``@`` starts entity ids, the characters would break status URLs and storage keys, and the
    length counts UTF-16 code units as .NET does.
    """
    if instance_id.startswith("@"):
        raise BadArgument("Orchestration instance ids must not start with @.")
    if any(c in "/\\?#" or unicodedata.category(c) == "Cc" for c in instance_id):
        raise BadArgument("Orchestration instance ids must not contain /, \\, #, ?, or control characters.")
    if len(instance_id.encode("utf-16-le")) // 2 > MAX_INSTANCE_ID_LENGTH:
        raise BadArgument(f"Instance ID lengths must not exceed {MAX_INSTANCE_ID_LENGTH} characters.")


@dataclass(frozen=True)
class Query:
    """Filters of ``GET/DELETE instances/``."""

    created_from: float | None = None
    created_to: float | None = None
    statuses: frozenset[RuntimeStatus] | None = None
    prefix: str | None = None

    def matches(self, inst: Instance) -> bool:
        return (
            (self.created_from is None or inst.created >= self.created_from)
            and (self.created_to is None or inst.created <= self.created_to)
            and (self.statuses is None or inst.status in self.statuses)
            and (self.prefix is None or inst.instance_id.startswith(self.prefix))
        )


class HubOperations:
    """What a durable client can ask of the hub."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def get(self, instance_id: str) -> Instance:
        inst = self.engine.instances.get(instance_id)
        if inst is None:
            raise NotFound(f"No instance with ID '{instance_id}' found.")
        return inst

    async def start(
        self, name: str, instance_id: str | None, input_json: str | None, version: str | None = None
    ) -> Instance:
        function = self.engine.index.orchestrator(name)
        if function is None:
            raise BadArgument(
                f"The function '{name}' doesn't exist, is disabled, or is not an "
                "orchestrator function. Additional info: No orchestrator functions "
                "are currently registered!"
                if not self.engine.index.orchestrators
                else f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function."
            )
        instance_id = instance_id or uuid.uuid4().hex
        check_instance_id(instance_id)
        existing = self.engine.instances.get(instance_id)
        if existing is not None and not lifecycle.allows(Transition.CREATE, existing.status):
            raise Conflict(
                f"An Orchestration instance with the status {existing.status} already exists with ID '{instance_id}'."
            )
        ops = self.engine.create_instance(function.registered_name, instance_id, input_json, version=version)
        await self.engine.store.submit(ops)
        return self.engine.instances[instance_id]

    async def raise_event(self, instance_id: str, name: str, input_json: str | None) -> None:
        inst = self.active(instance_id)
        ev = event(EventType.EventRaised, Name=name, Input=input_json)
        await self._send(inst, ControlKind.EVENT, event_=ev)

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        await self._send(self.active(instance_id), ControlKind.TERMINATE, reason=reason)

    async def suspend(self, instance_id: str, reason: str | None) -> None:
        await self._send(self.active(instance_id), ControlKind.SUSPEND, reason=reason)

    async def resume(self, instance_id: str, reason: str | None) -> None:
        await self._send(self.active(instance_id), ControlKind.RESUME, reason=reason)

    def active(self, instance_id: str) -> Instance:
        """The instance, if it can still take events and control operations (else 404/410).

        Whether a suspend or resume then applies is decided when the instance receives it
        (``lifecycle.receive``), in order with everything else it receives.
        """
        inst = self.get(instance_id)
        if not lifecycle.allows(Transition.TERMINATE, inst.status):
            raise Gone(f"The instance '{instance_id}' is in the {inst.status} state.")
        return inst

    async def _send(
        self, inst: Instance, kind: ControlKind, *, event_: dict[str, Any] | None = None, reason: str | None = None
    ) -> None:
        msg = self.engine.new_message(inst.instance_id, None, kind, event_=event_, reason=reason)
        await self.engine.store.submit(self.engine.send(msg))

    async def restart(self, instance_id: str, new_id: bool) -> Instance:
        """Start the instance's orchestrator again with its input; an unknown id is a 400 there."""
        inst = self.engine.instances.get(instance_id)
        if inst is None:
            raise BadRequest(
                f"An orchestration with the instanceId {instance_id} was not found.",
                summary="InstanceId does not match a valid orchestration instance.",
            )
        target = uuid.uuid4().hex if new_id else instance_id
        if not lifecycle.restart_allowed(inst, new_id):
            raise Conflict(f"Instance '{instance_id}' is {inst.status}; it cannot restart in place.")
        return await self.start(inst.name, target, inst.input, inst.version)

    async def rewind(self, instance_id: str, reason: str | None) -> None:
        """Replay a Failed orchestration as if its failed activities had not failed yet.

        Failed activity results are removed from the history and those activities run again;
        failed sub-orchestrations are rewound recursively. Another finished instance is Gone
        (410, which the SDK's ``rewind()`` expects); an unfinished one is a failed precondition.
        """
        inst = self.get(instance_id)
        if not lifecycle.allows(Transition.REWIND, inst.status):
            refusal = Gone if inst.terminal else PreconditionFailed
            raise refusal(f"Instance '{instance_id}' is {inst.status}; only Failed orchestrations can be rewound.")
        ops = await self._rewind(inst, reason)
        await self.engine.store.submit(ops)

    async def _rewind(self, inst: Instance, reason: str | None) -> Operation:
        """Read every history the rewind needs, then let the engine rewind without yielding."""
        return self.engine.rewind(inst, await self._failed_histories(inst), reason)

    async def _failed_histories(self, inst: Instance) -> dict[str, list[dict[str, Any]]]:
        """The history of ``inst`` and of each Failed sub-orchestration it started, recursively."""
        histories = {inst.instance_id: await self.history(inst)}
        for ev in histories[inst.instance_id]:
            if ev["EventType"] != EventType.SubOrchestrationInstanceCreated:
                continue
            child = self.engine.instances.get(ev["InstanceId"])
            if (
                child is not None
                and lifecycle.allows(Transition.REWIND, child.status)
                and child.parent
                and child.parent["instance_id"] == inst.instance_id
            ):
                histories.update(await self._failed_histories(child))
        return histories

    async def history(self, inst: Instance) -> list[dict[str, Any]]:
        """The current execution's history, from memory or (once finished) from the store."""
        if inst.history is not None:
            return list(inst.history)
        return await self.engine.store.read_history(inst.instance_id)

    def query(self, query: Query) -> list[Instance]:
        found = [i for i in self.engine.instances.values() if query.matches(i)]
        found.sort(key=lambda i: (i.created, i.instance_id))
        return found

    async def purge(self, instances: Iterable[Instance]) -> int:
        ops: Operation = []
        count = 0
        for inst in list(instances):
            ops += self.engine.forget(inst)
            count += 1
        if ops:
            await self.engine.store.submit(ops)
        return count

    async def purge_by(self, query: Query) -> int:
        """Purge the finished instances the query matches: a running one is never purged, whatever statuses
        were asked for (the storage backends filter them out too)."""
        finished = TERMINAL if query.statuses is None else query.statuses & TERMINAL
        return await self.purge(
            self.query(Query(query.created_from, query.created_to, frozenset(finished), query.prefix))
        )
