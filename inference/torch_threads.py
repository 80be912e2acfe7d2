"""Which threads of a process may run torch on more than one core (the compute thread, and no other), and how
the forward passes running at once share the cores.

Torch's OpenMP runtime on Linux (libgomp) gives every thread that runs a parallel kernel a team of worker
threads of its own. Once it manages more threads than there are cores, it stops spinning between parallel
regions (its "throttled" spin count of 100) and puts the team to sleep after each one; every one of the
hundred or so regions of a forward pass then waits for a sleeping thread to be woken. On the 2-core test
machine a ResNet18 batch-1 forward pass after a pause took 1.6–1.9 times as long as soon as other threads
had run parallel ops (``benchmarks/torch_threads_probe.py`` measures it). In a Functions worker such
threads are everywhere: activities run on a pool of up to 16 threads, a crop's ``.contiguous()`` or a
``torch.stack`` is enough to give each of them a team, and each model's batcher would be one more.

So forward passes run on compute threads only, and activity threads call :func:`use_one_thread_here` before
their tensor work: with a team size of one, torch runs each kernel inline and the thread never gets a team.
The compute thread (:func:`run_on_compute_thread`, one per process) is the only thread with a team; when a
pass is to start while another occupies it, :func:`submit_pass` runs it on a narrow compute thread, which
always runs with one thread, as long as the thread budget has one to spare.

Passes share the budget through :func:`compute_pass`: each counts itself among the process's running
passes; a narrow pass takes one thread, and the compute thread's team is what is left, re-read before every
convolution (the hooks :func:`follow_compute_teams` add). A pass alone uses the whole budget (a lone
request keeps its latency); on 2 cores, once a narrow pass starts beside it, it runs with one thread from
its next layer on, as the raw pipeline's two one-thread streams do. For ResNet18 at batch 8 those beat one
two-thread stream under load (about 10 % in runs 7 and 8) because a pass then never waits at an OpenMP
barrier for a thread that another pass or an activity has taken the core from.

On a GPU passes are placed the same way (the batchers default to one stream there), and the libgomp
problem is the same for their host-side CPU work.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from typing import Any, cast

import torch
from torch import nn

log = logging.getLogger(__name__)

COMPUTE_THREAD = "torch-compute"
NARROW_COMPUTE_THREAD = f"{COMPUTE_THREAD}-narrow"
_on_compute_thread = threading.local()
# What the kernel calls these threads (15 bytes at most; see name_os_thread). Tools group by the prefix.
OS_NAME_PREFIX = "torch-"
COMPUTE_OS_NAME, NARROW_OS_NAME = COMPUTE_THREAD, "torch-narrow"
_PR_SET_NAME = 15


@cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, or None where there is none to load: a name must never cost a compute thread."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # a statically linked Python cannot dlopen
        return None
    return cast(Callable[..., int] | None, getattr(libc, "prctl", None))


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` where the kernel shows it (``top -H``, py-spy, ``/proc/<pid>/task``).

    Python's thread names stay inside Python; these let a profile or the system benchmark tell the forward
    passes' CPU from the rest of a worker's. Threads the calling thread starts later inherit the name, so
    with libgomp (PyPI's Linux torch) the compute thread's OpenMP helpers, which it starts itself, carry it
    too. Linux only.
    """
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _mark_compute_thread() -> None:
    _on_compute_thread.active = True
    name_os_thread(COMPUTE_OS_NAME)


def on_compute_thread() -> bool:
    return bool(getattr(_on_compute_thread, "active", False))


_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _compute_executor() -> ThreadPoolExecutor:
    """Created on first use, so processes that never run a forward pass (the local host's dispatcher) have no
    such thread; under a lock, since two first callers must not get a compute thread each."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=COMPUTE_THREAD, initializer=_mark_compute_thread
            )
        return _executor


def run_on_compute_thread[**P, T](fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on the process's compute thread; its result, or its exception, raised here.

    Called from the compute thread itself it runs inline; from a narrow one it is handed over like from any
    other thread (nothing on the compute thread waits for a narrow one). ``fn`` must not wait for anything
    that needs the compute thread in turn (a dynamic batcher refuses such callers), or it would wait for ever.
    """
    if on_compute_thread() and not getattr(_team, "narrow", False):
        return fn(*args, **kwargs)
    return _compute_executor().submit(fn, *args, **kwargs).result()


_ThreadCountSetter = Callable[[int], object]


@cache
def _per_thread_setters() -> tuple[_ThreadCountSetter, ...]:
    """OpenMP's and MKL's per-thread thread-count setters, looked up through torch's own library.

    A lookup through ``libtorch_cpu`` covers every library it loaded, whatever their file names (some wheels
    ship libgomp renamed). MKL needs its own call: torch sets MKL's per-thread count in every thread it
    initialises, and a matrix product would otherwise start an OpenMP team of MKL's. Empty where there is
    nothing to find: other OpenMP runtimes (LLVM's on macOS, MSVC's on Windows) are not libgomp and do not
    throttle like this; a build without OpenMP has no teams.
    """
    library = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")
    no_load = getattr(os, "RTLD_NOLOAD", None)
    if no_load is None or not os.path.exists(library):
        return ()
    torch_cpu = ctypes.CDLL(library, mode=no_load | os.RTLD_NOW)
    setters = [getattr(torch_cpu, name, None) for name in ("omp_set_num_threads", "MKL_Set_Num_Threads_Local")]
    if setters[0] is None and "OpenMP" in torch.__config__.parallel_info():
        log.warning("torch uses OpenMP, but omp_set_num_threads was not found: activity threads keep their teams")
    return tuple(setter for setter in setters if setter is not None)


def use_one_thread_here() -> None:
    """Keep this thread's torch kernels inline (an OpenMP team of one) without touching any other thread.

    ``torch.set_num_threads`` would also change the process-wide default that new threads start from, so
    the per-thread settings are set directly. Torch's own per-thread initialisation runs first
    (``get_num_threads`` triggers it); otherwise it would put the default back at the thread's first
    parallel op. Cheap enough to call at the start of every activity (a few microseconds).
    """
    use_threads_here(1)


def use_threads_here(count: int) -> None:
    """This thread's OpenMP (and MKL) team size for its next kernels, as :func:`use_one_thread_here` sets 1."""
    setters = _per_thread_setters()
    if setters:
        torch.get_num_threads()
    for setter in setters:
        setter(count)


_passes_lock = threading.Lock()
_running_passes = 0
_wide_load = 0  # passes submit_pass gave the compute thread that have not finished
_narrow_load = 0  # and narrow threads
_team = threading.local()  # .narrow: a narrow compute thread; in a pass: .size, the team it set last
_narrow_executor: ThreadPoolExecutor | None = None


def _mark_narrow_compute_thread() -> None:
    _mark_compute_thread()
    name_os_thread(NARROW_OS_NAME)
    _team.narrow = True
    use_one_thread_here()


def _narrow_threads() -> ThreadPoolExecutor:
    """The narrow compute threads, started as needed (:func:`submit_pass` keeps at most the budget less
    one busy); they never get a team."""
    global _narrow_executor
    with _executor_lock:
        if _narrow_executor is None:
            _narrow_executor = ThreadPoolExecutor(
                max_workers=os.cpu_count() or 1,
                thread_name_prefix=NARROW_COMPUTE_THREAD,
                initializer=_mark_narrow_compute_thread,
            )
        return _narrow_executor


def submit_pass[T](fn: Callable[[], T]) -> Future[T]:
    """Start ``fn`` (forward passes in a :func:`compute_pass`) and return at once: on the compute thread if
    no other submitted pass occupies it, else on a narrow compute thread while fewer than the budget less one
    are busy, else queued on the compute thread.

    Only the compute thread ever has an OpenMP team: libgomp keeps a team's threads for as long as the
    thread that started it lives, and with more of them than cores it throttles every pass (the module's
    docstring). A narrow pass runs with one thread and takes one thread of the budget; the compute thread's
    pass gets the rest. With a budget of one, passes take turns on the compute thread.
    """
    global _wide_load, _narrow_load
    with _passes_lock:
        narrow = _wide_load > 0 and _narrow_load < team_budget() - 1
        if narrow:
            _narrow_load += 1
        else:
            _wide_load += 1

    def finished(_: Future[T]) -> None:  # also when it is cancelled before it ran
        global _wide_load, _narrow_load
        with _passes_lock:
            if narrow:
                _narrow_load -= 1
            else:
                _wide_load -= 1

    try:
        future = (_narrow_threads() if narrow else _compute_executor()).submit(fn)
    except BaseException:
        finished(Future())
        raise
    future.add_done_callback(finished)
    return future


def team_budget() -> int:
    """Threads the running passes share: the configured intra-op count, else one per core."""
    configured = _configured[0] if _configured is not None else None
    return configured or os.cpu_count() or 1


def _fit_team(*, force: bool) -> None:
    # _running_passes is read without the lock: a stale count costs one layer with the old team at most
    size = 1 if getattr(_team, "narrow", False) else max(1, team_budget() - max(0, _running_passes - 1))
    if force or size != getattr(_team, "size", None):
        use_threads_here(size)
        _team.size = size


@contextmanager
def compute_pass() -> Iterator[None]:
    """Run forward passes on this (compute) thread as one of the process's running passes.

    On the compute thread its team is the budget less one thread per other running pass, at the start and
    again before every convolution of a model prepared with :func:`follow_compute_teams`, so it shrinks
    when a pass starts on a narrow thread and grows back when that one ends; a narrow thread's stays at one.
    Re-entrant: a pass inside a pass is the same pass.
    """
    global _running_passes
    if getattr(_team, "size", None) is not None:
        yield
        return
    with _passes_lock:
        _running_passes += 1
    try:
        _fit_team(force=True)
        yield
    finally:
        _team.size = None
        with _passes_lock:
            _running_passes -= 1


def running_passes() -> int:
    """Forward passes running now in this process (for tests and diagnostics)."""
    return _running_passes


def _refit_team(_module: nn.Module, _inputs: Any) -> None:
    if getattr(_team, "size", None) is not None:  # only inside compute_pass: other threads keep their team
        _fit_team(force=False)


def follow_compute_teams(module: nn.Module) -> None:
    """Make ``module``'s passes re-size their team before each convolution (see :func:`compute_pass`).

    A few microseconds per convolution; a no-op on threads outside :func:`compute_pass` (a benchmark's or a
    test's own calls to the module keep their teams).
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            layer.register_forward_pre_hook(_refit_team)


_configure_lock = threading.Lock()
_configured: tuple[int | None, int | None] | None = None


def configure_torch_threads(intra: int | None, inter: int | None) -> tuple[int, int]:
    """Set torch's intra-op and inter-op thread counts once per process; returns the counts in effect.

    torch raises if the inter-op count is set twice or after inter-op work has started, so only the first
    call applies anything: later calls (e.g. from each Functions invocation) are no-ops, logged when they ask
    for something different. ``None`` leaves torch's default (one thread per core) for that pool.

    The intra-op count is the budget the running passes share (:func:`team_budget`); it is applied on the
    compute thread, the one thread with a team (it also becomes the default that threads which have not run
    torch yet start from). Applied on the calling thread, an
    activity's, it would undo :func:`use_one_thread_here` there and give that thread a team.
    """
    global _configured
    with _configure_lock:
        if _configured is None:
            _configured = (intra, inter)
            if intra is not None:
                run_on_compute_thread(torch.set_num_threads, intra)
            if inter is not None:
                try:
                    torch.set_num_interop_threads(inter)
                except RuntimeError as exc:
                    log.warning("could not set %d inter-op threads: %s", inter, exc)
        elif _configured != (intra, inter):
            log.warning("torch threads already configured as %s; ignoring %s", _configured, (intra, inter))
        return team_budget(), torch.get_num_interop_threads()
