from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

from inference.cache import LoadedModel, ModelCache, default_model_cache, load_model
from inference.errors import WeightsUnavailableError
from inference.precision import cpu_has_native_bf16, resolve_precision

pytestmark = pytest.mark.unit

CPU = torch.device("cpu")


class CountingLoader:
    """The real :func:`load_model`, counting calls and optionally holding one model's load until released."""

    def __init__(self, hold: str | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.hold = hold
        self.release = threading.Event()
        self.holding = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, model: str, spec: str, **options) -> LoadedModel:
        with self._lock:
            self.calls.append((model, spec, options["precision"]))
        if model == self.hold:
            self.holding.set()
            assert self.release.wait(30), "test never released the held load"
        return load_model(model, spec, **options)


def test_concurrent_first_gets_load_once() -> None:
    loader = CountingLoader()
    cache = ModelCache(precision="fp32", device=CPU, loader=loader)
    barrier = threading.Barrier(8)
    results: list[LoadedModel] = []

    def worker() -> None:
        barrier.wait()
        results.append(cache.get("ResNet18", "random:7"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert loader.calls == [("resnet18", "random:7", "fp32")]


def test_loading_one_model_does_not_block_another() -> None:
    loader = CountingLoader(hold="resnet50")
    cache = ModelCache(precision="fp32", device=CPU, loader=loader)
    slow = threading.Thread(target=cache.get, args=("resnet50", "random"))
    slow.start()
    try:
        assert loader.holding.wait(30)
        started = time.monotonic()
        fast = cache.get("resnet18", "random")
        assert fast.name == "resnet18" and time.monotonic() - started < 20
        assert slow.is_alive(), "the ResNet50 load should still be held"
    finally:
        loader.release.set()
        slow.join(60)
    assert {m.name for m in cache.loaded()} == {"resnet18", "resnet50"}


def test_loaded_model_is_ready_for_inference() -> None:
    cache = ModelCache(precision="fp32", device=CPU)
    loaded = cache.get("resnet50", "DEFAULT")
    assert not loaded.module.training and loaded.precision == "fp32" and loaded.device == CPU
    assert loaded.module.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert loaded.load_ms > 0 and "ResNet50_Weights.IMAGENET1K_V2" in loaded.weights.label


def test_keys_are_canonical_and_precision_is_part_of_the_key() -> None:
    loader = CountingLoader()
    cache = ModelCache(precision="fp32", device=CPU, loader=loader)
    first = cache.get("resnet50", "DEFAULT")
    assert cache.get("RESNET50", "imagenet1k_v2") is first
    bf16 = cache.get("resnet50", "IMAGENET1K_V2", precision="bf16")
    assert bf16 is not first and bf16.precision == "bf16"
    assert [call[2] for call in loader.calls] == ["fp32", "bf16"]


def test_failed_load_is_retried_on_next_get(tmp_path: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = ModelCache(precision="fp32", device=CPU, allow_download=False)
    with pytest.raises(WeightsUnavailableError):
        cache.get("resnet18", "IMAGENET1K_V1")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth", tmp_path / "hub" / "checkpoints")
    assert cache.get("resnet18", "IMAGENET1K_V1").weights.checkpoint_path.parent == tmp_path / "hub" / "checkpoints"


def test_prewarm_loads_everything_listed() -> None:
    cache = ModelCache(precision="fp32", device=CPU)
    loaded = cache.prewarm([("resnet18", "random"), ("resnet18", "IMAGENET1K_V1")])
    assert [m.weights.source for m in loaded] == ["random", "torchvision"] and len(cache.loaded()) == 2


def test_default_cache_is_a_singleton() -> None:
    assert default_model_cache() is default_model_cache()


def test_precision_resolution() -> None:
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision("FP32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(ValueError, match="choose one of fp32, bf16, auto"):
        resolve_precision("fp16", CPU)
