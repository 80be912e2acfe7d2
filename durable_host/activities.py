"""Activity dispatcher: a bounded pool of workers pulling activity work items.

``maxConcurrentActivityFunctions`` bounds how many activities run at once, as on Azure. With
``--workers N`` (``FUNCTIONS_WORKER_PROCESS_COUNT``) activities run in N worker processes that
import the app themselves, so CPU-bound activities are not limited by one interpreter's GIL.
Each completion goes back to the engine as a TaskCompleted/TaskFailed event; the engine decides
what is durable and when.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import traceback
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from .indexing import DurableFunction, FunctionIndex
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


def missing(name: str) -> Outcome:
    return Outcome(False, reason=f"The function '{name}' doesn't exist, is disabled, or is not an "
                   "activity function.")


def activity_kwargs(info: DurableFunction, input_text: str | None) -> dict[str, Any]:
    """The trigger argument, decoded by the worker's own ``ActivityTriggerConverter``."""
    value = ActivityTriggerConverter.decode(meta.Datum(type="json", value=input_text),
                                            trigger_metadata=None)
    return {info.trigger_param: value}


def encode_result(value: Any) -> Outcome:
    return Outcome(True, result=ActivityTriggerConverter.encode(value, expected_type=None).value)


# ---------------------------------------------------------------- worker processes

_worker_index: FunctionIndex | None = None
_worker_invoker: Invoker | None = None


def _init_worker(app_dir: str, script_file: str, log_level: str) -> None:
    """Process start: import the app like the main process did."""
    global _worker_index, _worker_invoker
    from . import logs
    from .indexing import import_app, index_functions
    logs.setup(log_level)
    _worker_index = index_functions(import_app(Path(app_dir), script_file))
    _worker_invoker = Invoker(None, app_dir)


def _run_in_worker(name: str, input_text: str | None) -> Outcome:
    assert _worker_index is not None and _worker_invoker is not None
    info = _worker_index.activity(name)
    if info is None:
        return missing(name)
    try:
        return encode_result(_worker_invoker.call_sync(info, activity_kwargs(info, input_text)))
    except Exception as exc:  # noqa: BLE001 - a failed activity is a TaskFailed event
        return failure(info.name, exc)


def process_pool(workers: int, app_dir: Path, script_file: str) -> ProcessPoolExecutor:
    """``spawn``ed workers: forking a process that runs threads (and maybe torch) is unsafe."""
    level = logging.getLevelName(logging.getLogger().level)
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(str(app_dir), script_file, level))


# ---------------------------------------------------------------- dispatcher


class ActivityDispatcher:
    """Runs work items with at most ``concurrency`` in flight."""

    def __init__(self, index: FunctionIndex, invoker: Invoker, concurrency: int,
                 on_done: Callable[[WorkItem, Outcome], None],
                 processes: ProcessPoolExecutor | None = None):
        self.index = index
        self.invoker = invoker
        self.concurrency = concurrency
        self.on_done = on_done
        self.processes = processes
        self._queue: deque[WorkItem] = deque()
        self._workers: list[asyncio.Task] = []
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self.processes is not None:
            self.processes.shutdown(wait=False, cancel_futures=True)

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
        if self.processes is not None:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self.processes, _run_in_worker, item.name, item.input)
            except Exception as exc:  # noqa: BLE001 - e.g. a worker process died: retryable failure
                return failure(item.name, exc)
        info = self.index.activity(item.name)
        if info is None:
            return missing(item.name)
        try:
            return encode_result(await self.invoker.call(info, activity_kwargs(info, item.input)))
        except Exception as exc:  # noqa: BLE001 - a failed activity is a TaskFailed event
            return failure(info.name, exc)
