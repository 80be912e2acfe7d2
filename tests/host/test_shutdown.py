"""Ctrl-C stops the app's host cleanly, with worker processes, a task in flight or idle (issue 11, item 6).

A Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the host *and* its worker
processes. The host must exit promptly with code 0, print no traceback, no ``KeyboardInterrupt``, no
unclosed aiohttp session or connector and no ``ResourceWarning`` (shown here: ``PYTHONWARNINGS=default``),
and leave no worker process behind. A task in flight at the Ctrl-C completes after a restart on the same task
hub (activities are delivered at least once).
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from benchmarks.soak import TERMINAL, synthetic_jpegs
from durable_host.testing import HostProcess, wait_for
from tests.conftest import REPO_ROOT
from tests.fixtures.app_host import RANDOM_WEIGHTS, local_state

pytestmark = [pytest.mark.host, pytest.mark.slow]

#: Seconds from the Ctrl-C to the host's exit that count as prompt: the stop itself takes well under a second
#: (two when a worker process is still importing the app), the interpreter's own exit with torch loaded one to
#: four more on a loaded 2-core machine.
PROMPT_EXIT_S = 15.0
#: What a clean shutdown never prints.
UNCLEAN = ("Traceback", "KeyboardInterrupt", "Unclosed client session", "Unclosed connector", "ResourceWarning")


def children(pid: int) -> set[int]:
    """The pids of ``pid``'s child processes (Linux: every thread's ``children`` file)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            found.update(int(child) for child in (task / "children").read_text().split())
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ctrl_c(host: HostProcess) -> None:
    """SIGINT to the host and its worker processes at once, as a terminal's Ctrl-C.

    Fails unless the host exits promptly with code 0, printing nothing unclean, and its workers are gone.
    """
    process = host.process
    assert process is not None
    workers = children(process.pid)
    assert len(workers) >= 2, f"expected two worker processes, found {workers}"
    before = len(host.output)
    for pid in (process.pid, *workers):
        os.kill(pid, signal.SIGINT)
    try:
        code = process.wait(PROMPT_EXIT_S)
    except subprocess.TimeoutExpired:
        host.kill()
        pytest.fail(f"the host did not exit within {PROMPT_EXIT_S} s of Ctrl-C:\n{host.output[before:][-4000:]}")
    wait_for(lambda: "Host stopped." in host.output[before:], "the host's last line", host, timeout=5)
    wait_for(lambda: not any(alive(pid) for pid in workers), "the worker processes to exit", host, timeout=5)
    output = host.output[before:]
    assert code == 0, f"exit code {code}:\n{output[-4000:]}"
    printed = [marker for marker in UNCLEAN if marker in output]
    assert not printed, f"{printed} after Ctrl-C:\n{output[-6000:]}"


def submit(host: HostProcess, photos: list[bytes], model: str) -> str:
    images = [{"data": base64.b64encode(photo).decode(), "name": f"{n}.jpg"} for n, photo in enumerate(photos)]
    response = requests.post(
        f"{host.base_url}/api/tasks", json={"model": model, "images": images, "top_k": 3}, timeout=30
    )
    assert response.status_code == 202, response.text
    instance_id: str = response.json()["id"]
    return instance_id


def status(host: HostProcess, instance_id: str) -> dict[str, Any]:
    response = requests.get(f"{host.base_url}/runtime/webhooks/durabletask/instances/{instance_id}", timeout=30)
    assert response.status_code in (200, 202), response.text
    body: dict[str, Any] = response.json()
    return body


def ended(host: HostProcess, instance_id: str) -> dict[str, Any] | None:
    body = status(host, instance_id)
    return body if body["runtimeStatus"] in TERMINAL else None


def test_ctrl_c_with_a_task_in_flight_and_when_idle(tmp_path: Path) -> None:
    env = {**RANDOM_WEIGHTS, **local_state(tmp_path), "PYTHONWARNINGS": "default"}
    host = HostProcess(REPO_ROOT, env=env, hub_dir=tmp_path / "hub", extra_args=("--workers", "2"))
    photos = synthetic_jpegs(4, random.Random(3))
    with host:
        # in flight: the images are preprocessed, and a worker process loads ResNet-50 for the inference (seconds)
        in_flight = submit(host, photos, "resnet50")
        wait_for(lambda: "Executed 'Functions.preprocess_images' (Succeeded" in host.output, "preprocessing")
        assert "Executed 'Functions.classify_batch'" not in host.output, "the inference ended before Ctrl-C"
        ctrl_c(host)

        host.start()  # the same hub: the task goes on where the Ctrl-C left it
        body = wait_for(lambda: ended(host, in_flight), "the interrupted task after the restart", host, timeout=120)
        output = body["output"]
        assert body["runtimeStatus"] == "Completed" and output["status"] == "Completed", body
        assert [bool(image["predictions"]) and image["error"] is None for image in output["images"]] == [True] * 4

        ctrl_c(host)  # idle
