"""What `azd deploy` would upload: this folder less what `.funcignore` names (gitignore rules, as azd and
Core Tools read them), and the requirements the remote build installs from it."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from functools import cache
from importlib.metadata import Distribution, distributions
from pathlib import Path

import pathspec
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]

# The app, and only the app: every top-level entry of the package.
APP_ENTRIES = {
    "function_app.py", "host.json", "requirements.txt", "contracts.py", "settings.py", "services.py", "url_policy.py",
    "api", "activities", "orchestrators", "inference", "storage", "messaging", "maintenance",
}  # fmt: skip
# Local-only folders: each must stay out of the package.
NOT_DEPLOYED = [
    "tests", "benchmarks", "durable_host", "classifier_cli", "docs", "infra", "typings", ".venv", ".venv-checkov",
    "node_modules", ".localdata", ".durable", ".git", "__pycache__", "activities/__pycache__",
]  # fmt: skip
# Requirements the app needs without importing them, and why.
NOT_IMPORTED = {"pyodbc": "SQLAlchemy's mssql+pyodbc dialect loads it for Azure SQL"}


def funcignore() -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines((REPO_ROOT / ".funcignore").read_text().splitlines())


def package_files() -> list[str]:
    """The files a deployment from this checkout would carry: tracked or new (not git-ignored) files that
    `.funcignore` does not exclude. (.venv and other git-ignored folders are checked separately below.)"""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT, capture_output=True, check=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    spec = funcignore()
    return sorted(f for f in listed if f and (REPO_ROOT / f).is_file() and not spec.match_file(f))


def test_the_package_holds_the_app_and_nothing_else() -> None:
    files = package_files()
    assert {f.split("/")[0] for f in files} == APP_ENTRIES
    assert not [f for f in files if f.endswith((".pyc", ".md", ".bicep", ".txt")) and f != "requirements.txt"]


@pytest.mark.parametrize("folder", NOT_DEPLOYED)
def test_local_only_folders_are_left_out(folder: str) -> None:
    spec = funcignore()
    assert spec.match_file(f"{folder}/module.py"), f"{folder}/ would be deployed"
    assert not [f for f in package_files() if f.startswith(f"{folder}/")]


def test_dev_files_at_the_root_are_left_out() -> None:
    spec = funcignore()
    for name in ("requirements-dev.txt", "requirements-local.txt", "requirements-checkov.txt", "azure.yaml",
                 "local.settings.json", "pyproject.toml", "README.md", "Makefile", "package.json"):  # fmt: skip
        assert spec.match_file(name), name
    assert not spec.match_file("requirements.txt") and not spec.match_file("host.json")


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:  # relative imports stay in their package
            assert node.module
            names.add(node.module)
    return names


def _is_local(module: str) -> bool:
    top = module.split(".")[0]
    return (REPO_ROOT / top).is_dir() or (REPO_ROOT / f"{top}.py").is_file()


def _third_party(files: list[Path]) -> dict[str, Path]:
    """Imported module -> one file importing it, for modules neither local nor from the standard library."""
    found: dict[str, Path] = {}
    for path in files:
        for module in _imports(path):
            if module.split(".")[0] not in sys.stdlib_module_names and not _is_local(module):
                found.setdefault(module, path)
    return found


@cache
def _file_owners() -> dict[Path, str]:
    owners: dict[Path, str] = {}
    for dist in distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or ():
            owners[Path(str(dist.locate_file(file))).resolve()] = name
    return owners


def _distribution_of(module: str) -> str:
    """The installed distribution that provides ``module`` (namespace packages such as ``azure`` are
    followed down to the first component with a file of its own)."""
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        spec = importlib.util.find_spec(".".join(parts[:depth]))
        assert spec is not None, f"{module} is not installed"
        if spec.origin and spec.origin not in ("built-in", "frozen"):
            owner = _file_owners().get(Path(spec.origin).resolve())
            assert owner, f"no installed distribution owns {spec.origin}"
            return owner
    raise AssertionError(f"{module} has no file")


def _requirement_names(file: Path) -> set[str]:
    """Distribution names pinned in a requirements file, following ``-r``."""
    names: set[str] = set()
    for line in file.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= _requirement_names(file.parent / line[3:].strip())
        elif line and not line.startswith("-"):
            requirement = Requirement(line)
            assert str(requirement.specifier).startswith("=="), f"{file.name}: {line} is not pinned"
            names.add(canonicalize_name(requirement.name))
    return names


def _with_dependencies(names: set[str]) -> set[str]:
    closure, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure.add(name)
        for spec in Distribution.from_name(name).requires or ():
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    return closure


def _deployed_python() -> list[Path]:
    return [REPO_ROOT / f for f in package_files() if f.endswith(".py")]


def test_deployed_code_imports_only_deployed_modules() -> None:
    deployed = set(package_files())
    for path in _deployed_python():
        for module in filter(_is_local, _imports(path)):
            base = module.replace(".", "/")
            assert {f"{base}.py", f"{base}/__init__.py"} & deployed, (
                f"{path.relative_to(REPO_ROOT)} imports {module}, which is not deployed"
            )


@pytest.mark.slow  # imports every module of the app and walks every installed distribution
def test_requirements_provide_every_third_party_import_of_the_app() -> None:
    installed = _with_dependencies(_requirement_names(REPO_ROOT / "requirements.txt"))
    for module, path in _third_party(_deployed_python()).items():
        assert _distribution_of(module) in installed, (
            f"{path.relative_to(REPO_ROOT)} imports {module}, which requirements.txt does not bring"
        )


@pytest.mark.slow  # walks every installed distribution
def test_requirements_hold_nothing_the_app_does_not_need() -> None:
    """The local host's and the CLI's packages belong in requirements-local.txt, not on Azure."""
    imported = {_distribution_of(module) for module in _third_party(_deployed_python())}
    needed = _with_dependencies(imported) | set(NOT_IMPORTED)
    for name in _requirement_names(REPO_ROOT / "requirements.txt"):
        assert name in needed, f"requirements.txt pins {name}, which the deployed app does not use"


@pytest.mark.slow  # walks every installed distribution
def test_local_requirements_provide_the_host_and_the_cli() -> None:
    installed = _with_dependencies(_requirement_names(REPO_ROOT / "requirements-local.txt"))
    files = [p for folder in ("durable_host", "classifier_cli") for p in (REPO_ROOT / folder).rglob("*.py")]
    for module, path in _third_party(files).items():
        if module.startswith("azure_functions_worker") or module.startswith("azure_functions_runtime"):
            continue  # Microsoft's worker: optional for the local host, in requirements-dev.txt
        assert _distribution_of(module) in installed, f"{path.relative_to(REPO_ROOT)} imports {module}"
