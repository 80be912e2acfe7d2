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
    NARROW_COMPUTE_THREAD,
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


def _os_names() -> list[str]:
    names = []
    for task in Path("/proc/self/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:  # a thread that ended while listing
            continue
    return names


def _my_os_name() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


@LINUX_WITH_2_CORES
@pytest.mark.skipif("OpenMP" not in torch.__config__.parallel_info(), reason="needs torch with OpenMP")
def test_compute_threads_and_their_openmp_helpers_carry_their_names_in_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the system benchmark and a profiler count as forward passes: the compute thread, the OpenMP
    helpers it starts (they inherit its name), and the narrow threads."""
    monkeypatch.setattr(torch_threads, "_configured", (2, None))

    def two_thread_op() -> str:
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            _elementwise()
        finally:
            torch.set_num_threads(before)
        return _my_os_name()

    assert run_on_compute_thread(two_thread_op) == torch_threads.COMPUTE_OS_NAME
    # the compute thread and at least one helper: only the compute thread starts threads with its name
    assert _os_names().count(torch_threads.COMPUTE_OS_NAME) >= 2
    release = threading.Event()
    try:
        occupied = torch_threads.submit_pass(lambda: release.wait(30))
        narrow = torch_threads.submit_pass(_my_os_name).result(30)
    finally:
        release.set()
    assert occupied.result(30) is True
    assert narrow == torch_threads.NARROW_OS_NAME


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
        assert run_on_compute_thread(torch.get_num_threads) == default + 1  # set where passes run
    finally:
        run_on_compute_thread(torch.set_num_threads, default)


def test_configure_torch_threads_applies_once() -> None:
    current = run_on_compute_thread(torch.get_num_threads)
    first = configure_torch_threads(current, None)
    assert first[0] == torch_threads.team_budget()  # the budget the first call set, whoever made it
    assert configure_torch_threads(current + 1, 3) == first  # ignored, no exception from torch


@LINUX_WITH_2_CORES
def test_the_compute_thread_shares_its_budget_with_a_narrow_pass_layer_by_layer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model from the cache re-sizes the compute thread's team before every convolution: the whole budget
    while its pass runs alone, one thread while a pass runs on a narrow thread (which has one thread), the
    whole budget again once that pass has ended; a thread outside any pass keeps its own setting."""
    monkeypatch.setattr(torch_threads, "_configured", (2, None))  # the budget, whatever the core count
    model = ModelCache(precision="fp32", device=torch.device("cpu"), allow_download=False).get("resnet18", "random:0")
    seen: list[tuple[str, int]] = []
    record = model.module.layer4[1].conv2.register_forward_pre_hook(
        lambda *_: seen.append((threading.current_thread().name, torch.get_num_threads()))
    )
    x = torch.zeros(1, 3, 64, 64)
    first_done, other_running, other_may_end, other_ended = (threading.Event() for _ in range(4))

    def forward() -> None:
        with torch.inference_mode():
            model.module(x)

    def main_pass() -> None:
        with compute_pass():
            forward()  # alone
            first_done.set()
            assert other_running.wait(30)
            forward()  # beside the narrow pass
            other_may_end.set()
            assert other_ended.wait(30)
            forward()  # alone again, within the same pass

    def narrow_pass() -> None:
        with compute_pass():
            forward()
            other_running.set()
            assert other_may_end.wait(30)
        other_ended.set()

    def outside() -> int:
        use_one_thread_here()
        forward()
        return torch.get_num_threads()

    try:
        main = torch_threads.submit_pass(main_pass)
        assert first_done.wait(30)
        narrow = torch_threads.submit_pass(narrow_pass)  # the compute thread is busy: a narrow thread
        narrow.result(30)
        main.result(30)
        assert _on_new_thread(outside) == 1
    finally:
        record.remove()
        for event in (first_done, other_running, other_may_end, other_ended):
            event.set()
    compute, narrow_thread = seen[0][0], seen[1][0]
    assert compute.startswith(COMPUTE_THREAD) and narrow_thread.startswith(NARROW_COMPUTE_THREAD)
    assert seen[:4] == [(compute, 2), (narrow_thread, 1), (compute, 1), (compute, 2)]
    assert seen[4][1] == 1  # outside any pass: the hook left the thread's own setting alone
    assert torch_threads.running_passes() == 0


@LINUX_WITH_2_CORES
def test_a_narrow_pass_runs_with_one_thread_even_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the compute thread may ever have a team (libgomp keeps a team's threads as long as its thread
    lives, and more of them than cores throttles every pass)."""
    monkeypatch.setattr(torch_threads, "_configured", (2, None))
    release = threading.Event()

    def narrow_pass() -> tuple[int, int]:
        with compute_pass():
            return torch_threads.running_passes(), torch.get_num_threads()

    try:
        occupied = torch_threads.submit_pass(lambda: release.wait(30))  # work on the compute thread, no pass
        assert torch_threads.submit_pass(narrow_pass).result(30) == (1, 1)
    finally:
        release.set()
    assert occupied.result(30) is True


def test_with_a_budget_of_one_passes_take_turns_on_the_compute_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two worker processes on 2 cores have a thread each: a narrow pass beside the compute thread's would
    oversubscribe the cores."""
    monkeypatch.setattr(torch_threads, "_configured", (1, None))
    first_running, release = threading.Event(), threading.Event()

    def first() -> str:
        first_running.set()
        assert release.wait(30)
        return threading.current_thread().name

    try:
        one = torch_threads.submit_pass(first)
        assert first_running.wait(30)
        two = torch_threads.submit_pass(lambda: threading.current_thread().name)
        assert not two.done()  # queued behind the first, not started on a narrow thread
    finally:
        release.set()
    assert one.result(30) == two.result(30)
    assert one.result().startswith(COMPUTE_THREAD) and "narrow" not in one.result()


def test_a_pass_that_could_not_be_submitted_does_not_keep_the_compute_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    compute = torch_threads._compute_executor()

    def refuse(*_: object) -> None:
        raise RuntimeError("cannot schedule new futures after shutdown")

    with monkeypatch.context() as patched:
        patched.setattr(compute, "submit", refuse)
        with pytest.raises(RuntimeError, match="shutdown"):
            torch_threads.submit_pass(lambda: None)
    name = torch_threads.submit_pass(lambda: threading.current_thread().name).result(30)
    assert "narrow" not in name  # the compute thread is free again for the next pass


@LINUX_WITH_2_CORES
def test_run_on_compute_thread_from_a_narrow_thread_hands_the_work_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """A narrow thread must never get a team, so what is meant for the compute thread does not run inline."""
    monkeypatch.setattr(torch_threads, "_configured", (2, None))
    narrow_started, release = threading.Event(), threading.Event()

    def narrow() -> tuple[str, str]:
        narrow_started.set()
        return threading.current_thread().name, run_on_compute_thread(lambda: threading.current_thread().name)

    try:
        occupied = torch_threads.submit_pass(lambda: release.wait(30))
        handed = torch_threads.submit_pass(narrow)
        assert narrow_started.wait(30)
    finally:
        release.set()
    assert occupied.result(30) is True
    here, there = handed.result(30)
    assert here.startswith(NARROW_COMPUTE_THREAD) and "narrow" not in there
