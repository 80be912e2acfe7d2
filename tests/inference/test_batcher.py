from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from inference.batcher import DynamicBatcher
from inference.cache import LoadedModel, ModelCache
from inference.predict import classify
from inference.preprocess import crop_uint8, decode_image
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
    model = LoadedModel(
        module=RejectsBlankImages().eval(),
        weights=resolve_weights("resnet18", "random"),
        precision="fp32",
        device=torch.device("cpu"),
        load_ms=0.0,
    )
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
