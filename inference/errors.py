"""Exceptions of the inference core, torch-free so callers can catch them without importing torch.

Each message is meant to be shown to a user or operator as is: it says what was wrong and, where
there is one, what to do about it.
"""

from __future__ import annotations


class UnknownModelError(ValueError):
    """A model name that is not in :data:`inference.catalog.SUPPORTED_MODELS`."""


class InvalidWeightsSpecError(ValueError):
    """A weight spec string that cannot be parsed or names weights the model does not have."""


class WeightsUnavailableError(RuntimeError):
    """Weights that are valid to ask for but cannot be obtained here (file missing, no network)."""


class InvalidCheckpointError(WeightsUnavailableError):
    """A checkpoint file that exists but does not fit the architecture (or is not a state dict)."""


class InvalidImageError(ValueError):
    """Bytes that cannot be turned into an RGB image within the configured limits."""
