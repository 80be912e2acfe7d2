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

#: What each test needs, declared per module (``pytestmark``; markers registered in pyproject.toml).
#: ``unit``: in-process, no host subprocess, no Azurite, no browser: ``make test-fast`` runs only these.
KINDS = ("unit", "host", "azurite", "browser", "slow")
#: Kinds a single test of a ``unit`` module may carry (a mark, a marked parameter, or a fixture below).
NOT_UNIT = ("host", "azurite", "browser", "slow")
#: Fixtures that give a test their kind wherever it is used (directly or through another fixture).
FIXTURE_KINDS = {
    "azurite": "azurite",
    "app_host": "host",  # tests/cli: the app on a local host
    "patterns_host": "host",  # tests/host: the pattern app on a local host
    "driver": "browser",  # tests/browser: Chromium
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every test has a kind, and keep ``unit`` off the few tests of a unit module that need more.

    A module-level ``unit`` mark is moved onto each of the module's tests, except those marked (or using a
    fixture) of another kind, so ``-m unit`` selects exactly the in-process tests.
    """
    unmarked: list[str] = []
    modules: dict[pytest.Module, list[pytest.Item]] = {}
    for item in items:
        for fixture, kind in FIXTURE_KINDS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(kind)
        module = item.getparent(pytest.Module)
        if module is not None:
            modules.setdefault(module, []).append(item)
        if not any(item.get_closest_marker(name) for name in KINDS):
            unmarked.append(item.nodeid)
    if unmarked:
        raise pytest.UsageError(
            f"tests without a kind ({', '.join(KINDS)}): add a module-level pytestmark to "
            + ", ".join(sorted({nodeid.split("::")[0] for nodeid in unmarked}))
        )
    for module, module_items in modules.items():
        if not any(mark.name == "unit" for mark in module.own_markers):
            continue
        module.own_markers[:] = [mark for mark in module.own_markers if mark.name != "unit"]
        for item in module_items:
            if not any(mark.name in NOT_UNIT for mark in item.iter_markers()):
                item.add_marker("unit")


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
