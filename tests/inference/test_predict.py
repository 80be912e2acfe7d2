"""The whole pipeline against torchvision's reference, on the same (seeded) weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from contracts import Prediction
from inference.cache import LoadedModel, ModelCache
from inference.predict import classify, logits, stack_crops, top_k
from inference.preprocess import crop_uint8, decode_image, normalise
from inference.tensor_io import decode_tensor, encode_tensor
from tests.fixtures.checkpoints import CANONICAL_FILES

from .conftest import MAX_BYTES, MAX_PIXELS

pytestmark = pytest.mark.unit

#: fp32 tolerance on logits, relative to their largest magnitude (~15 here). oneDNN picks different
#: convolution kernels (different summation orders) for batch 1 and batch 5 and for either memory layout;
#: over 50 layers that moves ResNet50 logits by up to ~6e-4 absolute, ~4e-5 of their range.
FP32_RTOL_OF_RANGE = 1e-4
#: Measured on the five photos with the seeded checkpoints: min cosine 0.9994 (ResNet18), 0.9935-0.9949
#: (ResNet50 V1/V2); top-1 agreement 4/5 for each (random weights have small top-1 margins).
BF16_MIN_COSINE = 0.99


#: The fast loop (``-m unit``) checks ResNet18 only; ResNet50 (both weights, ~1 s each to build) is ``slow``.
MODEL_PARAMS = [pytest.param(key, marks=pytest.mark.slow) if key[0] == "resnet50" else key for key in CANONICAL_FILES]


@pytest.fixture(scope="module", params=MODEL_PARAMS, ids=lambda p: f"{p[0]}-{p[1]}")
def model(request: pytest.FixtureRequest, model_cache: ModelCache) -> LoadedModel:
    return model_cache.get(*request.param)


@pytest.fixture(scope="module")
def reference_logits(model: LoadedModel, photos: list[Path]) -> torch.Tensor:
    """torchvision's own way, one photo at a time, with a model built by torchvision's builder from the same
    cached file: ``resnetXX(weights=...)(weights.transforms()(Image.open(p).convert("RGB"))[None])``."""
    reference = torchvision.models.get_model(model.name, weights=model.weights.base_weights).eval()
    transform = model.weights.transforms()
    with torch.inference_mode():
        return torch.cat([reference(transform(Image.open(p).convert("RGB"))[None]) for p in photos])


def _assert_close_logits(actual: torch.Tensor, expected: torch.Tensor) -> None:
    atol = FP32_RTOL_OF_RANGE * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


@pytest.fixture(scope="module")
def stored_batch(model: LoadedModel, photos: list[Path]) -> torch.Tensor:
    """The production path up to inference: bytes -> decode -> uint8 crop -> bytes -> crop, stacked."""
    crops = []
    for photo in photos:
        image = decode_image(photo.read_bytes(), max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
        crops.append(decode_tensor(encode_tensor(crop_uint8(image, model.weights), model.weights.transform_key)))
    return stack_crops(model, crops)


def test_pipeline_logits_equal_reference_one_by_one(
    model: LoadedModel, stored_batch: torch.Tensor, reference_logits: torch.Tensor
) -> None:
    for index in range(len(stored_batch)):
        ours = logits(model, normalise(stored_batch[index : index + 1], model.weights))
        _assert_close_logits(ours, reference_logits[index : index + 1])


def test_batched_equals_unbatched(
    model: LoadedModel, stored_batch: torch.Tensor, reference_logits: torch.Tensor
) -> None:
    batched = logits(model, normalise(stored_batch, model.weights))
    assert batched.dtype == torch.float32 and batched.shape == (len(stored_batch), 1000)
    _assert_close_logits(batched, reference_logits)
    one_by_one = torch.cat([logits(model, normalise(crop[None], model.weights)) for crop in stored_batch])
    _assert_close_logits(batched, one_by_one)


def test_photos_get_different_predictions(reference_logits: torch.Tensor) -> None:
    """Guards the fixture: equal top-1 everywhere would let a batch mix-up go unnoticed."""
    assert len(set(reference_logits.argmax(1).tolist())) >= 3


def test_classify_returns_reference_top_k(
    model: LoadedModel, stored_batch: torch.Tensor, reference_logits: torch.Tensor
) -> None:
    results = classify(model, stored_batch, 5)
    probabilities = torch.softmax(reference_logits, dim=1)
    assert len(results) == len(stored_batch)
    for row, predictions in enumerate(results):
        assert [p.class_index for p in predictions] == probabilities[row].topk(5).indices.tolist()
        for prediction in predictions:
            assert isinstance(prediction, Prediction) and type(prediction.class_index) is int
            assert type(prediction.probability) is float
            assert prediction.label == model.weights.categories[prediction.class_index]
            expected = probabilities[row, prediction.class_index].item()
            assert prediction.probability == pytest.approx(expected, abs=1e-3)


@pytest.mark.slow
def test_bf16_stays_close_to_fp32(
    model: LoadedModel, model_cache: ModelCache, stored_batch: torch.Tensor, record_property
) -> None:
    bf16 = model_cache.get(model.name, model.weights.spec, precision="bf16")
    assert bf16.precision == "bf16" and model.precision == "fp32"
    x = normalise(stored_batch, model.weights)
    full, half = logits(model, x), logits(bf16, x)
    assert half.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(full, half, dim=1)
    top1 = (full.argmax(1) == half.argmax(1)).float().mean().item()
    in_top5 = [int(h) in f for h, f in zip(half.argmax(1).tolist(), full.topk(5, dim=1).indices.tolist(), strict=True)]
    record_property("bf16_min_cosine", cosine.min().item())
    record_property("bf16_top1_agreement", top1)
    print(f"{model.name} {model.weights.spec}: bf16 min cosine {cosine.min():.5f}, top-1 agreement {top1:.0%}")
    assert cosine.min().item() >= BF16_MIN_COSINE
    assert all(in_top5), "bf16 top-1 must be among the fp32 top-5 for every photo"


def test_top_k_caps_k_and_orders_by_probability() -> None:
    categories = [f"c{i}" for i in range(4)]
    rows = top_k(torch.tensor([[0.0, 3.0, 1.0, 2.0]]), 10, categories)
    assert [p.label for p in rows[0]] == ["c1", "c3", "c2", "c0"]
    assert sum(p.probability for p in rows[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 1"):
        top_k(torch.zeros(1, 4), 0, categories)
    with pytest.raises(ValueError, match=r"expected logits \[N, 4\]"):
        top_k(torch.zeros(1, 5), 1, categories)


def test_classify_rejects_wrong_crop_size(model: LoadedModel) -> None:
    with pytest.raises(ValueError, match="expects uint8 crops of shape"):
        classify(model, torch.zeros(1, 3, 256, 256, dtype=torch.uint8), 1)


def test_stack_crops_refuses_other_preprocessing(model: LoadedModel) -> None:
    crop = torch.zeros(3, 224, 224, dtype=torch.uint8)
    with pytest.raises(ValueError, match="crop 1 was preprocessed as 'r999-c224-bilinear'"):
        stack_crops(model, [(crop, model.weights.transform_key), (crop, "r999-c224-bilinear")])
