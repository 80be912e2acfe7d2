"""checkov, Prisma Cloud's offline infrastructure linter, over infra/: no failed check, no file it cannot
parse, and a reason for every check skipped (next to the resource, or in infra/.checkov.yaml).

checkov lives in its own virtualenv (`make checkov`; `make test` installs it and sets CHECKOV). Without
CHECKOV set and without .venv-checkov, this test is skipped with that instruction."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG = REPO_ROOT / "infra" / ".checkov.yaml"


def checkov_executable() -> Path:
    configured = os.environ.get("CHECKOV")
    if configured:
        path = Path(configured)
        assert path.exists(), f"CHECKOV={configured} does not exist: run `make checkov`"
        return path
    path = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
    if not path.exists():
        pytest.skip("checkov is not installed: run `make checkov` (make test does)")
    return path


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    result = subprocess.run(
        [str(checkov_executable()), "--config-file", str(CONFIG), "--output", "json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-4000:]
    parsed = json.loads(result.stdout)
    return parsed[0] if isinstance(parsed, list) else parsed


def test_checkov_reads_every_bicep_file(report: dict[str, Any]) -> None:
    assert report["check_type"] == "bicep"
    assert report["results"]["parsing_errors"] == []
    scanned = {check["file_path"] for key in ("passed_checks", "skipped_checks") for check in report["results"][key]}
    # The modules with checks for their resource types were all scanned.
    assert {
        "/modules/function-app.bicep",
        "/modules/storage.bicep",
        "/modules/sql.bicep",
        "/modules/container-registry.bicep",
    } <= scanned


def test_no_check_fails(report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)


def test_every_skip_has_a_reason(report: dict[str, Any]) -> None:
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 20 and reason != "No comment provided", f"{check['check_id']} skipped without a reason"
    config = CONFIG.read_text()
    for check_id in re.findall(r"^  - (CKV\w+)$", config, re.M):
        comment = config[: config.index(f"  - {check_id}\n")].rstrip().splitlines()
        assert any(line.strip().startswith("#") for line in comment[-3:]), f"{check_id} in .checkov.yaml has no reason"


def test_every_skip_comment_skips_a_check_that_ran(report: dict[str, Any]) -> None:
    """A skip comment for a check checkov does not run on that resource is a stale reason: remove it."""
    skipped = {(c["file_path"], c["check_id"]) for c in report["results"]["skipped_checks"]}
    for path in (REPO_ROOT / "infra").rglob("*.bicep"):
        relative = "/" + path.relative_to(REPO_ROOT / "infra").as_posix()
        for check_id in re.findall(r"// checkov:skip=(CKV\w+):", path.read_text()):
            assert (relative, check_id) in skipped, f"{relative}: {check_id} is skipped but checkov does not run it"
