"""Forward pass and top-k: uint8 crops in, :class:`contracts.Prediction` lists out."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from contracts import Prediction
from inference.cache import LoadedModel
from inference.preprocess import normalise


def stack_crops(model: LoadedModel, crops: Sequence[tuple[torch.Tensor, str]]) -> torch.Tensor:
    """Stack ``(uint8 CHW crop, transform_key)`` pairs (as returned by ``decode_tensor``) into a batch.

    Refuses a crop made for other preprocessing: ResNet50 V1 and V2 crops have the same shape but were
    resized differently, and feeding one to the other would silently degrade accuracy.
    """
    if not crops:
        raise ValueError("no crops to stack")
    expected = model.weights.transform_key
    for index, (_, key) in enumerate(crops):
        if key != expected:
            raise ValueError(
                f"crop {index} was preprocessed as {key!r} but {model.name} ({model.weights.spec}) needs {expected!r}"
            )
    return torch.stack([crop for crop, _ in crops])


def logits(model: LoadedModel, batch: torch.Tensor) -> torch.Tensor:
    """fp32 logits ``[N, 1000]`` on the CPU for a normalised float batch ``[N, 3, H, W]``.

    Runs under ``inference_mode`` (no autograd bookkeeping) and, for bf16, under autocast; the input is
    made channels-last to match the module, which avoids a layout conversion inside the first convolution.
    """
    x = batch.to(model.device).contiguous(memory_format=torch.channels_last)
    with (
        torch.inference_mode(),
        torch.autocast(device_type=model.device.type, dtype=torch.bfloat16, enabled=model.precision == "bf16"),
    ):
        out: torch.Tensor = model.module(x)
    return out.float().cpu()


def top_k(logits: torch.Tensor, k: int, categories: Sequence[str]) -> list[list[Prediction]]:
    """Softmax probabilities of the ``k`` most likely classes per row (``k`` is capped at the class count)."""
    if logits.ndim != 2 or logits.shape[1] != len(categories):
        raise ValueError(f"expected logits [N, {len(categories)}], got {tuple(logits.shape)}")
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    probabilities = torch.softmax(logits.float(), dim=1)
    values, indices = probabilities.topk(min(k, len(categories)), dim=1)
    return [
        [Prediction(label=categories[i], class_index=i, probability=p) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def check_crop_batch(model: LoadedModel, uint8_batch: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``uint8_batch`` is ``[N >= 1, 3, crop, crop]`` uint8 for ``model``."""
    size = model.weights.crop_size
    if (
        uint8_batch.dtype != torch.uint8
        or uint8_batch.ndim != 4
        or uint8_batch.shape[0] < 1
        or tuple(uint8_batch.shape[1:]) != (3, size, size)
    ):
        raise ValueError(
            f"{model.name} expects uint8 crops of shape [N, 3, {size}, {size}], "
            f"got {uint8_batch.dtype} {tuple(uint8_batch.shape)}"
        )


def classify(model: LoadedModel, uint8_batch: torch.Tensor, k: int) -> list[list[Prediction]]:
    """normalise + forward + top-k for a uint8 crop batch ``[N, 3, crop, crop]``."""
    check_crop_batch(model, uint8_batch)
    return top_k(logits(model, normalise(uint8_batch, model.weights)), k, model.weights.categories)
