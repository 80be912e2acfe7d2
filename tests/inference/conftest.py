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

from .checkpoints import discriminative_state_dict

#: (model, torchvision weights name) -> (canonical file name, seed of the random checkpoint saved under it)
CANONICAL_FILES: dict[tuple[str, str], tuple[str, int]] = {
    ("resnet18", "IMAGENET1K_V1"): ("resnet18-f37072fd.pth", 18),
    ("resnet50", "IMAGENET1K_V1"): ("resnet50-0676ba61.pth", 50),
    ("resnet50", "IMAGENET1K_V2"): ("resnet50-11ad3fa6.pth", 51),
}
MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000
@pytest.fixture(scope="session")
def torch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME whose hub/checkpoints holds seeded checkpoints under the canonical file names."""
    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    for (model, _), (file_name, seed) in CANONICAL_FILES.items():
        torch.save(discriminative_state_dict(model, seed), folder / file_name)
    return home


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
