"""Queue triggers: poll Azure Storage queues (or Azurite) the way the Storage Queues extension does.

One listener per function. It receives up to ``batchSize`` messages, hidden for the lease (Azure:
10 minutes, renewed halfway while the function runs), runs each through the worker's
``queueTrigger`` converter and the shared invoker, and polls again at once while the number in
flight is at most ``newBatchThreshold``. An empty (or missing) queue backs off exponentially with
jitter from 100 ms up to ``maxPollingInterval``. Delivery is at least once: a message is deleted
only after its function succeeded; a failure makes it visible again after ``visibilityTimeout``,
and once its dequeue count reaches ``maxDequeueCount`` it moves to ``<queue>-poison``. A host that
stops or dies leaves its messages in the queue, to reappear when their lease ends.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import os
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueMessage, StorageErrorCode
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from . import azure_worker
from .indexing import FunctionInfo, QueueFunction
from .queue_connections import QueueConnection, QueueServices, resolve_connection
from .trigger_settings import MIN_POLLING_INTERVAL_S, MessageEncoding, QueuesOptions, resolve_setting_refs

log = logging.getLogger("durable_host")

#: What a listener calls to run its function (the host adds the durable client binding).
Invoke = Callable[[FunctionInfo, dict[str, Any]], Awaitable[Any]]
#: Azure's queue name rule: 3-63 lowercase letters, digits and single hyphens, not at either end.
_QUEUE_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
#: Seconds a graceful stop waits for running functions before leaving their messages to the lease.
STOP_GRACE_S = 10.0
#: The longest wait before a failed lease renewal is tried again (a tenth of the lease when shorter).
RENEWAL_RETRY_MAX_S = 30.0


#: Whitespace inside base64 that .NET ignores (line breaks of ``base64.encodebytes``, for one).
_BASE64_SPACE = str.maketrans("", "", " \t\r\n")


class Backoff:
    """Azure's ``RandomizedExponentialBackoffStrategy``: 100 ms after work, then doubling (±20 %) to a cap."""

    def __init__(self, maximum_s: float, minimum_s: float = MIN_POLLING_INTERVAL_S):
        self.minimum_s = minimum_s
        self.maximum_s = max(minimum_s, maximum_s)
        self.current_s = minimum_s
        self.exponent = 0

    def next_delay(self, found_work: bool) -> float:
        if found_work:
            self.current_s, self.exponent = self.minimum_s, 1
        elif self.current_s < self.maximum_s:
            step = random.uniform(0.8, 1.2) * (2 ** (self.exponent - 1)) * self.minimum_s if self.exponent else 0.0
            self.current_s = min(self.maximum_s, self.minimum_s + step)
            self.exponent += 1
        return self.current_s


@dataclass(frozen=True)
class QueueTarget:
    """A queue function with its resolved queue name and connection, or why it cannot run."""

    function: QueueFunction
    queue_name: str = ""
    connection: QueueConnection | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.connection is None:
            return f"queueTrigger (error: {self.error})"
        return f"queueTrigger (queue '{self.queue_name}' at {self.connection.describe()})"


def resolve_target(function: QueueFunction, environ: Mapping[str, str] = os.environ) -> QueueTarget:
    """Resolve ``%Setting%`` in the queue name and the connection; Azure reports a failure per function."""
    try:
        name = resolve_setting_refs(function.queue_name, environ).lower()  # the extension lowercases it too
        if not _QUEUE_NAME.fullmatch(name):
            raise ValueError(f"Invalid queue name: {name}")
        return QueueTarget(function, name, resolve_connection(function.connection, environ))
    except ValueError as exc:
        return QueueTarget(function, error=str(exc))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _lease_lost(exc: AzureError) -> bool:
    """Whether storage says the message is gone (404) or another receipt holds it (400 PopReceiptMismatch)."""
    if not isinstance(exc, HttpResponseError):
        return False
    return exc.status_code == 404 or getattr(exc, "error_code", None) == StorageErrorCode.POP_RECEIPT_MISMATCH


class _Lease:
    """The receipt that proves this host still holds a message, and the storage calls that use it.

    Each update of the message's visibility returns a new receipt and voids the old one, so the
    calls run one at a time (renewal, then delete, release or poison) and each uses the newest
    receipt. A call whose caller is cancelled (the function ended while a renewal was on the
    wire) still runs to its end and keeps its receipt: the request may already have changed it.
    """

    def __init__(self, queue: QueueClient, message: QueueMessage) -> None:
        self.queue = queue
        self.message = message
        self.pop_receipt = message.pop_receipt or ""
        self._turn = asyncio.Lock()

    async def update(self, visibility_timeout: int) -> None:
        """Hide the message for ``visibility_timeout`` seconds from now (0: visible at once)."""
        async with self._turn:
            call = asyncio.ensure_future(
                self.queue.update_message(self.message.id, self.pop_receipt, visibility_timeout=visibility_timeout)
            )
            call.add_done_callback(self._keep_receipt)
            try:
                await asyncio.shield(call)
            finally:
                await asyncio.wait([call])  # cancelled meanwhile: hold the turn until storage answered

    async def delete(self) -> None:
        async with self._turn:
            await self.queue.delete_message(self.message.id, self.pop_receipt)

    def _keep_receipt(self, call: asyncio.Future[QueueMessage]) -> None:
        if not call.cancelled() and call.exception() is None:
            self.pop_receipt = call.result().pop_receipt or self.pop_receipt


class QueueListener:
    """Polls one queue for one function."""

    def __init__(
        self, target: QueueTarget, service: QueueServiceClient, options: QueuesOptions, invoke: Invoke
    ) -> None:
        self.function = target.function
        self.queue_name = target.queue_name
        self.service = service
        self.queue: QueueClient = service.get_queue_client(target.queue_name)
        self.options = options
        self.invoke = invoke
        self.backoff = Backoff(options.max_polling_interval_s)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.poller: asyncio.Task[None] | None = None
        self._reported: str | None = None  # last storage problem logged, so a down account logs once

    def start(self) -> None:
        self.poller = asyncio.create_task(self._poll(), name=f"queue:{self.function.name}")

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop polling, give running functions ``grace_s``; unfinished messages stay leased, not lost."""
        if self.poller is not None:
            self.poller.cancel()
            await asyncio.gather(self.poller, return_exceptions=True)
        if self.in_flight:
            _, pending = await asyncio.wait(set(self.in_flight), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _poll(self) -> None:
        exists = False
        found_since_delay = False
        while True:
            messages: list[QueueMessage] = []
            try:
                if not exists:
                    await self.queue.get_queue_properties()  # Azure polls a missing queue, never creates it
                    exists = True
                messages = await self._receive()
                self._reported = None
            except ResourceNotFoundError:
                exists = False
                self._report(f"queue '{self.queue_name}' does not exist (yet)")
            except AzureError as exc:
                exists = False
                self._report(f"cannot poll queue '{self.queue_name}': {type(exc).__name__}: {exc}")
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
            if messages:
                found_since_delay = True
                while len(self.in_flight) > self.options.new_batch_threshold:
                    await asyncio.wait(set(self.in_flight), return_when=asyncio.FIRST_COMPLETED)
                continue
            delay = self.backoff.next_delay(found_since_delay)
            log.debug(
                "Function '%s': polling queue '%s' again in %d ms", self.function.name, self.queue_name, delay * 1000
            )
            await asyncio.sleep(delay)
            found_since_delay = False

    def _report(self, problem: str) -> None:
        if problem != self._reported:
            log.warning("Function '%s': %s; polling with back-off", self.function.name, problem)
            self._reported = problem

    async def _receive(self) -> list[QueueMessage]:
        """One Get Messages call of up to ``batchSize``."""
        pages = self.queue.receive_messages(
            messages_per_page=self.options.batch_size, visibility_timeout=self.options.lease_s
        ).by_page()
        page = await anext(pages, None)
        return [message async for message in page] if page is not None else []

    def _decode(self, text: str) -> tuple[str | bytes, str]:
        """Message text to the trigger's data and its ``TypedData`` type; bad base64 is ``ValueError``."""
        if self.options.message_encoding is MessageEncoding.NONE:
            return text, "string"
        try:  # .NET's Convert.FromBase64String, which the extension decodes with, skips these four
            data = base64.b64decode(text.translate(_BASE64_SPACE), validate=True)
        except binascii.Error as exc:
            raise ValueError(f"message is not base64 ({exc}); check extensions.queues.messageEncoding") from None
        try:
            return data.decode("utf-8"), "string"
        except UnicodeDecodeError:
            return data, "bytes"

    async def _process(self, message: QueueMessage) -> None:
        lease = _Lease(self.queue, message)
        if (message.dequeue_count or 0) > self.options.max_dequeue_count:
            await self._settle(self._poison(lease))  # a message that crashed hosts before it ran to failure
            return
        try:
            data, data_type = self._decode(str(message.content))
        except ValueError as exc:
            log.error("Function '%s': message %s: %s", self.function.name, message.id, exc)
            await self._settle(self._poison(lease))
            return
        metadata: dict[str, tuple[Any, str]] = {
            "Id": (message.id, "string"),
            "DequeueCount": (json.dumps(message.dequeue_count), "json"),
            "InsertionTime": (_iso(message.inserted_on), "string"),
            "ExpirationTime": (_iso(message.expires_on), "string"),
            "NextVisibleTime": (_iso(message.next_visible_on), "string"),
            "PopReceipt": (message.pop_receipt, "string"),
        }
        argument = azure_worker.decode("queueTrigger", data_type, data, metadata)
        renewal = asyncio.create_task(self._renew(lease))
        try:
            await self.invoke(self.function, {self.function.trigger_param: argument})
            succeeded = True
        except Exception:  # noqa: BLE001 - the invoker logged it; the message decides what happens next
            succeeded = False
        finally:
            renewal.cancel()
            await asyncio.gather(renewal, return_exceptions=True)
        if succeeded:
            await self._settle(lease.delete())
        elif (message.dequeue_count or 0) >= self.options.max_dequeue_count:
            await self._settle(self._poison(lease))
        else:  # visible again after visibilityTimeout
            await self._settle(lease.update(math.ceil(self.options.visibility_timeout_s)))

    async def _renew(self, lease: _Lease) -> None:
        """Keep a long-running function's message hidden, renewing halfway through each lease.

        As the extension's visibility updates: a refused renewal is tried again soon, while the
        lease still holds, since giving up would let the message run twice; only a message that is
        gone or whose receipt is no longer this host's (someone else holds it now) ends them.
        """
        delay = self.options.lease_s / 2
        while True:
            await asyncio.sleep(delay)
            try:
                await lease.update(self.options.lease_s)
                delay = self.options.lease_s / 2
            except AzureError as exc:
                lost = _lease_lost(exc)
                log.warning(
                    "Function '%s': cannot renew the lease of message %s (%s: %s); %s",
                    self.function.name,
                    lease.message.id,
                    type(exc).__name__,
                    (str(exc).splitlines() or [""])[0],
                    "it is no longer this host's" if lost else "trying again",
                )
                if lost:
                    return
                delay = min(self.options.lease_s / 10, RENEWAL_RETRY_MAX_S)

    async def _poison(self, lease: _Lease) -> None:
        """Copy the message, text unchanged, to ``<queue>-poison`` (created if needed), then delete it."""
        poison = self.service.get_queue_client(f"{self.queue_name}-poison")
        log.warning(
            "Function '%s': message %s has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self.function.name,
            lease.message.id,
            self.options.max_dequeue_count,
            poison.queue_name,
        )
        with contextlib.suppress(ResourceExistsError):
            await poison.create_queue()
        await poison.send_message(lease.message.content)
        await lease.delete()

    async def _settle(self, step: Awaitable[Any]) -> None:
        """Delete, release or poison; if storage refuses, the lease still ends and Azure retries alike."""
        try:
            await step
        except AzureError as exc:
            log.error("Function '%s': queue '%s': %s", self.function.name, self.queue_name, exc)


class QueueTriggers:
    """Every queue listener of the app: started with the host, stopped before it."""

    def __init__(self, targets: Sequence[QueueTarget], options: QueuesOptions, invoke: Invoke) -> None:
        self.targets = targets
        self.options = options
        self.invoke = invoke
        self.services = QueueServices()
        self.listeners: list[QueueListener] = []

    def start(self) -> None:
        for target in self.targets:
            if target.connection is None:
                log.error("Function '%s' is in error and will not run: %s", target.function.name, target.error)
                continue
            listener = QueueListener(target, self.services.client(target.connection), self.options, self.invoke)
            listener.start()
            self.listeners.append(listener)

    async def stop(self) -> None:
        await asyncio.gather(*(listener.stop() for listener in self.listeners))
        await self.services.close()
