"""Per-process model cache: each (model, weights, precision) is loaded once, on first use.

Azure Functions workers run activities on a thread pool, so the cache is thread-safe with one lock per key:
concurrent first calls for the same key load it once (the others wait for that load), while a ResNet50
load never blocks ResNet18 users. A failed load is not cached, so fixing the configuration (e.g. copying
the checkpoint into place) takes effect on the next call without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from inference.catalog import normalise_model_name
from inference.precision import Precision, ResolvedPrecision, default_device, resolve_precision
from inference.torch_threads import follow_compute_teams
from inference.weights import ResolvedWeights, canonical_spec, create_model, resolve_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A ready model: ``module`` is in eval mode, channels-last, on ``device``."""

    module: nn.Module
    weights: ResolvedWeights
    precision: ResolvedPrecision
    device: torch.device
    load_ms: float

    @property
    def name(self) -> str:
        return self.weights.model

    @property
    def provenance(self) -> str:
        """The weights label and how they ran: bf16 logits differ slightly from fp32 ones on the same weights
        (top-5 overlap 84-96 % with random weights), so a result says which it came from."""
        return f"{self.weights.label}; run in {self.precision} on {self.device.type}"


class Loader(Protocol):
    def __call__(
        self, model: str, spec: str, *, precision: ResolvedPrecision, device: torch.device, allow_download: bool
    ) -> LoadedModel: ...


def load_model(
    model: str, spec: str, *, precision: ResolvedPrecision, device: torch.device, allow_download: bool = True
) -> LoadedModel:
    """Resolve, build and place one model (uncached; :class:`ModelCache` is the usual entry point).

    Channels-last is used because oneDNN's convolutions run 1.3-2.5x faster with it on CPU (benchmark) and
    cuDNN prefers it for bf16 on GPU.
    """
    started = time.perf_counter()
    weights = resolve_weights(model, spec, allow_download=allow_download)
    module = create_model(weights).to(device).to(memory_format=torch.channels_last)
    if device.type == "cpu":
        follow_compute_teams(module)
    load_ms = (time.perf_counter() - started) * 1e3
    log.info("loaded %s (%s, %s on %s) in %.0f ms", model, weights.label, precision, device, load_ms)
    return LoadedModel(module=module, weights=weights, precision=precision, device=device, load_ms=load_ms)


_Key = tuple[str, str, ResolvedPrecision]


class ModelCache:
    """Loads each (model, weights spec, precision) once per process and hands out the shared instance.

    ``precision`` is the default for :meth:`get` (``"auto"``: bf16 where the hardware runs it natively);
    ``get(..., precision=...)`` overrides it per call, e.g. to compare precisions side by side. Specs are
    compared in canonical form, so ``"DEFAULT"`` and ``"IMAGENET1K_V2"`` share one ResNet50.
    """

    def __init__(
        self,
        *,
        precision: Precision = "auto",
        device: torch.device | None = None,
        allow_download: bool = True,
        loader: Loader = load_model,
    ) -> None:
        self._device = device or default_device()
        self._precision = resolve_precision(precision, self._device)
        self._allow_download = allow_download
        self._loader = loader
        self._lock = threading.Lock()
        self._models: dict[_Key, LoadedModel] = {}
        self._key_locks: dict[_Key, threading.Lock] = {}

    @property
    def precision(self) -> ResolvedPrecision:
        return self._precision

    @property
    def device(self) -> torch.device:
        return self._device

    def get(self, model: str, spec: str, *, precision: Precision | None = None) -> LoadedModel:
        """The loaded model for ``(model, spec)``, loading it on first use (errors propagate, uncached)."""
        name = normalise_model_name(model)
        resolved = self._precision if precision is None else resolve_precision(precision, self._device)
        key: _Key = (name, canonical_spec(name, spec), resolved)
        with self._lock:
            hit = self._models.get(key)
            if hit is not None:
                return hit
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                hit = self._models.get(key)
            if hit is not None:
                return hit  # another thread loaded it while this one waited
            loaded = self._loader(
                name, spec, precision=resolved, device=self._device, allow_download=self._allow_download
            )
            with self._lock:
                self._models[key] = loaded
            return loaded

    def prewarm(self, pairs: Iterable[tuple[str, str]]) -> list[LoadedModel]:
        """Load ``[(model, spec), ...]`` now (e.g. at worker start) so no request pays the load time."""
        return [self.get(model, spec) for model, spec in pairs]

    def loaded(self) -> list[LoadedModel]:
        """Models loaded so far (for health checks and tests)."""
        with self._lock:
            return list(self._models.values())


_default_cache: ModelCache | None = None
_default_lock = threading.Lock()


def default_model_cache() -> ModelCache:
    """The process-wide cache (created on first use with automatic precision and device)."""
    global _default_cache
    with _default_lock:
        if _default_cache is None:
            _default_cache = ModelCache()
        return _default_cache
