"""The layers of the README's table ("layer | where | knows about"), checked on the source.

Every package and top-level module of the repository is a component below, with the components (or, where
only part of one is allowed, the modules) it may import. The imports are read with ``ast``, including
those inside functions, so a lazy import cannot hide a dependency. A new package fails the test until it
is given a row.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

#: component -> what it may import from this repository (a component, or one module of one).
#: Imports inside a component (``api.tasks`` -> ``api.validation``) are always allowed.
ALLOWED: dict[str, set[str]] = {
    # Neutral modules at the bottom: plain data, configuration and policy that every layer may share.
    "contracts": set(),
    "url_policy": set(),
    "settings": {"inference.catalog", "inference.errors"},  # model names and defaults, torch-free
    # Inference core and storage: each knows only its own libraries (and the contracts).
    "inference": {"contracts"},
    "storage": {"contracts"},
    "services": {"settings", "storage"},  # per-process clients built from settings
    # Activities adapt contracts to the core and storage.
    # Message-driven use: reply targets, signatures and storage queues, for the starters and the activities.
    "messaging": {"settings", "url_policy", "storage.credential"},  # queues sign in as the blob store does
    "activities": {"contracts", "settings", "services", "storage", "inference", "url_policy", "messaging"},
    # The orchestrator: activity names and contracts only (replayed, so no I/O and no settings).
    "orchestrators": {"contracts"},
    # The HTTP API never loads torch: the catalog and errors of the core only, and no activity.
    "api": {
        "contracts",
        "settings",
        "services",
        "storage",
        "url_policy",
        "messaging",
        "inference.catalog",
        "inference.errors",
    },
    # Retention: a timer with a durable client, over storage; no activity, no orchestrator, no torch.
    "maintenance": {"contracts", "settings", "services", "storage"},  # contracts: how a session shows its tasks
    "function_app": {"api", "activities", "orchestrators", "maintenance"},
    # Beside the app: the CLI talks HTTP, the local host hosts any app; neither imports this one.
    "classifier_cli": set(),
    "durable_host": set(),
    "benchmarks": {"inference", "storage", "durable_host", "tests.fixtures"},
}
_NOT_COMPONENTS = {"tests", "typings", "node_modules", "docs", "infra"}


def _components() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted(REPO_ROOT.iterdir()):
        if path.name.startswith(".") or path.name in _NOT_COMPONENTS:
            continue
        if path.suffix == ".py":
            found[path.stem] = [path]
        elif path.is_dir() and any(path.glob("*.py")):  # a package, or a folder of scripts (benchmarks)
            found[path.name] = sorted(path.rglob("*.py"))
    return found


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path``; relative imports stay in their package."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _allows(allowed: set[str], module: str) -> bool:
    return any(module == entry or module.startswith(f"{entry}.") for entry in allowed)


def test_every_component_has_a_row() -> None:
    assert set(_components()) == set(ALLOWED)


@pytest.mark.parametrize("component", sorted(ALLOWED))
def test_imports_follow_the_layers(component: str) -> None:
    local = set(_components()) | {"tests"}
    wrong = sorted(
        f"{path.relative_to(REPO_ROOT)} imports {module}"
        for path in _components().get(component, [])
        for module in _imports(path)
        if module.split(".")[0] in local - {component} and not _allows(ALLOWED[component], module)
    )
    assert not wrong, f"{component} may import only {sorted(ALLOWED[component])}:\n" + "\n".join(wrong)


def test_storage_is_imported_by_submodule() -> None:
    """``storage/__init__.py`` re-exports nothing, so nobody imports names from it."""
    init = REPO_ROOT / "storage" / "__init__.py"
    assert not _imports(init), "storage/__init__.py must not import (or re-export) its submodules"
    users = [
        path.relative_to(REPO_ROOT)
        for paths in _components().values()
        for path in paths
        if any(
            isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "storage"
            for node in ast.walk(ast.parse(path.read_text()))
        )
    ]
    assert not users, f"import from storage.blobs, storage.database or storage.results instead: {users}"


def test_api_and_orchestrator_do_not_import_torch() -> None:
    probe = "import sys, api.tasks, orchestrators.classify; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("role", ["dispatcher", None])
def test_loading_the_app_imports_no_torch(role: str | None) -> None:
    """Azure's worker indexes the app, and the local host's dispatcher serves it, without torch and torchvision
    (``activities.inference``): the dispatcher's weights report comes from a child process, relayed line by line."""
    env = {key: value for key, value in os.environ.items() if key != "DURABLE_HOST_ROLE"}
    env |= {"MODEL_PREWARM": "resnet18", "MODEL_WEIGHTS_RESNET18": "random:1"}
    if role is None:
        env["MODEL_PREWARM"] = ""  # on Azure the prewarm thread imports torch in the background
    else:
        env["DURABLE_HOST_ROLE"] = role
    probe = "import sys, function_app; print(sorted({'torch', 'torchvision', 'PIL'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    reported = "resnet18 uses RANDOM WEIGHTS (seed 1)" in result.stderr
    assert reported is (role == "dispatcher"), result.stderr


def test_the_first_activities_import_torch_at_once_without_breaking_it() -> None:
    """torchvision imports itself in a cycle: two threads importing it at once got "partially initialized module"
    ImportErrors (the prewarm thread and a first activity did). Both triggers, first calls at once in a fresh
    process, must get as far as reading their (here empty, so invalid) input."""
    probe = """
import threading
from activities.inference import classify_batch
from activities.preprocess import preprocess_images
barrier, failures = threading.Barrier(2), []
def first_call(trigger):
    barrier.wait()
    try:
        trigger({})
    except Exception as exc:
        failures.append(type(exc).__name__)
threads = [threading.Thread(target=first_call, args=(t,)) for t in (classify_batch, preprocess_images)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sorted(failures))
"""
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['TypeError', 'TypeError']", result.stdout  # both read their input


def test_the_app_loads_azure_identity_only_for_an_identity_based_connection() -> None:
    """With every connection a connection string or local, loading the app (as the worker does) imports no
    azure.identity (nor msal): the shared credential is made, and its library imported, on first use."""
    local = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "BLOB_CONNECTION_STRING": "UseDevelopmentStorage=true",
        "SQL_CONNECTION_STRING": "sqlite:///.localdata/results.db",
        "MODEL_PREWARM": "",
    }
    probe = "import sys, function_app; print(sorted(m for m in ('azure.identity', 'msal') if m in sys.modules))"
    environment = {name: value for name, value in os.environ.items() if name not in local} | local
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
