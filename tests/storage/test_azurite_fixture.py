"""The Azurite fixture must fail loudly, never skip, when Azurite is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.azurite

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_missing_azurite_fails_with_install_hint(tmp_path: Path) -> None:
    (tmp_path / "test_needs_azurite.py").write_text("def test_it(azurite):\n    pass\n")
    env = {**os.environ, "AZURITE_BIN": str(tmp_path / "no-azurite-here"), "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.fixtures.azurite",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "test_needs_azurite.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0, run.stdout
    assert "1 error" in run.stdout and "skipped" not in run.stdout, run.stdout
    assert "npm ci" in run.stdout, run.stdout
