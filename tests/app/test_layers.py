"""The layers of docs/architecture: the HTTP API and the orchestrator never load torch."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_api_and_orchestrator_do_not_import_torch() -> None:
    probe = "import sys, api.tasks, orchestrators.classify; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
