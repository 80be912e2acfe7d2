"""Dynamic batching: coalesce concurrent single-request callers into one forward pass.

Like Triton's / TorchServe's / Ray Serve's dynamic batching, inside one process: threads submit uint8 crops
for the same :class:`~inference.cache.LoadedModel`; one worker thread takes the first waiting request, waits
at most ``max_wait_ms`` for more (dispatching at once when ``max_batch_size`` images are queued), runs one
forward pass for all of them and hands each caller exactly its own rows of predictions. A forward pass over a
batch is cheaper per image than one per request (oneDNN/BLAS use the cores better on larger inputs), which is
where the gain comes from; the price is up to ``max_wait_ms`` of extra latency when traffic is light.

Failure isolation: requests are validated on submit, so a malformed crop fails only its caller. If a batched
forward still fails, each request of that batch is re-run on its own, so every caller gets its own result
or its own exception rather than a neighbour's.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import torch

from contracts import Prediction
from inference.cache import LoadedModel
from inference.predict import check_crop_batch, logits, top_k
from inference.preprocess import normalise

Result = list[list[Prediction]]


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


_STOP = object()


class DynamicBatcher:
    """Coalesces concurrent :meth:`submit` calls for one model into batched forward passes.

    Use as a context manager (or call :meth:`close`) so the worker thread stops; requests still queued when
    it closes fail with ``RuntimeError``.
    """

    def __init__(self, model: LoadedModel, *, max_batch_size: int = 8, max_wait_ms: float = 5.0) -> None:
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch_size >= 1 and max_wait_ms >= 0, got {max_batch_size}, {max_wait_ms}")
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1e3
        self._queue: queue.Queue[_Request | object] = queue.Queue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._batches = 0
        self._images = 0
        self._worker = threading.Thread(target=self._run, name=f"batcher-{model.name}", daemon=True)
        self._worker.start()

    def submit(self, crops: torch.Tensor, k: int) -> Future[Result]:
        """Queue uint8 crops (``[3, H, W]`` or ``[N, 3, H, W]``); the future yields one top-k list per image."""
        batch = crops[None] if crops.ndim == 3 else crops
        check_crop_batch(self.model, batch)
        if k < 1:
            raise ValueError(f"top_k must be at least 1, got {k}")
        future: Future[Result] = Future()
        with self._close_lock:
            if self._closed:
                raise RuntimeError("DynamicBatcher is closed")
            self._queue.put(_Request(batch, k, future))
        return future

    def classify(self, crops: torch.Tensor, k: int, timeout: float | None = None) -> Result:
        """Blocking :meth:`submit`: the caller's own predictions, or the exception its forward pass raised."""
        return self.submit(crops, k).result(timeout)

    def stats(self) -> BatcherStats:
        return BatcherStats(self._batches, self._images)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._worker.join()

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        carried: _Request | None = None
        stopping = False
        while not stopping:
            first = carried if carried is not None else self._queue.get()
            carried = None
            if first is _STOP:
                break
            assert isinstance(first, _Request)
            batch, carried, stopping = self._collect(first)
            self._execute(batch)
        self._fail_pending(carried)

    def _collect(self, first: _Request) -> tuple[list[_Request], _Request | None, bool]:
        """Gather requests until the batch is full or ``max_wait`` has passed since ``first`` was taken.

        Returns the batch, a request that did not fit (it starts the next batch) and whether to stop.
        """
        batch, images = [first], len(first.crops)
        deadline = time.monotonic() + self.max_wait_s
        while images < self.max_batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, None, True
            assert isinstance(item, _Request)
            if images + len(item.crops) > self.max_batch_size:
                return batch, item, False
            batch.append(item)
            images += len(item.crops)
        return batch, None, False

    def _execute(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            outcomes: list[Result | Exception] = list(self._forward(live))
        except Exception as exc:  # noqa: BLE001  any failure of the batch is handed to its callers' futures
            # Isolate the failure: re-run each request alone so every caller gets its own outcome.
            outcomes = [exc] if len(live) == 1 else [self._forward_alone(r) for r in live]
        for request, outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, Exception):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)

    def _forward_alone(self, request: _Request) -> Result | Exception:
        try:
            return self._forward([request])[0]
        except Exception as exc:  # noqa: BLE001  returned to be set on this caller's future, not swallowed
            return exc

    def _forward(self, requests: list[_Request]) -> list[Result]:
        """One forward pass for all ``requests``; each gets the top-k of its own rows."""
        crops = torch.cat([r.crops for r in requests])
        scores = logits(self.model, normalise(crops, self.model.weights))
        self._batches += 1
        self._images += len(crops)
        results, start = [], 0
        for request in requests:
            rows = scores[start : start + len(request.crops)]
            start += len(request.crops)
            results.append(top_k(rows, request.k, self.model.weights.categories))
        return results

    def _fail_pending(self, carried: _Request | None) -> None:
        pending = [carried] if carried is not None else []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Request):
                pending.append(item)
        for request in pending:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("DynamicBatcher closed before this request ran"))
