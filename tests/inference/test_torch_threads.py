from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from inference import torch_threads
from inference.cache import ModelCache
from inference.torch_threads import (
    COMPUTE_THREAD,
    compute_pass,
    configure_torch_threads,
    run_on_compute_thread,
    use_one_thread_here,
)

pytestmark = pytest.mark.unit


def _on_new_thread[T](fn: Callable[[], T]) -> T:
    """``fn()`` on a fresh thread that stays alive until ``fn`` returns (a libgomp team lives as long as its
    thread); its result, or its exception, here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result(60)


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


LINUX_WITH_2_CORES = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir() or (os.cpu_count() or 1) < 2, reason="needs Linux and 2+ cores"
)


def _threads_spawned_by(op: Callable[[], object], *, limit_first: bool) -> int:
    """How many OS threads ``op`` adds to the process while its calling thread, a fresh one, is alive.

    The fresh thread's count is set to 2 first (and the process default put back after), whatever earlier
    tests left as the default: with one thread nothing could be spawned and the test would prove nothing.
    """

    def run() -> int:
        default = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            if limit_first:
                use_one_thread_here()
            before = _os_threads()
            op()
            return _os_threads() - before
        finally:
            torch.set_num_threads(default)

    return _on_new_thread(run)


def _elementwise() -> object:
    return (torch.ones(4_000_000) * 2).sum()


def _matrix_product() -> object:  # MKL's BLAS, with a per-thread count of its own
    a = torch.ones(512, 512)
    return a @ a


@LINUX_WITH_2_CORES
@pytest.mark.parametrize("op", [_elementwise, _matrix_product], ids=["elementwise", "matrix-product"])
def test_a_thread_limited_to_one_runs_parallel_ops_without_a_team(op: Callable[[], object]) -> None:
    """The measurable cause of the slowdown: every thread that runs a parallel op gets OpenMP threads of its own."""
    assert _threads_spawned_by(op, limit_first=False) == 1
    assert _threads_spawned_by(op, limit_first=True) == 0


@LINUX_WITH_2_CORES
def test_the_limit_is_this_threads_alone() -> None:
    fresh = _on_new_thread(torch.get_num_threads)
    here_before, compute_before = torch.get_num_threads(), run_on_compute_thread(torch.get_num_threads)

    def limited() -> tuple[int, int]:
        use_one_thread_here()
        return torch.get_num_threads(), _on_new_thread(torch.get_num_threads)

    assert _on_new_thread(limited) == (1, fresh)
    assert torch.get_num_threads() == here_before
    assert run_on_compute_thread(torch.get_num_threads) == compute_before


def test_compute_thread_runs_every_call_on_one_named_thread_and_raises_its_errors() -> None:
    def where() -> tuple[str, int]:
        return threading.current_thread().name, threading.get_ident()

    first, second = run_on_compute_thread(where), _on_new_thread(lambda: run_on_compute_thread(where))
    assert first == second and first[0].startswith(COMPUTE_THREAD) and first[1] != threading.get_ident()
    assert run_on_compute_thread(lambda: run_on_compute_thread(where)) == first  # nested: inline, no deadlock
    with pytest.raises(ZeroDivisionError):
        run_on_compute_thread(lambda: 1 / 0)
    assert run_on_compute_thread(where) == first  # an error does not cost the thread


def test_configure_sets_the_compute_threads_count_and_leaves_a_limited_caller_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = run_on_compute_thread(torch.get_num_threads)
    monkeypatch.setattr(torch_threads, "_configured", None)

    def configure_from_an_activity_thread() -> tuple[int, int]:
        use_one_thread_here()
        return configure_torch_threads(default + 1, None)[0], torch.get_num_threads()

    try:
        assert _on_new_thread(configure_from_an_activity_thread) == (default + 1, 1)
    finally:
        run_on_compute_thread(torch.set_num_threads, default)


def test_configure_torch_threads_applies_once() -> None:
    current = run_on_compute_thread(torch.get_num_threads)
    first = configure_torch_threads(current, None)
    assert first[0] == current
    assert configure_torch_threads(current + 1, 3) == first  # ignored, no exception from torch


@LINUX_WITH_2_CORES
def test_running_passes_share_the_budget_layer_by_layer_and_a_pass_alone_gets_it_back() -> None:
    """A model from the cache re-sizes its pass's team before every convolution: the whole budget while it
    runs alone, one thread once another pass runs, the whole budget again once that pass has ended."""
    model = ModelCache(precision="fp32", device=torch.device("cpu"), allow_download=False).get("resnet18", "random:0")
    seen: list[int] = []
    record = model.module.layer4[1].conv2.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    x = torch.zeros(1, 3, 64, 64)
    other_running, other_may_end = threading.Event(), threading.Event()

    def other_pass() -> None:
        with compute_pass():
            other_running.set()
            other_may_end.wait(30)

    def forward() -> None:
        with torch.inference_mode():
            model.module(x)

    budget = torch_threads.team_budget()
    assert budget >= 2, "the test needs a budget a second pass can share"
    try:
        with compute_pass():
            forward()  # alone
            with ThreadPoolExecutor(1) as pool:
                ended = pool.submit(other_pass)
                assert other_running.wait(30)
                assert torch_threads.running_passes() == 2
                forward()  # sharing
                other_may_end.set()
                ended.result(30)
            forward()  # alone again, within the same pass
        outside = _on_new_thread(lambda: (forward(), torch.get_num_threads())[1])
    finally:
        record.remove()
        other_may_end.set()
    assert seen[:3] == [budget, 1, budget]
    assert seen[3] == outside  # a thread outside any pass keeps its own team: the hook leaves it alone
    assert torch_threads.running_passes() == 0
