"""One real app host for every CLI test that needs a server, and two ways to run the CLI.

The host serves ``function_app.py`` from the repository with explicit random weights (nothing can be
downloaded here) and a temporary blob folder, SQLite database and task hub. Starting it imports torch,
so the fixture is session-scoped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from classifier_cli.main import cli
from durable_host.testing import HostProcess
from tests.conftest import REPO_ROOT
from tests.fixtures.app_host import RANDOM_WEIGHTS, local_state

#: Wide enough that no table cell wraps, so assertions can look for whole messages on one line.
COLUMNS = "400"


@dataclass
class Run:
    """What one CLI invocation did."""

    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def app_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    data = tmp_path_factory.mktemp("cli-app")
    env = {
        **RANDOM_WEIGHTS,
        **local_state(data),
        "ACTIVITY_RETRY_INTERVAL_MS": "100",
    }
    with HostProcess(REPO_ROOT, env=env, hub_dir=data / "hub", startup_timeout=120) as host:
        yield host


@pytest.fixture()
def classify(app_host: HostProcess) -> Classify:
    return Classify(app_host.base_url)


class Classify:
    """Runs ``classify`` against ``base_url``: in-process through click (fast) or as a real subprocess."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def __call__(self, *args: str) -> Run:
        # catch_exceptions=False: an exception escaping the CLI fails the test instead of becoming exit 1
        result = CliRunner().invoke(
            cli, ["--base-url", self.base_url, *args], env={"COLUMNS": COLUMNS}, catch_exceptions=False
        )
        return Run(result.exit_code, result.stdout, result.stderr)

    def subprocess(self, *args: str, timeout: float = 120) -> Run:
        env = {**os.environ, "COLUMNS": COLUMNS, "CLASSIFIER_URL": self.base_url}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        done = subprocess.run(
            [sys.executable, "-m", "classifier_cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=REPO_ROOT,
        )
        return Run(done.returncode, done.stdout, done.stderr)


def photos(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.jpg"))
