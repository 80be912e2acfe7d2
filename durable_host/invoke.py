"""Calling user functions the way the Python worker does.

The worker calls functions by keyword, passes a ``func.Context`` to an unbound ``context``
parameter, runs sync functions in one thread pool and awaits async ones on its event loop,
and logs one line per invocation; this module is that contract, shared by HTTP triggers and
activities.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
from azure.functions import _abc as func_abc

from .indexing import FunctionInfo

log = logging.getLogger("durable_host.functions")


class _TraceContext(func_abc.TraceContext):
    def __init__(self) -> None:
        self._traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_parent(self) -> str:
        return self._traceparent

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def attributes(self) -> dict[str, Any]:
        return {}


class InvocationContext(func.Context):
    """The ``func.Context`` handed to a ``context`` parameter."""

    _tls = threading.local()

    def __init__(self, function_name: str, invocation_id: str, function_directory: str):
        self._function_name = function_name
        self._invocation_id = invocation_id
        self._function_directory = function_directory
        self._trace_context = _TraceContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]  # azure-functions annotates type[local]; the worker returns an instance, as here
        return self._tls

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return self._trace_context

    @property
    def retry_context(self) -> Any:
        return None


def default_thread_count() -> int:
    """``PYTHON_THREADPOOL_THREAD_COUNT`` or Python's default, like the worker."""
    configured = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
    if configured:
        return max(1, int(configured))
    return min(32, (os.cpu_count() or 1) + 4)


class Invoker:
    """Runs one function invocation and logs it like ``func start``."""

    def __init__(self, pool: ThreadPoolExecutor | None, function_directory: str):
        self.pool = pool
        self.function_directory = function_directory

    def _prepare(self, info: FunctionInfo, kwargs: dict[str, Any], invocation_id: str | None) -> str:
        invocation_id = invocation_id or str(uuid.uuid4())
        if info.wants_context:
            kwargs["context"] = InvocationContext(info.name, invocation_id, self.function_directory)
        return invocation_id

    @contextlib.contextmanager
    def _logged(self, info: FunctionInfo, invocation_id: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            log.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)",
                info.name,
                invocation_id,
                (time.perf_counter() - started) * 1000,
                exc_info=True,
            )
            raise
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)",
            info.name,
            invocation_id,
            (time.perf_counter() - started) * 1000,
        )

    def call_sync(self, info: FunctionInfo, kwargs: dict[str, Any], invocation_id: str | None = None) -> Any:
        """Blocking call, for a worker thread or a worker process (async functions get a loop)."""
        invocation_id = self._prepare(info, kwargs, invocation_id)
        with self._logged(info, invocation_id):
            if info.is_async:
                return asyncio.run(info.fn(**kwargs))
            return info.fn(**kwargs)

    async def call(self, info: FunctionInfo, kwargs: dict[str, Any], invocation_id: str | None = None) -> Any:
        """Async functions on this event loop, sync ones in the thread pool."""
        if not info.is_async:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, functools.partial(self.call_sync, info, kwargs, invocation_id))
        invocation_id = self._prepare(info, kwargs, invocation_id)
        with self._logged(info, invocation_id):
            return await info.fn(**kwargs)
