"""Seeded random ResNet checkpoints whose predictions depend on the image.

Shared by the test fixtures and ``benchmarks/pipeline_benchmark.py`` (no pytest import here).
"""

from __future__ import annotations

import torch

from inference.preprocess import normalise
from inference.weights import create_model, resolve_weights

#: Target standard deviation of the logits: softmax peaked enough for top-k to differ between photos.
LOGIT_SCALE = 4.0


def discriminative_state_dict(model: str, seed: int) -> dict[str, torch.Tensor]:
    """A seeded random ResNet whose logits clearly differ between images.

    A randomly initialised ResNet maps every image to nearly the same feature vector (cosine > 0.99
    between photos), so its logits and top-k barely depend on the input and would hide a pipeline that
    mixes up images. The common direction is estimated on synthetic smooth images (not the test photos)
    and removed from freshly drawn fc weights, then the fc layer is scaled so logits have std ~4.
    """
    weights = resolve_weights(model, f"random:{seed}")
    net = create_model(weights)
    body = torch.nn.Sequential(*list(net.children())[:-1])
    generator = torch.Generator().manual_seed(seed)
    probes = torch.nn.functional.interpolate(torch.rand(8, 3, 7, 7, generator=generator), size=224, mode="bilinear")
    with torch.inference_mode():
        features = torch.flatten(body(normalise((probes * 255).to(torch.uint8), weights)), 1)
    common = features.mean(0)
    common = common / common.norm()
    fc = torch.randn(net.fc.out_features, net.fc.in_features, generator=generator)
    fc -= (fc @ common)[:, None] * common[None]
    residual = features - (features @ common)[:, None] * common[None]
    fc *= LOGIT_SCALE / (residual @ fc.T).std()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["fc.weight"] = fc
    state["fc.bias"] = torch.zeros_like(state["fc.bias"])
    return state
