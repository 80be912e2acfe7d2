"""Measure the inference core on this machine and recommend a default precision.

Run from the repository root::

    python benchmarks/pipeline_benchmark.py --json benchmark.json

Everything is measured in one run on the photos in ``$SHARED_DIR/images`` (default ``../shared/images``)
with seeded random checkpoints (no pretrained weights exist here; speed does not depend on the values and the
checkpoints are made so that predictions differ between photos, which makes the bf16 drift figures
meaningful). Figures: decode + reference transform per image on one core; forward ms/image per model, batch
size and precision/layout; end-to-end images/s with the best settings; bf16 vs fp32 drift; the gain of the
dynamic batcher for concurrent single-image callers. Prints markdown tables and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from inference.batcher import DynamicBatcher  # noqa: E402
from inference.cache import LoadedModel, ModelCache  # noqa: E402
from inference.precision import cpu_has_native_bf16, resolve_precision  # noqa: E402
from inference.predict import classify, logits  # noqa: E402
from inference.preprocess import crop_uint8, decode_image, normalise  # noqa: E402
from inference.torch_threads import configure_torch_threads, run_on_compute_thread, use_one_thread_here  # noqa: E402
from tests.fixtures.seeded_weights import discriminative_state_dict  # noqa: E402

MODELS = {"resnet18": "IMAGENET1K_V1", "resnet50": "IMAGENET1K_V2"}
BATCH_SIZES = (1, 8)
MAX_BYTES, MAX_PIXELS = 50 * 1024 * 1024, 50_000_000
#: bf16 is recommended only when its logits stay this close to fp32 on every photo.
BF16_ACCEPTABLE_COSINE = 0.99


def best_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Best of ``repeats`` timings: on a shared machine other processes only ever add time, so the minimum is
    the most reproducible estimate of what the code costs (the load average is recorded alongside)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e3)
    return min(samples)


def load_models(cache: ModelCache, folder: Path) -> dict[str, dict[str, LoadedModel]]:
    """fp32 and bf16 LoadedModels per model, from a seeded checkpoint saved as a user ``file:`` checkpoint."""
    loaded: dict[str, dict[str, LoadedModel]] = {}
    for seed, (model, base) in enumerate(MODELS.items()):
        path = folder / f"{model}-seed{seed}.pth"
        torch.save(discriminative_state_dict(model, seed), path)
        spec = f"file:{path}#{base}"
        loaded[model] = {p: cache.get(model, spec, precision=p) for p in ("fp32", "bf16")}
    return loaded


def bench_preprocess(photos: list[bytes], model: LoadedModel, repeats: int) -> dict[str, float]:
    """Per-image ms on one core (the calling thread is limited to one): decode, uint8 crop, normalise, and
    decode + the reference transform."""
    weights, transform = model.weights, model.weights.transforms()
    images = [decode_image(b, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS) for b in photos]
    crops = [crop_uint8(i, weights) for i in images]

    def per_image(fn: Callable[[int], object]) -> float:
        return best_ms(lambda: [fn(i) for i in range(len(photos))], repeats) / len(photos)

    return {
        "decode_ms": per_image(lambda i: decode_image(photos[i], max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)),
        "crop_uint8_ms": per_image(lambda i: crop_uint8(images[i], weights)),
        "normalise_ms": per_image(lambda i: normalise(crops[i][None], weights)),
        "decode_plus_reference_transform_ms": per_image(
            lambda i: transform(decode_image(photos[i], max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS))
        ),
    }


def bench_forward(models: dict[str, LoadedModel], batch: torch.Tensor, repeats: int) -> dict[str, float]:
    """ms/image of the forward pass: fp32 contiguous (plain torchvision module), fp32 channels-last, bf16."""
    fp32 = models["fp32"]
    contiguous = copy.deepcopy(fp32.module).to(memory_format=torch.contiguous_format)

    def plain() -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = contiguous(batch)
            return out

    n = len(batch)
    return {
        "fp32_contiguous": best_ms(plain, repeats) / n,
        "fp32_channels_last": best_ms(lambda: logits(fp32, batch), repeats) / n,
        "bf16_autocast": best_ms(lambda: logits(models["bf16"], batch), repeats) / n,
    }


def bench_end_to_end(model: LoadedModel, photos: list[bytes], images: int, batch_size: int, repeats: int) -> float:
    """images/s of bytes -> decode -> crop -> normalise -> forward -> top-5, in batches, one process (best run)."""
    data = [photos[i % len(photos)] for i in range(images)]

    def run(chunk: list[bytes]) -> None:
        crops = [crop_uint8(decode_image(d, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS), model.weights) for d in chunk]
        classify(model, torch.stack(crops), 5)

    def all_images() -> None:
        for start in range(0, images, batch_size):
            run(data[start : start + batch_size])

    return images / (best_ms(all_images, repeats, warmup=1) / 1e3)


def bf16_drift(models: dict[str, LoadedModel], batch: torch.Tensor) -> dict[str, float]:
    full, half = logits(models["fp32"], batch), logits(models["bf16"], batch)
    cosine = torch.nn.functional.cosine_similarity(full, half, dim=1)
    top5_full, top5_half = full.topk(5, dim=1).indices, half.topk(5, dim=1).indices
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5_full.tolist(), top5_half.tolist(), strict=True)]
    return {
        "min_cosine": cosine.min().item(),
        "max_abs_diff": (full - half).abs().max().item(),
        "logit_range": full.abs().max().item(),
        "top1_agreement": (full.argmax(1) == half.argmax(1)).float().mean().item(),
        "top5_overlap": sum(overlap) / len(overlap),
    }


def bench_batching(
    model: LoadedModel, crops: list[torch.Tensor], callers: int, per_caller: int, repeats: int
) -> dict[str, float]:
    """Throughput and mean latency of ``callers`` threads each classifying single images back to back
    (best of ``repeats`` runs), calling the model directly vs through a :class:`DynamicBatcher`."""

    def run(call: Callable[[torch.Tensor], object]) -> tuple[float, float]:
        latencies: list[float] = []
        lock = threading.Lock()
        barrier = threading.Barrier(callers + 1)

        def caller(index: int) -> None:
            barrier.wait()
            for j in range(per_caller):
                started = time.perf_counter()
                call(crops[(index + j) % len(crops)])
                with lock:
                    latencies.append((time.perf_counter() - started) * 1e3)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        return callers * per_caller / (time.perf_counter() - started), statistics.mean(latencies)

    def direct(crop: torch.Tensor) -> object:  # one forward pass per image, as the app with batching off
        return run_on_compute_thread(classify, model, crop[None], 5)

    direct_ips, direct_latency = max(run(direct) for _ in range(repeats))
    with DynamicBatcher(model, max_batch_size=callers, max_wait_ms=5) as batcher:
        batched_ips, batched_latency = max(run(lambda crop: batcher.classify(crop, 5)) for _ in range(repeats))
        stats = batcher.stats()
    return {
        "callers": callers,
        "direct_images_per_s": direct_ips,
        "direct_mean_latency_ms": direct_latency,
        "batched_images_per_s": batched_ips,
        "batched_mean_latency_ms": batched_latency,
        "mean_batch_size": stats.images / stats.batches,
        "gain": batched_ips / direct_ips,
    }


def recommend(forward: dict[str, Any], drift: dict[str, Any]) -> str:
    faster = all(
        forward[m][f"batch{b}"]["bf16_autocast"] < forward[m][f"batch{b}"]["fp32_channels_last"]
        for m in forward
        for b in BATCH_SIZES
    )
    close = all(d["min_cosine"] >= BF16_ACCEPTABLE_COSINE for d in drift.values())
    if faster and close:
        return (
            "auto (bf16 on this CPU): faster at every batch size and its logits stay within cosine "
            f">= {BF16_ACCEPTABLE_COSINE} of fp32; use fp32 where bit-level agreement with torchvision matters"
        )
    return "fp32: bf16 is " + ("not faster here" if not faster else "too far from fp32 on the photos")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for the forward passes")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per figure (best is kept)")
    parser.add_argument("--images", type=int, default=48, help="images for the end-to-end figure")
    parser.add_argument("--callers", type=int, default=8, help="concurrent callers for the batching figure")
    args = parser.parse_args()

    configure_torch_threads(args.threads, 1)
    # Forward passes run on the compute thread, as in the app; this thread prepares inputs on one core (with
    # a team of its own it would make libgomp throttle both, see inference.torch_threads).
    use_one_thread_here()
    shared = Path(os.environ.get("SHARED_DIR", REPO_ROOT.parent / "shared"))
    photo_paths = sorted((shared / "images").glob("*.jpg"))
    photos = [p.read_bytes() for p in photo_paths]
    cache = ModelCache(device=torch.device("cpu"), allow_download=False)
    with tempfile.TemporaryDirectory() as folder:
        models = load_models(cache, Path(folder))

    results: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": cpu_has_native_bf16(),
            "auto_precision": resolve_precision("auto", torch.device("cpu")),
            "threads": run_on_compute_thread(torch.get_num_threads),
            "photos": [p.name for p in photo_paths],
            "load_average_at_start": os.getloadavg()[0],
        },
        "preprocess_one_core": bench_preprocess(photos, models["resnet50"]["fp32"], args.repeats),
        "forward_ms_per_image": {},
        "end_to_end_images_per_s": {},
        "bf16_drift": {},
        "dynamic_batching": {},
    }
    for name, pair in models.items():
        weights = pair["fp32"].weights
        crops = [crop_uint8(decode_image(b, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS), weights) for b in photos]
        batch = normalise(torch.stack(crops), weights)
        results["forward_ms_per_image"][name] = {
            f"batch{b}": run_on_compute_thread(bench_forward, pair, batch.repeat(2, 1, 1, 1)[:b], args.repeats)
            for b in BATCH_SIZES
        }
        results["bf16_drift"][name] = run_on_compute_thread(bf16_drift, pair, batch)
        results["end_to_end_images_per_s"][name] = {
            p: run_on_compute_thread(bench_end_to_end, pair[p], photos, args.images, 8, 3) for p in ("fp32", "bf16")
        }
        # in the precision the app runs (INFERENCE_PRECISION=auto): emulated bf16 would time the emulation
        results["dynamic_batching"][name] = bench_batching(
            pair[results["machine"]["auto_precision"]], crops, args.callers, 4, 3
        )
    results["machine"]["load_average_at_end"] = os.getloadavg()[0]
    results["recommendation"] = recommend(results["forward_ms_per_image"], results["bf16_drift"])

    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nfigures written to {args.json}")


def render(r: dict[str, Any]) -> str:
    m, pre = r["machine"], r["preprocess_one_core"]
    lines = [
        f"## Inference core benchmark ({m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
        f"{m['threads']} threads, capability {m['cpu_capability']}, native bf16: {m['native_bf16']}, "
        f"load average {m['load_average_at_start']:.1f} -> {m['load_average_at_end']:.1f}); best of N timings",
        "",
        "| preprocessing, one core | ms/image |",
        "| --- | --- |",
        *(f"| {k.removesuffix('_ms').replace('_', ' ')} | {v:.2f} |" for k, v in pre.items()),
        "",
        "| forward, ms/image | batch | fp32 contiguous | fp32 channels-last | bf16 autocast |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, per_batch in r["forward_ms_per_image"].items():
        for batch, f in per_batch.items():
            lines.append(
                f"| {name} | {batch.removeprefix('batch')} | {f['fp32_contiguous']:.1f} | "
                f"{f['fp32_channels_last']:.1f} | {f['bf16_autocast']:.1f} |"
            )
    lines += [
        "",
        "| model | end-to-end img/s fp32 (batch 8) | bf16 (batch 8) | bf16 min cosine | bf16 max abs diff "
        "(logit range) | top-1 agreement | top-5 overlap |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e2e in r["end_to_end_images_per_s"].items():
        d = r["bf16_drift"][name]
        lines.append(
            f"| {name} | {e2e['fp32']:.1f} | {e2e['bf16']:.1f} | {d['min_cosine']:.4f} | "
            f"{d['max_abs_diff']:.3f} ({d['logit_range']:.1f}) | {d['top1_agreement']:.0%} | {d['top5_overlap']:.0%} |"
        )
    lines += [
        "",
        f"| dynamic batching ({r['machine']['auto_precision']}) | callers | direct img/s | batched img/s | gain "
        "| direct latency ms "
        "| batched latency ms | mean batch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, b in r["dynamic_batching"].items():
        lines.append(
            f"| {name} | {b['callers']} | {b['direct_images_per_s']:.1f} | {b['batched_images_per_s']:.1f} | "
            f"{b['gain']:.2f}x | {b['direct_mean_latency_ms']:.0f} | {b['batched_mean_latency_ms']:.0f} | "
            f"{b['mean_batch_size']:.1f} |"
        )
    lines += ["", f"Recommended default precision: {r['recommendation']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
