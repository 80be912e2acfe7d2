"""README's first command on a clean checkout: `make run` starts the app, the client classifies the photos.

The checkout is a fresh ``git clone`` of this repository (committed files only). ``make run`` reuses the
virtualenv that ``make test`` (the README's second command, and CI's) has just set up, so this test does
not install torch twice. Pretrained weights cannot be downloaded here, so the run uses test checkpoints
named explicitly through ``MODEL_WEIGHTS_*=file:...``; every result must carry that label.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import torch

from durable_host.testing import free_port
from tests.conftest import REPO_ROOT
from tests.fixtures.checkpoints import discriminative_state_dict

pytestmark = [pytest.mark.host, pytest.mark.slow]

VENV = Path(sys.executable).parent.parent


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("clean") / "checkout"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(target)], check=True)
    return target


@pytest.fixture(scope="module")
def test_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for model, seed in (("resnet18", 7), ("resnet50", 8)):
        paths[model] = folder / f"TEST-ONLY-{model}-seed{seed}.pth"
        torch.save(discriminative_state_dict(model, seed), paths[model])
    return paths


@pytest.fixture(scope="module")
def running_app(checkout: Path, test_checkpoints: dict[str, Path]) -> Iterator[tuple[str, list[str]]]:
    port = free_port()
    env = {
        **os.environ,
        "VENV": str(VENV),
        "DURABLE_HOST_PORT": str(port),
        "MODEL_WEIGHTS_RESNET18": f"file:{test_checkpoints['resnet18']}",
        "MODEL_WEIGHTS_RESNET50": f"file:{test_checkpoints['resnet50']}",
        "MODEL_PREWARM": "resnet18,resnet50",
    }
    (VENV / ".installed").touch()  # set up by `make test`; newer than the fresh clone's files
    log = checkout / "make-run.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["make", "run"], cwd=checkout, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise AssertionError(f"`make run` exited with {process.returncode}:\n{log.read_text()}")
            try:
                if requests.get(f"{base_url}/api/tasks/ping", timeout=2).status_code == 404:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"`make run` did not serve the app in time:\n{log.read_text()}")
            time.sleep(0.25)
        yield base_url, log.read_text().splitlines()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_make_run_serves_the_app_and_the_client_classifies_the_photos(
    running_app: tuple[str, list[str]], checkout: Path, shared_images_dir: Path
) -> None:
    base_url, startup_log = running_app
    assert any("submit_task" in line and "/api/tasks" in line for line in startup_log), startup_log
    result = subprocess.run(
        [
            str(VENV / "bin" / "classify"),
            "--base-url",
            base_url,
            "submit",
            str(shared_images_dir),
            "-m",
            "resnet18",
            "-m",
            "resnet50",
            "-k",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=checkout,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for photo in shared_images_dir.glob("*.jpg"):
        assert photo.name in result.stdout
    assert "TEST-ONLY-resnet18" in result.stdout and "TEST-ONLY-resnet50" in result.stdout
    # the embedded defaults: results and blobs under the checkout, task hub on disk
    assert (checkout / ".localdata" / "results.db").is_file()
    assert any((checkout / ".durable").iterdir())
