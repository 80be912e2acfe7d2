from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

from inference import torch_threads
from inference.batcher import BatcherStats, DynamicBatcher
from inference.cache import LoadedModel, ModelCache
from inference.predict import classify
from inference.preprocess import crop_uint8, decode_image
from inference.torch_threads import run_on_compute_thread
from inference.weights import resolve_weights

from .conftest import MAX_BYTES, MAX_PIXELS

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def resnet18(model_cache: ModelCache) -> LoadedModel:
    return model_cache.get("resnet18", "IMAGENET1K_V1")


@pytest.fixture(scope="module")
def crops(resnet18: LoadedModel, photos: list[Path]) -> list[torch.Tensor]:
    return [
        crop_uint8(decode_image(p.read_bytes(), max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS), resnet18.weights)
        for p in photos
    ]


def _same_predictions(a, b) -> bool:
    return [[p.class_index for p in row] for row in a] == [[p.class_index for p in row] for row in b] and all(
        abs(x.probability - y.probability) < 1e-3
        for ra, rb in zip(a, b, strict=True)
        for x, y in zip(ra, rb, strict=True)
    )


@pytest.mark.slow
def test_each_concurrent_caller_gets_its_own_predictions(resnet18: LoadedModel, crops: list[torch.Tensor]) -> None:
    requests = [(crops[i % len(crops)], 1 + i % 4) for i in range(15)]  # 3 rounds over the photos, mixed k
    expected = [classify(resnet18, crop[None], k) for crop, k in requests]
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(requests))

    with DynamicBatcher(resnet18, max_batch_size=8, max_wait_ms=200) as batcher:

        def caller(index: int) -> None:
            crop, k = requests[index]
            barrier.wait()
            results[index] = batcher.classify(crop, k, timeout=60)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(requests))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        stats = batcher.stats()

    for index, (_, k) in enumerate(requests):
        assert len(results[index]) == 1 and len(results[index][0]) == k
        assert _same_predictions(results[index], expected[index]), f"request {index} got another's predictions"
    assert stats.images == len(requests) and stats.batches < len(requests), stats


def test_multi_image_requests_and_oversized_requests(resnet18: LoadedModel, crops: list[torch.Tensor]) -> None:
    everything = torch.stack(crops)
    with DynamicBatcher(resnet18, max_batch_size=2, max_wait_ms=1) as batcher:
        big = batcher.submit(everything, 3)  # larger than max_batch_size: runs on its own
        small = batcher.submit(everything[1:3], 2)
        assert _same_predictions(big.result(60), classify(resnet18, everything, 3))
        assert _same_predictions(small.result(60), classify(resnet18, everything[1:3], 2))


def test_invalid_request_fails_on_submit(resnet18: LoadedModel) -> None:
    with DynamicBatcher(resnet18) as batcher:
        with pytest.raises(ValueError, match="expects uint8 crops"):
            batcher.submit(torch.zeros(3, 256, 256, dtype=torch.uint8), 1)
        with pytest.raises(ValueError, match="at least 1"):
            batcher.submit(torch.zeros(3, 224, 224, dtype=torch.uint8), 0)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(torch.zeros(3, 224, 224, dtype=torch.uint8), 1)


def loaded(module: nn.Module) -> LoadedModel:
    """A real module standing in for ResNet18's forward pass (its weights' transforms and categories)."""
    return LoadedModel(
        module=module.eval(),
        weights=resolve_weights("resnet18", "random"),
        precision="fp32",
        device=torch.device("cpu"),
        load_ms=0.0,
    )


class RejectsBlankImages(nn.Module):
    """A real module whose forward fails when the batch holds a uniform image (stand-in for a bad input)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.flatten(2).std(dim=2) == 0).all(dim=1).any()):
            raise RuntimeError("blank image in batch")
        return self.fc(x.mean(dim=(2, 3)))


def test_forward_failure_reaches_only_its_own_caller() -> None:
    model = loaded(RejectsBlankImages())
    noise = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    blank = torch.full((3, 224, 224), 7, dtype=torch.uint8)
    with DynamicBatcher(model, max_batch_size=8, max_wait_ms=500) as batcher:
        good = batcher.submit(noise, 2)
        bad = batcher.submit(blank, 2)
        also_good = batcher.submit(noise.flip(-1), 2)
        assert _same_predictions(good.result(30), classify(model, noise[None], 2))
        with pytest.raises(RuntimeError, match="blank image"):
            bad.result(30)
        assert _same_predictions(also_good.result(30), classify(model, noise.flip(-1)[None], 2))


# The "expected callers" policy: wait for company only while announced callers have not submitted yet.
LONG_WAIT_MS = 4000  # so long that a request held for it is unmistakable; every bound below is a quarter
PROMPT_S = LONG_WAIT_MS / 1e3 / 4


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def test_lone_request_is_dispatched_without_waiting(resnet18: LoadedModel, crops: list[torch.Tensor]) -> None:
    classify(resnet18, crops[0][None], 1)  # warm-up: the first forward pass allocates
    with DynamicBatcher(resnet18, max_wait_ms=LONG_WAIT_MS) as batcher:
        assert _timed(lambda: batcher.classify(crops[0], 1, timeout=30)) < PROMPT_S

        def announced_alone() -> None:
            with batcher.expecting():
                batcher.classify(crops[1], 1, timeout=30)

        assert _timed(announced_alone) < PROMPT_S
        assert batcher.stats() == BatcherStats(batches=2, images=2) and batcher.expected() == 0


def test_announced_callers_share_one_forward_pass(resnet18: LoadedModel, crops: list[torch.Tensor]) -> None:
    callers = 4
    announced = threading.Barrier(callers)
    results: dict[int, object] = {}
    with DynamicBatcher(resnet18, max_batch_size=8, max_wait_ms=LONG_WAIT_MS) as batcher:

        def caller(index: int) -> None:
            with batcher.expecting():
                announced.wait()
                time.sleep(0.05 * index)  # staggered, like blob reads of different lengths
                results[index] = batcher.classify(crops[index % len(crops)], 2, timeout=30)

        def run_all() -> None:
            threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)

        elapsed = _timed(run_all)
        assert batcher.stats() == BatcherStats(batches=1, images=callers) and batcher.expected() == 0
    batch = torch.stack([crops[index % len(crops)] for index in range(callers)])
    forward_pass = _timed(lambda: run_on_compute_thread(classify, resnet18, batch, 2))  # as slow as the box is now
    assert elapsed - forward_pass < PROMPT_S  # dispatched when the last one submitted, not at the deadline
    for index in range(callers):
        assert _same_predictions(results[index], classify(resnet18, crops[index % len(crops)][None], 2))


def test_caller_failing_before_submit_withdraws_its_announcement(
    resnet18: LoadedModel, crops: list[torch.Tensor]
) -> None:
    announced, fail = threading.Event(), threading.Event()
    raised: list[BaseException] = []
    with DynamicBatcher(resnet18, max_wait_ms=LONG_WAIT_MS) as batcher:

        def failing_caller() -> None:
            try:
                with batcher.expecting():
                    announced.set()
                    fail.wait(30)
                    raise OSError("blob read failed")
            except OSError as exc:
                raised.append(exc)

        thread = threading.Thread(target=failing_caller)
        thread.start()
        announced.wait(30)
        start = time.perf_counter()
        waiting = batcher.submit(crops[0], 1)
        time.sleep(0.05)
        assert not waiting.done()  # held for the announced caller ...
        fail.set()
        waiting.result(30)  # ... and released when it withdraws, not at the deadline
        assert time.perf_counter() - start < PROMPT_S
        thread.join(30)
        assert raised and batcher.expected() == 0


@contextmanager
def announcement_held(batcher: DynamicBatcher, images: int = 1) -> Iterator[None]:
    """Another thread announces ``images`` and submits nothing until the block ends."""
    announced, release = threading.Event(), threading.Event()

    def caller() -> None:
        with batcher.expecting(images):
            announced.set()
            release.wait(30)

    thread = threading.Thread(target=caller)
    thread.start()
    announced.wait(30)
    try:
        yield
    finally:
        release.set()
        thread.join(30)


def test_held_announcement_delays_others_at_most_max_wait(resnet18: LoadedModel, crops: list[torch.Tensor]) -> None:
    max_wait_ms = 300
    with DynamicBatcher(resnet18, max_wait_ms=max_wait_ms) as batcher, announcement_held(batcher):
        elapsed = _timed(lambda: batcher.classify(crops[0], 1, timeout=30))
    assert max_wait_ms / 1e3 <= elapsed < max_wait_ms / 1e3 + PROMPT_S  # waited, then ran without it


def test_company_that_cannot_fit_is_not_waited_for(resnet18: LoadedModel, crops: list[torch.Tensor]) -> None:
    with DynamicBatcher(resnet18, max_batch_size=2, max_wait_ms=LONG_WAIT_MS) as batcher:
        with announcement_held(batcher, images=2):
            assert _timed(lambda: batcher.classify(crops[0], 1, timeout=30)) < PROMPT_S  # 1 + 2 > 2
            assert _timed(lambda: batcher.classify(torch.stack(crops[:2]), 1, timeout=30)) < PROMPT_S  # full
            assert batcher.expected() == 1
        assert batcher.expected() == 0


class BlocksUntilReleased(nn.Module):
    """A real module whose forward pass waits for an event, so a test can close the batcher mid-pass."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1000)
        self.release = release

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.release.wait(30)
        return self.fc(x.mean(dim=(2, 3)))


def test_close_fails_requests_still_queued() -> None:
    release = threading.Event()
    model = loaded(BlocksUntilReleased(release))
    crop = torch.zeros(3, 224, 224, dtype=torch.uint8)
    batcher = DynamicBatcher(model, max_batch_size=1, max_wait_ms=LONG_WAIT_MS)
    running = batcher.submit(crop, 1)
    while not running.running():  # the worker has taken it into a forward pass
        time.sleep(0.01)
    queued = batcher.submit(crop, 1)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    while True:  # close() has marked it closed (it then waits for the pass in progress)
        try:
            batcher.submit(crop, 1).cancel()
        except RuntimeError:
            break
        time.sleep(0.01)
    release.set()
    closer.join(30)
    assert len(running.result(30)[0]) == 1
    with pytest.raises(RuntimeError, match="closed before this request ran"):
        queued.result(30)


def test_an_announcement_stuck_for_long_is_no_longer_waited_for(
    resnet18: LoadedModel, crops: list[torch.Tensor]
) -> None:
    """A caller stuck before submitting (a slow blob read) must not make every later batch wait ``max_wait``."""
    max_wait_ms = 300
    with DynamicBatcher(resnet18, max_wait_ms=max_wait_ms) as batcher, announcement_held(batcher):
        time.sleep(2 * max_wait_ms / 1e3 + 0.05)  # the announcement is stale now
        elapsed = _timed(lambda: batcher.classify(crops[0], 1, timeout=30))
        assert batcher.expected() == 1  # still owed, just not waited for
    assert elapsed < max_wait_ms / 1e3 / 2, elapsed


class ExitsTheThread(nn.Module):
    """A forward pass that raises what no ``except Exception`` catches, as a fatal error in a library would."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise SystemExit("the forward pass took its thread down")


def test_a_fatal_error_in_a_pass_closes_the_batcher_says_why_and_fails_its_callers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = loaded(ExitsTheThread())
    crop = torch.zeros(3, 224, 224, dtype=torch.uint8)
    batcher = DynamicBatcher(model, max_batch_size=1, max_wait_ms=LONG_WAIT_MS)
    with caplog.at_level(logging.ERROR, logger="inference.batcher"):
        first = batcher.submit(crop, 1)
        with pytest.raises(RuntimeError, match="closed while this request ran"):
            first.result(30)
    assert batcher.closed
    assert any("its batcher is closed" in r.getMessage() and r.exc_info for r in caplog.records)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.classify(crop, 1, timeout=30)
    batcher.close()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or (os.cpu_count() or 1) < 2, reason="needs Linux, 2+ cores")
def test_forward_passes_run_on_the_compute_thread_and_the_batcher_thread_gets_no_team(
    resnet18: LoadedModel, crops: list[torch.Tensor]
) -> None:
    """Each thread with an OpenMP team of its own makes libgomp throttle every forward pass (torch_threads)."""
    run_on_compute_thread(classify, resnet18, crops[0][None], 1)  # the compute thread and its team exist now
    before = len(os.listdir("/proc/self/task"))
    with DynamicBatcher(resnet18, max_wait_ms=5) as batcher:
        batcher.classify(torch.stack(crops[:4]), 1, timeout=30)
        assert len(os.listdir("/proc/self/task")) - before == 1  # the batcher's own thread, nothing else


def test_the_compute_thread_cannot_wait_for_a_batcher(resnet18: LoadedModel, crops: list[torch.Tensor]) -> None:
    with DynamicBatcher(resnet18, max_wait_ms=5) as batcher:
        with pytest.raises(RuntimeError, match="compute thread cannot wait"):
            run_on_compute_thread(batcher.classify, crops[0], 1, timeout=30)
        assert len(batcher.classify(crops[0], 1, timeout=30)[0]) == 1


class RecordsItsPasses(nn.Module):
    """A real module that notes, as each forward pass starts, the team sizes of all passes running then."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1000)
        self.lock = threading.Lock()
        self.running: list[int] = []
        self.passes: list[list[int]] = []  # per pass: the torch threads of every pass running, its own last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        threads = torch.get_num_threads()
        with self.lock:
            self.running.append(threads)
            self.passes.append(list(self.running))
        time.sleep(0.2)
        with self.lock:
            self.running.remove(threads)
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2+ cores")
def test_with_two_streams_a_lone_pass_gets_the_budget_and_overlapping_passes_share_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch_threads, "_configured", (2, None))  # the budget, whatever the core count
    module = RecordsItsPasses()
    crop = torch.zeros(3, 224, 224, dtype=torch.uint8)
    with DynamicBatcher(loaded(module), max_batch_size=2, max_wait_ms=5, streams=2) as batcher:
        assert len(batcher.classify(crop, 1, timeout=30)[0]) == 1  # alone: the whole budget
        futures = [batcher.submit(crop, 1) for _ in range(8)]  # four passes' worth at once
        assert all(len(f.result(30)[0]) == 1 for f in futures)
    lone, *loaded_passes = module.passes
    assert lone == [2]
    assert max(len(running) for running in loaded_passes) == 2  # two passes at once under load
    # a pass counts itself before it sizes its team, so of two overlapping passes at most one started with
    # several threads (this module has no convolution to re-size it later: test_torch_threads covers that)
    assert all(sum(threads > 1 for threads in running) <= 1 for running in loaded_passes)
    assert any(1 in running for running in loaded_passes if len(running) == 2)


def test_with_one_stream_passes_never_overlap() -> None:
    module = RecordsItsPasses()
    crop = torch.zeros(3, 224, 224, dtype=torch.uint8)
    with DynamicBatcher(loaded(module), max_batch_size=2, max_wait_ms=5) as batcher:
        futures = [batcher.submit(crop, 1) for _ in range(6)]
        assert all(len(f.result(30)[0]) == 1 for f in futures)
    assert max(len(running) for running in module.passes) == 1
