"""Fixtures shared by every test folder; folder-specific ones live in that folder's conftest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Tests load models when they need them, and run activities in the host process unless a test asks for
# worker processes; hosts they start inherit this environment.
os.environ.setdefault("MODEL_PREWARM", "")
os.environ.pop("FUNCTIONS_WORKER_PROCESS_COUNT", None)

pytest_plugins = ["tests.fixtures.azurite", "tests.fixtures.checkpoints"]


@pytest.fixture(scope="session")
def shared_images_dir() -> Path:
    """The real photos in ``../shared/images``, outside this repository (override with ``SHARED_DIR``).

    Tests that need them are skipped, saying so, where the folder is absent.
    """
    root = Path(os.environ.get("SHARED_DIR", REPO_ROOT.parent / "shared"))
    images = root / "images"
    if not any(images.glob("*.jpg")):
        pytest.skip(f"no photos under {images} (outside the repository): set SHARED_DIR to the shared material folder")
    return images
