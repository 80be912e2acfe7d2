"""The type stubs in ``typings/azure/durable_functions`` describe the SDK that is installed.

mypy trusts the stubs, so a name or parameter the SDK drops or renames would type-check and fail only at
run time. Each class, method and parameter declared in a stub must exist in the installed module.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

STUBS = REPO_ROOT / "typings"
SDK = f"azure-functions-durable {version('azure-functions-durable')}"


def _stub_files() -> list[Path]:
    return sorted(STUBS.joinpath("azure", "durable_functions").rglob("*.pyi"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(STUBS).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _declared(path: Path) -> list[tuple[str, str | None, list[str]]]:
    """(class, member or None, parameter names) for each class and method the stub declares."""
    found: list[tuple[str, str | None, list[str]]] = []
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.ClassDef):
            continue
        found.append((node.name, None, []))
        for item in node.body:
            setter = any(
                isinstance(d, ast.Attribute) and d.attr == "setter" for d in getattr(item, "decorator_list", [])
            )
            if (
                isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                and not setter
                and item.name
                not in (
                    "__getattr__",
                    "__setattr__",
                )
            ):
                names = [a.arg for a in item.args.posonlyargs + item.args.args + item.args.kwonlyargs]
                found.append((node.name, item.name, names[1:]))
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                found.append((node.name, item.target.id, []))
    return found


@pytest.mark.parametrize("path", _stub_files(), ids=lambda p: str(p.relative_to(STUBS)))
def test_every_stubbed_name_exists_in_the_installed_sdk(path: Path) -> None:
    module = importlib.import_module(_module_name(path))
    missing: list[str] = []
    for cls_name, member, params in _declared(path):
        cls = getattr(module, cls_name, None)
        if cls is None:
            missing.append(cls_name)
            continue
        if member is None:
            continue
        attr = inspect.getattr_static(cls, member, None)
        if attr is None and member not in getattr(cls, "__annotations__", {}):
            # instance attributes (TaskBase.result) are set in __init__: look for them there
            if f"self.{member}" not in inspect.getsource(cls):
                missing.append(f"{cls_name}.{member}")
            continue
        function = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
        if callable(function) and params:
            real = inspect.signature(function).parameters
            missing += [f"{cls_name}.{member}({p})" for p in params if p not in real and p != "kwargs"]
    assert not missing, f"{SDK} has no {', '.join(missing)}: update {path.relative_to(REPO_ROOT)}"
