"""Activity dispatcher: a bounded pool of workers pulling activity work items.

``maxConcurrentActivityFunctions`` bounds how many activities run at once, as on Azure. With
``--workers N`` (``FUNCTIONS_WORKER_PROCESS_COUNT``) activities run in N worker processes that
import the app themselves, so CPU-bound activities are not limited by one interpreter's GIL.
Each completion goes back to the engine as a TaskCompleted/TaskFailed event; the engine decides
what is durable and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from . import azure_worker, logs
from .indexing import DurableFunction, FunctionIndex
from .invoke import Invoker

log = logging.getLogger("durable_host")

HTTP_ACTIVITY = "BuiltIn::HttpActivity"
#: Seconds a clean stop gives all worker processes together to exit before they are terminated.
SHUTDOWN_GRACE_S = 2.0
#: How long a worker that could not import the app waits for the host's word before it reports that itself.
IMPORT_FAILURE_WAIT_S = 5.0


@dataclass
class WorkItem:
    """One scheduled activity, persisted in the ``activities`` table until it completes."""

    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


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
    details = json.dumps(
        {
            "Message": f"Result: Failure\nException: {message}\nStack: {stack}",
            "ClassName": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException",
        }
    )
    return Outcome(False, reason=f"Activity function '{name}' failed: {message}", details=details)


def missing(name: str) -> Outcome:
    return Outcome(False, reason=f"The function '{name}' doesn't exist, is disabled, or is not an activity function.")


def activity_kwargs(info: DurableFunction, input_text: str | None) -> dict[str, Any]:
    """The trigger argument, decoded by the converter Azure's worker uses for ``activityTrigger``."""
    return {info.trigger_param: azure_worker.decode("activityTrigger", "json", input_text)}


def encode_result(value: Any) -> Outcome:
    """The return value as the worker encodes it; what it cannot encode fails the activity."""
    return Outcome(True, result=azure_worker.encode("activityTrigger", value).value)


# ---------------------------------------------------------------- worker processes

_worker_index: FunctionIndex | None = None
_worker_invoker: Invoker | None = None


def _init_worker(app_dir: str, script_file: str, log_level: str) -> None:
    """Process start: import the app like the main process did."""
    global _worker_index, _worker_invoker
    from .config import ROLE_SETTING, WORKER_ROLE
    from .indexing import index_functions, load_app

    os.environ[ROLE_SETTING] = WORKER_ROLE  # inherited from the dispatcher: this process runs activities
    logs.setup(log_level)
    _worker_index = index_functions(load_app(Path(app_dir), script_file))
    _worker_invoker = Invoker(None, app_dir)


def _run_in_worker(name: str, input_text: str | None) -> Outcome:
    assert _worker_index is not None and _worker_invoker is not None
    info = _worker_index.activity(name)
    if info is None:
        return missing(name)
    try:
        return encode_result(_worker_invoker.call_sync(info, activity_kwargs(info, input_text)))
    except Exception as exc:  # noqa: BLE001 - any error of the user's activity fails that activity only
        return failure(info.name, exc)


def worker_threads() -> int:
    """Threads per worker process: ``PYTHON_THREADPOOL_THREAD_COUNT``, else the Python worker's default."""
    configured = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").strip()
    return max(1, int(configured)) if configured.isdigit() else min(32, (os.cpu_count() or 1) + 4)


def _worker_main(
    app_dir: str, script_file: str, log_level: str, threads: int, connection: multiprocessing.connection.Connection
) -> None:
    """A worker process: import the app, then run activities on a thread pool, as the Python worker does.

    Requests and results travel over this process's own pipe: a process that dies can then break only
    its own pipe, never a lock shared with the other workers. The host holds the only other end, so its
    death (even SIGKILL) is an EOF here at once: the process then exits on the spot. Finishing the running
    activities would be wasted work whose results nobody reads, logged as if it had succeeded. A clean stop
    of the host (``None``) ends the process the same way: the host has stopped reading results, and the
    activities it abandons run again after a restart (at least once, as on Azure).

    Ctrl-C in a terminal sends SIGINT to the whole process group, so to these processes too: they ignore it
    (no ``KeyboardInterrupt`` traceback) and stop when the host tells them to or dies.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ignored from the start already where _spawn could do that
    try:
        _init_worker(app_dir, script_file, log_level)
    except Exception:
        _exit_quietly_if_the_host_failed_too(connection)
        raise
    pool = ThreadPoolExecutor(threads, thread_name_prefix="activity")
    sending = threading.Lock()

    def run(request_id: int, name: str, input_text: str | None) -> None:
        outcome = _run_in_worker(name, input_text)
        with sending:
            connection.send((request_id, outcome))

    while True:
        try:
            requests: list[tuple[int, str, str | None]] | None = connection.recv()
        except (EOFError, OSError):  # the host died: nobody will read a result
            os._exit(0)
        if requests is None:  # the host stops: it reads no more results
            logs.flush()  # os._exit skips the handlers' own flush at exit
            os._exit(0)
        for request in requests:
            pool.submit(run, *request)


def _exit_quietly_if_the_host_failed_too(connection: multiprocessing.connection.Connection) -> None:
    """The host imports the app while its workers do (they start first): when the app cannot be imported,
    the host says why in one line and stops the workers, whose tracebacks would repeat it once each. So a
    worker that failed waits a little for the host's word: stopped (``None``) or gone (EOF), it exits
    without a word; otherwise the failure is its own, and its traceback follows."""
    try:
        if not connection.poll(IMPORT_FAILURE_WAIT_S) or connection.recv() is not None:
            return
    except (EOFError, OSError):
        pass
    os._exit(1)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a worker process is started, so that it starts with SIGINT ignored.

    An ignored signal stays ignored across ``exec``, and Python installs its ``KeyboardInterrupt`` handler
    only over the default one: a Ctrl-C while the new process imports its target (seconds) prints no
    traceback there. Only the main thread may set handlers; a Ctrl-C in these milliseconds is lost.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    connection: multiprocessing.connection.Connection
    running: set[int]


class WorkerProcesses:
    """``FUNCTIONS_WORKER_PROCESS_COUNT`` spawned processes, each running several activities at once.

    ``spawn``, not ``fork``: forking a process that runs threads (and maybe torch) is unsafe. Requests go
    to the least busy process with a free thread, else wait here. A process that dies is replaced and the
    activities it was running fail (retryable, like a worker crash on Azure).

    Requests made in one event-loop iteration (a fan-out) travel to each process as one message, and
    results read together reach the event loop in one wake-up: a pipe write and a loop wake-up per
    activity were a tenth of the host's CPU time under load.
    """

    def __init__(self, workers: int, app_dir: Path, script_file: str) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._threads = worker_threads()
        self._args = (str(app_dir), script_file, logging.getLevelName(logging.getLogger().level), self._threads)
        self._workers = [self._spawn() for _ in range(workers)]
        self._pending: dict[int, asyncio.Future[Outcome]] = {}
        self._requests: dict[int, tuple[int, str, str | None]] = {}
        self._waiting: deque[int] = deque()
        self._ids = itertools.count()
        self._dispatching = False  # a _dispatch is scheduled for the end of this loop iteration
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader = threading.Thread(target=self._read, name="worker-results", daemon=True)
        self._closing = False

    def _spawn(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(*self._args, theirs), daemon=True)
        with _sigint_ignored():
            process.start()
        theirs.close()
        return _Worker(process, ours, set())

    async def run(self, name: str, input_text: str | None) -> Outcome:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._reader.start()
        request_id = next(self._ids)
        future: asyncio.Future[Outcome] = self._loop.create_future()
        self._pending[request_id] = future
        self._requests[request_id] = (request_id, name, input_text)
        self._waiting.append(request_id)
        self._dispatch_soon()
        return await future

    def _dispatch_soon(self) -> None:
        if not self._dispatching:
            assert self._loop is not None
            self._dispatching = True
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatching = False
        if self._closing:  # shutdown() owns the pipes now: a send from here could interleave with its own
            return
        batches: dict[int, list[tuple[int, str, str | None]]] = {}
        while self._waiting:
            index, worker = min(enumerate(self._workers), key=lambda w: len(w[1].running))
            if len(worker.running) >= self._threads:
                break
            request_id = self._waiting.popleft()
            worker.running.add(request_id)
            batches.setdefault(index, []).append(self._requests[request_id])
        for index, requests in batches.items():
            try:
                self._workers[index].connection.send(requests)
            except OSError:  # a worker that died, not replaced yet: _replace fails what it held, these too
                log.warning("worker %d is gone: %d activity request(s) could not be sent to it", index, len(requests))

    def _read(self) -> None:
        """Reader thread: hand results (and broken pipes of dead processes) to the event loop."""
        assert self._loop is not None
        while not self._closing:
            # only this thread closes connections, so the snapshot never holds one closed under it
            connections = {w.connection: w for w in list(self._workers) if not w.connection.closed}
            results: list[tuple[_Worker, int, Outcome]] = []
            for ready_object in multiprocessing.connection.wait(list(connections), timeout=1.0):
                ready = cast(
                    multiprocessing.connection.Connection, ready_object
                )  # wait() returns some of the objects it was given
                worker = connections[ready]
                try:
                    request_id, outcome = ready.recv()
                except (EOFError, OSError):
                    ready.close()
                    self._loop.call_soon_threadsafe(self._replace, worker)
                    continue
                results.append((worker, request_id, outcome))
            if results:
                self._loop.call_soon_threadsafe(self._settle_all, results)

    def _settle_all(self, results: list[tuple[_Worker, int, Outcome]]) -> None:
        for worker, request_id, outcome in results:
            self._settle(worker, request_id, outcome)

    def _settle(self, worker: _Worker, request_id: int, outcome: Outcome) -> None:
        worker.running.discard(request_id)
        self._requests.pop(request_id, None)
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)
        self._dispatch_soon()

    def _replace(self, worker: _Worker) -> None:
        if self._closing or worker not in self._workers:
            return
        self._workers[self._workers.index(worker)] = self._spawn()
        pid = worker.process.pid
        log.error("worker process %s exited; replaced (%d activities failed)", pid, len(worker.running))
        for request_id in list(worker.running):
            self._settle(
                worker, request_id, Outcome(False, reason=f"worker process {pid} exited while running the activity")
            )

    def shutdown(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """Tell every process to exit; SIGTERM (silent) what has not within ``grace`` seconds in all.

        A process still importing the app reads its pipe only when done, seconds later: waiting for it
        would only delay Ctrl-C, since no result is read any more.
        """
        self._closing = True
        for worker in self._workers:
            with contextlib.suppress(OSError):  # the worker is gone already
                worker.connection.send(None)
        deadline = time.monotonic() + grace
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker in self._workers:
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=1)


# ---------------------------------------------------------------- dispatcher


class ActivityDispatcher:
    """Runs work items with at most ``concurrency`` in flight."""

    def __init__(
        self,
        index: FunctionIndex,
        invoker: Invoker,
        concurrency: int,
        on_done: Callable[[WorkItem, Outcome], None],
        processes: WorkerProcesses | None = None,
    ):
        self.index = index
        self.invoker = invoker
        self.concurrency = concurrency
        self.on_done = on_done
        self.processes = processes
        self._queue: deque[WorkItem] = deque()
        self._workers: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self.processes is not None:
            await asyncio.to_thread(self.processes.shutdown)

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
            return await self.processes.run(item.name, item.input)
        info = self.index.activity(item.name)
        if info is None:
            return missing(item.name)
        try:
            return encode_result(await self.invoker.call(info, activity_kwargs(info, item.input)))
        except Exception as exc:  # noqa: BLE001 - any error of the user's activity fails that activity only
            return failure(info.name, exc)
