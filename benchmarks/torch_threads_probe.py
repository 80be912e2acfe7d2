"""Why :mod:`inference.torch_threads` exists: a forward pass after a pause, with and without other torch threads.

Prints the p50 of ResNet18 batch-1 forward passes run on the compute thread, each after a 200 ms pause (as a
lone task's pass comes after its preprocessing and storage hops), in three states of one process:

1. nothing else has run torch;
2. a pool of 8 threads has run small parallel ops with :func:`use_one_thread_here` first (what activities do);
3. another pool of 8 threads has run the same ops without it (what activities did before).

On the 2-core machine, 1 and 2 measured 27–39 ms and 3 51–64 ms in four runs (1.6–1.9x): libgomp's
throttled spinning once it manages more threads than cores. It is a probe that prints figures, not a test.

    python benchmarks/torch_threads_probe.py
"""

from __future__ import annotations

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.torch_threads import run_on_compute_thread, use_one_thread_here

PAUSE_S = 0.2
PASSES = 10


def paused_forward_p50_ms(model: torch.nn.Module, x: torch.Tensor) -> float:
    def timed() -> float:
        time.sleep(PAUSE_S)
        start = time.perf_counter()
        with torch.inference_mode():
            model(x)
        return (time.perf_counter() - start) * 1e3

    run_on_compute_thread(lambda: [model(x) for _ in range(3)])  # warm up
    return statistics.median(run_on_compute_thread(timed) for _ in range(PASSES))


def small_parallel_ops(limit: bool) -> None:
    if limit:
        use_one_thread_here()
    torch.zeros(3, 224, 224, dtype=torch.uint8).permute(1, 2, 0).contiguous()


def main() -> None:
    use_one_thread_here()  # this main thread too: any live thread with a team counts
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    alone = paused_forward_p50_ms(model, x)
    limited_pool = ThreadPoolExecutor(8)
    list(limited_pool.map(small_parallel_ops, [True] * 64))
    with_limited = paused_forward_p50_ms(model, x)
    default_pool = ThreadPoolExecutor(8)
    list(default_pool.map(small_parallel_ops, [False] * 64))
    with_default = paused_forward_p50_ms(model, x)
    threads = run_on_compute_thread(torch.get_num_threads)
    print(f"torch {torch.__version__}, {threads} intra-op threads on the compute thread; forward p50 after a pause:")
    print(f"  compute thread alone                           {alone:6.1f} ms")
    print(f"  + 8 pool threads limited to one thread         {with_limited:6.1f} ms  ({with_limited / alone:.2f}x)")
    print(f"  + 8 pool threads with default teams            {with_default:6.1f} ms  ({with_default / alone:.2f}x)")


if __name__ == "__main__":
    main()
