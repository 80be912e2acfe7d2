"""Fixtures for the inference tests: seeded checkpoints under torchvision's canonical names, photos, a cache.

No pretrained weights exist on the test machines, so the session writes seeded random state_dicts under the
published file names into a temporary ``TORCH_HOME/hub/checkpoints`` and every test runs with ``TORCH_HOME``
pointing there: the production loading path (torchvision's enum -> cached file) is exercised unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from inference.cache import ModelCache

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000


@pytest.fixture(scope="package", autouse=True)
def _torch_home_env(torch_home: Path) -> Iterator[None]:
    """TORCH_HOME points at the seeded checkpoints for every test of this package (and only this package:
    the patch is undone after its last test, so other test folders see the environment unchanged)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(torch_home))
        yield


@pytest.fixture(scope="session")
def photos(shared_images_dir: Path) -> list[Path]:
    return sorted(shared_images_dir.glob("*.jpg"))


@pytest.fixture(scope="package")
def model_cache() -> ModelCache:
    """fp32 by default (bf16 via ``get(..., precision="bf16")``); never downloads."""
    return ModelCache(precision="fp32", device=torch.device("cpu"), allow_download=False)
