"""A session's queue is capped (``SESSION_MAX_QUEUED``), on the local host with a cap of two.

A session lists its queued task ids in its custom status, which the Durable extension limits to 16 KB (past
it, the session would fail and lose every queued task): a submission beyond the cap is a 503 whose JSON says
the session is full and to retry later, and the session goes on and runs the tasks it took.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import requests

from durable_host.testing import HostProcess, wait_for
from tests.app.test_messaging_end_to_end import CallbackServer, callbacks, ended, status, task  # noqa: F401
from tests.conftest import REPO_ROOT
from tests.fixtures.app_host import RANDOM_WEIGHTS, local_state

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def capped_host(tmp_path_factory: pytest.TempPathFactory, callbacks: CallbackServer) -> Iterator[HostProcess]:  # noqa: F811
    data = tmp_path_factory.mktemp("session-cap")
    env = {
        **RANDOM_WEIGHTS,
        **local_state(data),
        "URL_ALLOWED_HOSTS": "127.0.0.1",
        "URL_FETCH_TIMEOUT_SECONDS": "60",
        "SESSION_MAX_QUEUED": "2",
        "SESSION_ACCEPT_TIMEOUT_SECONDS": "3",
    }
    with HostProcess(REPO_ROOT, env=env, hub_dir=data / "hub", startup_timeout=120) as running:
        yield running


def test_a_full_session_refuses_the_next_task_with_a_503_and_runs_the_ones_it_took(
    capped_host: HostProcess,
    callbacks: CallbackServer,  # noqa: F811
) -> None:
    host = capped_host
    session = f"capped-{uuid.uuid4().hex[:6]}"
    ids = [f"{session}-{n}" for n in range(4)]
    slow = {"model": "resnet18", "images": [{"url": callbacks.url(f"/slow/{session}.png")}]}
    bodies: list[dict[str, Any]] = [
        {**slow, "session": session, "task_id": ids[0]}
    ]  # runs until the test releases its image
    bodies += [task(1, seed=n, session=session, task_id=task_id) for n, task_id in enumerate(ids[1:], 1)]
    answers = [requests.post(f"{host.base_url}/api/tasks", json=body, timeout=60) for body in bodies]
    try:
        assert [a.status_code for a in answers] == [202, 202, 202, 503], [a.text for a in answers]
        refusal = answers[3].json()
        assert "is full" in refusal["error"] and "retry later" in refusal["error"], refusal
        assert status(host, ids[3]) is None
        assert (status(host, f"session@{session}") or {})["customStatus"]["queued"] == ids[1:3]
    finally:
        callbacks.release.set()
    for task_id in ids[:3]:
        final = wait_for(partial(ended, host, task_id), f"task {task_id}", host)
        assert final["runtimeStatus"] == "Completed", final
    session_status = status(host, f"session@{session}")
    assert session_status is not None and session_status["runtimeStatus"] == "Running"
    assert session_status["customStatus"]["finished"] == 3
    retried = requests.post(f"{host.base_url}/api/tasks", json=bodies[3], timeout=60)  # room again: taken
    assert retried.status_code == 202, retried.text
    assert wait_for(lambda: ended(host, ids[3]), "the retried task", host)["runtimeStatus"] == "Completed"
