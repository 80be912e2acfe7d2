"""Dynamic batching: coalesce concurrent single-request callers into one forward pass.

Like Triton's / TorchServe's / Ray Serve's dynamic batching, inside one process: threads submit uint8 crops
for the same :class:`~inference.cache.LoadedModel`; one worker thread takes the first waiting request plus
whatever else is queued (up to ``max_batch_size`` images), runs one forward pass for all of them and hands
each caller exactly its own rows of predictions. A forward pass over a batch is cheaper per image than one
per request (oneDNN/BLAS use the cores better on larger inputs), which is where the gain comes from.

When to wait for company — the "expected callers" policy: Triton and TorchServe hold the first request for a
fixed delay in case others come; then a lone request always pays the whole delay, and under load the delay
collects little that a forward pass in progress would not have queued anyway. Here callers announce
themselves with :meth:`DynamicBatcher.expecting` as soon as they know they will submit (an inference
activity does so before it reads its tensors from storage), and the worker waits only while some announced
caller that would still fit has not submitted yet, never more than ``max_wait_ms`` after it took the first
request. A lone request is therefore dispatched at once, and requests that arrive during a forward pass are
batched for the next one without extra waiting.

Forward passes run on compute threads (:func:`~inference.torch_threads.submit_pass`), shared by the
batchers of all models: the process's compute thread when no other batch occupies it, else a narrow one;
the batcher's own thread only gathers, so it never becomes a torch thread with a team of its own.

Compute streams (``streams``, ``COMPUTE_STREAMS``): a batcher runs up to ``streams`` passes at once; a
second starts only once half a batch is waiting, so that requests arriving during a pass are not split into
small passes. A pass alone on the compute thread keeps every core (a lone request keeps its latency); once
passes overlap they share the cores, one thread each on 2 cores, from the next layer on
(:func:`~inference.torch_threads.compute_pass`), as the raw pipeline's two one-thread streams do (for
ResNet18 they beat one two-thread stream by about 10 % at batch 8).

Failure isolation: requests are validated on submit, so a malformed crop fails only its caller. If a batched
forward still fails, each request of that batch is re-run on its own, so every caller gets its own result
or its own exception rather than a neighbour's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from contracts import Prediction
from inference.cache import LoadedModel
from inference.predict import check_crop_batch, logits, top_k
from inference.preprocess import normalise
from inference.torch_threads import compute_pass, on_compute_thread, submit_pass

Result = list[list[Prediction]]
log = logging.getLogger(__name__)


@dataclass
class _Request:
    crops: torch.Tensor  # uint8 [N, 3, H, W]
    k: int
    future: Future[Result]


@dataclass(frozen=True)
class BatcherStats:
    """Forward passes run and images classified so far (``images / batches`` is the mean batch size)."""

    batches: int
    images: int


class DynamicBatcher:
    """Coalesces concurrent :meth:`submit` calls for one model into batched forward passes.

    Use as a context manager (or call :meth:`close`) so the worker thread stops; the batch it is gathering
    then runs at once, and requests queued behind it fail with ``RuntimeError``.
    """

    def __init__(
        self, model: LoadedModel, *, max_batch_size: int = 8, max_wait_ms: float = 5.0, streams: int = 1
    ) -> None:
        if max_batch_size < 1 or max_wait_ms < 0 or streams < 1:
            raise ValueError(
                f"need max_batch_size >= 1, max_wait_ms >= 0, streams >= 1, got {max_batch_size}, {max_wait_ms}, "
                f"{streams}"
            )
        self.streams = streams
        self._in_flight = 0  # passes started and not finished
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1e3
        # One lock for the queue, the announcements and the closed flag, so the worker never sees a caller
        # that is neither announced nor queued; notified whenever any of them changes.
        self._changed = threading.Condition(threading.Lock())
        self._pending: deque[_Request] = deque()
        # announced thread -> (images it said it will submit, when it said so); gone once it has submitted
        self._owing: dict[int, tuple[int, float]] = {}
        self._closed = False
        self._batches = 0
        self._images = 0
        self._worker = threading.Thread(target=self._run, name=f"batcher-{model.name}", daemon=True)
        self._worker.start()

    @contextmanager
    def expecting(self, images: int = 1) -> Iterator[None]:
        """Announce that this thread will :meth:`submit` about ``images`` crops before the block ends.

        While the announcement is owed, a batch with room for it waits for it (at most ``max_wait_ms``).
        The first submit inside the block settles it; leaving the block withdraws it in every case, so a
        caller that fails before submitting holds nobody up for longer than ``max_wait_ms``. An announcement
        older than twice ``max_wait_ms`` is no longer waited for: a caller stuck reading its tensors (a slow
        storage account) would otherwise make every batch wait the whole ``max_wait_ms`` for as long as it
        stays stuck. A thread has one announcement at a time (it can only wait for one submit): a nested
        block replaces the outer one and withdraws it when it ends.
        """
        if images < 1:
            raise ValueError(f"expecting() needs images >= 1, got {images}")
        caller = threading.get_ident()
        with self._changed:
            self._owing[caller] = (images, time.monotonic())
        try:
            yield
        finally:
            with self._changed:
                if self._owing.pop(caller, None) is not None:
                    self._changed.notify_all()

    def submit(self, crops: torch.Tensor, k: int) -> Future[Result]:
        """Queue uint8 crops (``[3, H, W]`` or ``[N, 3, H, W]``); the future yields one top-k list per image."""
        if on_compute_thread():
            raise RuntimeError("the compute thread cannot wait for a batcher: the batch would need it to run")
        batch = crops[None] if crops.ndim == 3 else crops
        check_crop_batch(self.model, batch)
        if k < 1:
            raise ValueError(f"top_k must be at least 1, got {k}")
        future: Future[Result] = Future()
        with self._changed:
            if self._closed:
                raise RuntimeError("DynamicBatcher is closed")
            self._pending.append(_Request(batch, k, future))
            self._owing.pop(threading.get_ident(), None)
            self._changed.notify_all()
        return future

    def classify(self, crops: torch.Tensor, k: int, timeout: float | None = None) -> Result:
        """Blocking :meth:`submit`: the caller's own predictions, or the exception its forward pass raised."""
        return self.submit(crops, k).result(timeout)

    def stats(self) -> BatcherStats:
        with self._changed:
            return BatcherStats(self._batches, self._images)

    @property
    def closed(self) -> bool:
        """Closed by :meth:`close`, or by a failure that took a pass or the batcher's thread down."""
        with self._changed:
            return self._closed

    def expected(self) -> int:
        """Announced callers that have not submitted yet (what a gathering batch would wait for)."""
        with self._changed:
            return len(self._owing)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._worker.join()

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        """Batches until closed; if this thread ever dies of an unexpected error, the batcher closes with it,
        so waiting and later callers get ``RuntimeError`` instead of waiting for ever."""
        batch: list[_Request] | None = None
        try:
            while (batch := self._gather()) is not None:
                self._dispatch(batch)
                batch = None
        finally:
            with self._changed:
                self._closed = True
                while self._in_flight:  # passes in flight finish and set their callers' futures
                    self._changed.wait()
            self._fail_pending(batch or [])

    def _gather(self) -> list[_Request] | None:
        """The next batch: the first queued request and all that fit behind it, plus owed ones that arrive
        within ``max_wait`` of taking it; ``None`` once closed."""
        with self._changed:
            while not self._closed and not (self._pending and self._stream_ready()):
                self._changed.wait()
            if self._closed:
                return None
            batch = [self._pending.popleft()]
            images = len(batch[0].crops)
            deadline = time.monotonic() + self.max_wait_s
            while True:
                if self._pending:
                    if images + len(self._pending[0].crops) > self.max_batch_size:
                        break  # it starts the next batch
                    batch.append(self._pending.popleft())
                    images += len(batch[-1].crops)
                    continue
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0 or not self._company_fits(self.max_batch_size - images):
                    break
                self._changed.wait(remaining)
            return batch

    def _stream_ready(self) -> bool:
        """Whether a pass may start now (the lock held): none in flight, or fewer than ``streams`` and half a
        batch waiting (with one stream, what arrives during a pass is batched for the next one)."""
        if self._in_flight == 0:
            return True
        waiting = sum(len(r.crops) for r in self._pending)
        return self._in_flight < self.streams and waiting * 2 >= self.max_batch_size

    def _dispatch(self, batch: list[_Request]) -> None:
        """Start the batch on a compute thread (:func:`submit_pass`); the batcher thread goes back to gathering."""
        with self._changed:
            self._in_flight += 1

        def run_pass() -> None:
            try:
                self._execute(batch)
            except BaseException:
                # a failure outside the forward pass's own error handling (a fatal error in a library): the
                # batcher closes, as when its own thread dies, so that no caller waits for ever
                log.exception("a forward pass of %s failed; its batcher is closed", self.model.name)
                with self._changed:
                    self._closed = True
                    self._changed.notify_all()
                self._fail_running(batch)
                raise
            finally:
                with self._changed:
                    self._in_flight -= 1
                    self._changed.notify_all()

        try:
            submit_pass(run_pass)
        except BaseException:
            with self._changed:
                self._in_flight -= 1
            raise

    def _company_fits(self, room: int) -> bool:
        """Whether a caller announced lately that has not submitted yet would fit into ``room`` images."""
        fresh_since = time.monotonic() - 2 * self.max_wait_s
        return any(images <= room and since >= fresh_since for images, since in self._owing.values())

    def _execute(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        outcomes = self._outcomes(live)
        for request, outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, Exception):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)

    def _outcomes(self, live: list[_Request]) -> list[Result | Exception]:
        with compute_pass():
            try:
                return list(self._forward(live))
            except Exception as exc:  # noqa: BLE001  any failure of the batch is handed to its callers' futures
                # Isolate the failure: re-run each request alone so every caller gets its own outcome.
                return [exc] if len(live) == 1 else [self._forward_alone(r) for r in live]

    def _forward_alone(self, request: _Request) -> Result | Exception:
        try:
            return self._forward([request])[0]
        except Exception as exc:  # noqa: BLE001  returned to be set on this caller's future, not swallowed
            return exc

    def _forward(self, requests: list[_Request]) -> list[Result]:
        """One forward pass for all ``requests``; each gets the top-k of its own rows."""
        crops = torch.cat([r.crops for r in requests])
        scores = logits(self.model, normalise(crops, self.model.weights))
        with self._changed:  # passes of several streams finish at once
            self._batches += 1
            self._images += len(crops)
        results, start = [], 0
        for request in requests:
            rows = scores[start : start + len(request.crops)]
            start += len(request.crops)
            results.append(top_k(rows, request.k, self.model.weights.categories))
        return results

    def _fail_pending(self, in_flight: list[_Request]) -> None:
        """Fail the queued requests, and those of a batch whose forward pass never returned."""
        with self._changed:
            pending = list(self._pending)
            self._pending.clear()
        self._fail_running(in_flight)
        for request in pending:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("DynamicBatcher closed before this request ran"))

    @staticmethod
    def _fail_running(batch: list[_Request]) -> None:
        """Fail the requests of a batch whose forward pass never returned (or, its start having failed,
        never began: their futures are still pending)."""
        for request in batch:
            future = request.future
            if future.running() or (not future.done() and future.set_running_or_notify_cancel()):
                future.set_exception(RuntimeError("DynamicBatcher closed while this request ran"))
