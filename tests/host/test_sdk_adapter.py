"""The SDK internals ``durable_host`` relies on are still there (``durable_host/sdk_adapter.py``).

When ``azure-functions-durable`` is upgraded and moves one of them, these tests fail first and
name the installed version and what moved, instead of orchestrations failing at run time.
"""

from __future__ import annotations

import ast
import importlib.metadata
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dateutil.parser import parse as dateutil_parse

from durable_host import sdk_adapter

pytestmark = pytest.mark.unit

SDK_VERSION = importlib.metadata.version("azure-functions-durable")
HOST_DIR = Path(sdk_adapter.__file__).parent


def test_the_sdk_has_the_shape_the_adapter_reads() -> None:
    problems = sdk_adapter.shape_problems()
    assert not problems, (
        f"azure-functions-durable {SDK_VERSION} changed what durable_host/sdk_adapter.py reads:\n  - "
        + "\n  - ".join(problems)
    )


def test_the_version_is_the_installed_one() -> None:
    assert sdk_adapter.sdk_version() == SDK_VERSION


def test_the_timestamp_patch_is_explicit_and_parses_like_dateutil() -> None:
    sdk_adapter.install_fast_timestamps()
    assert sdk_adapter.fast_timestamps_installed(), f"azure-functions-durable {SDK_VERSION}: dt_parse not replaced"
    for text in ("2024-05-01T10:00:07.000000Z", "2024-05-01T10:00:07.1234567Z", "2024-05-01T10:00:07+02:00"):
        assert sdk_adapter._parse_timestamp(text) == dateutil_parse(text), text
    event = sdk_adapter.sdk_event(
        {"EventType": 12, "EventId": -1, "IsPlayed": False, "Timestamp": "2024-05-01T10:00:07.000000Z"}
    )
    assert event.event_type == 12
    assert getattr(event, "timestamp", None) == datetime(2024, 5, 1, 10, 0, 7, tzinfo=UTC)


def test_the_problem_list_names_what_is_missing() -> None:
    class Shape:
        present = 1

    assert sdk_adapter._missing(Shape(), ("present", "absent"), "Shape") == ["Shape has no attribute 'absent'"]

    def fn(a: int) -> None: ...

    assert sdk_adapter._parameters_missing(fn, ("a", "b"), "fn") == ["fn takes no parameter 'b'"]


def _sdk_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    return [name for name in names if name.startswith("azure.durable_functions")]


def test_only_the_adapter_imports_the_durable_sdk() -> None:
    importers = sorted(p.name for p in HOST_DIR.rglob("*.py") if _sdk_imports(p))
    assert importers == ["sdk_adapter.py"]
