"""Activity dispatcher: a bounded pool of workers pulling activity work items.

``maxConcurrentActivityFunctions`` bounds how many activities run at once, as on Azure. Each
completion goes back to the engine as a TaskCompleted/TaskFailed event; the engine decides
what is durable and when.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Callable

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from .indexing import FunctionIndex
from .invoke import Invoker

log = logging.getLogger("durable_host")

HTTP_ACTIVITY = "BuiltIn::HttpActivity"


@dataclass
class WorkItem:
    """One scheduled activity, persisted in the ``activities`` table until it completes."""

    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None

    def row(self) -> tuple:
        return (self.id, self.instance_id, self.execution_id, self.task_id, self.name, self.input)


@dataclass
class Outcome:
    """Result of a work item: ``result`` (JSON text) on success, else ``reason``/``details``."""

    ok: bool
    result: str | None = None
    reason: str | None = None
    details: str | None = None


def failure(name: str, exc: BaseException) -> Outcome:
    """The extension's TaskFailed: Reason from the worker's RpcException, Details its JSON."""
    message = f"{type(exc).__name__}: {exc}"
    stack = "".join(traceback.format_exception(exc))
    details = json.dumps({"Message": f"Result: Failure\nException: {message}\nStack: {stack}",
                          "ClassName": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException"})
    return Outcome(False, reason=f"Activity function '{name}' failed: {message}", details=details)


class ActivityDispatcher:
    """Runs work items with at most ``concurrency`` in flight."""

    def __init__(self, index: FunctionIndex, invoker: Invoker, concurrency: int,
                 on_done: Callable[[WorkItem, Outcome], None]):
        self.index = index
        self.invoker = invoker
        self.concurrency = concurrency
        self.on_done = on_done
        self._queue: deque[WorkItem] = deque()
        self._idle = 0
        self._workers: list[asyncio.Task] = []
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    def submit(self, item: WorkItem) -> None:
        self._queue.append(item)
        self._wake.set()

    async def _worker(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            item = self._queue.popleft()
            outcome = await self.run(item)
            self.on_done(item, outcome)

    async def run(self, item: WorkItem) -> Outcome:
        if item.name == HTTP_ACTIVITY:
            from .durable_http import call_http
            return await call_http(item.input)
        info = self.index.activity(item.name)
        if info is None:
            return Outcome(False, reason=f"The function '{item.name}' doesn't exist, is disabled, "
                           "or is not an activity function.", details=None)
        try:
            value = ActivityTriggerConverter.decode(
                meta.Datum(type="json", value=item.input), trigger_metadata=None)
            returned = await self.invoker.call(info, {info.trigger_param: value})
            return Outcome(True, result=ActivityTriggerConverter.encode(returned, expected_type=None).value)
        except Exception as exc:  # noqa: BLE001 - a failed activity is a TaskFailed event
            return failure(info.name, exc)
