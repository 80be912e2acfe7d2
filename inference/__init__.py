"""Pure inference core: ImageNet ResNet classification with torch, torchvision and Pillow.

Knows nothing about Azure, HTTP, SQL or blobs. Modules, by responsibility:

- :mod:`inference.catalog`    supported model names and defaults (no torch: safe for the HTTP layer)
- :mod:`inference.errors`     the exceptions callers map to user-facing errors (no torch)
- :mod:`inference.weights`    weight specs -> :class:`~inference.weights.ResolvedWeights` -> ``nn.Module``
- :mod:`inference.preprocess` bytes -> RGB image -> uint8 crop -> normalised float batch
- :mod:`inference.tensor_io`  compact, self-describing serialisation of uint8 crops
- :mod:`inference.precision`  fp32 / bf16 / auto and the device to run on
- :mod:`inference.cache`      per-process model cache and torch thread configuration
- :mod:`inference.predict`    forward pass and top-k
- :mod:`inference.batcher`    dynamic batching of concurrent single-image callers

This file deliberately imports nothing: importing ``inference.catalog`` must not pull in torch.
"""
