"""Retention against the real local host: the issue's finding reproduced, then swept and purged.

A task terminated through the management API while its models run keeps its tensors (the host cannot run
any code of a terminated instance: the issue found 48 blobs, 7 MB, for 24 images). The maintenance code then
runs as the timer function runs it, with the SDK's own durable client bound to the host (the binding the host
injects into ``durable_client_input``): the tensors go at once, the uploads once their retention has passed,
and finished instances' history once theirs has, while the SQL rows stay.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest
import requests

from durable_host.config import build_config
from durable_host.testing import HostProcess
from durable_host.urls import client_binding
from maintenance.retention import MaintenanceReport, run_maintenance
from maintenance.timer import ClientAdapter, policy_from
from settings import settings_from
from storage.blobs import LocalFolderBlobStore
from tests.app.test_end_to_end import api, photos, poll
from tests.app.test_end_to_end import host as e2e_host  # noqa: F401  a fixture, requested by this name
from tests.conftest import REPO_ROOT
from tests.fixtures.app_host import local_state

pytestmark = pytest.mark.host

IMAGES = 24  # the task: 24 images, two models with different transforms -> 48 tensor blobs
UPLOADS_EXPIRED = timedelta(hours=24, minutes=1)  # past the default UPLOAD_RETENTION_HOURS
HISTORY_EXPIRED = timedelta(days=30, minutes=1)  # past the default INSTANCE_RETENTION_DAYS
UPLOAD_RETENTION_S = 4.0  # the timer test's windows, in seconds
INSTANCE_RETENTION_S = 8.0


def durable_client(host: HostProcess) -> df.DurableOrchestrationClient:
    """The SDK's client with the binding JSON the host gives ``durable_client_input`` functions."""
    config = build_config(REPO_ROOT, host="127.0.0.1", port=host.port, hub_dir=host.hub_dir, workers=1)
    return df.DurableOrchestrationClient(json.dumps(client_binding(config)))


class Maintenance:
    """Maintenance runs as the timer function runs them, on the host's blob folder and task hub.

    One event loop for all of them, as in a worker process: the SDK keeps one HTTP session per process,
    bound to the loop that opened it.
    """

    def __init__(self, host: HostProcess, runner: asyncio.Runner) -> None:
        self.store = LocalFolderBlobStore(host.env["BLOB_LOCAL_ROOT"])
        self.adapter = ClientAdapter(durable_client(host))
        self.runner = runner

    def run(self, now: datetime) -> MaintenanceReport:
        policy = policy_from(settings_from({}))
        adapter = self.adapter
        return self.runner.run(
            run_maintenance(self.store, adapter.lookup, adapter.session_tasks, adapter.purge, now, policy)
        )


def submit(host: HostProcess, files: list[Path], models: list[str]) -> dict[str, Any]:
    images = [{"data": base64.b64encode(p.read_bytes()).decode(), "name": p.name} for p in files]
    response = requests.post(api(host, "tasks"), json={"models": models, "images": images}, timeout=60)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def terminate_during_inference(task: dict[str, Any]) -> None:
    """Terminate through the management API once the models run (every tensor is stored by then)."""
    deadline = time.monotonic() + 120
    sent = False
    while (status := requests.get(task["statusQueryGetUri"], timeout=10).json())["runtimeStatus"] != "Terminated":
        assert time.monotonic() < deadline, status
        stage = (status.get("customStatus") or {}).get("stage")
        assert stage in (None, "preprocessing", "inference"), f"the task got past inference first: {status}"
        if stage == "inference" and not sent:
            url = task["terminatePostUri"].replace("{text}", "retention test")
            assert requests.post(url, timeout=10).status_code == 202
            sent = True
        time.sleep(0.02)


def ended(status_url: str) -> bool:
    """Whether the task has ended (a task of a session answers 404 until its turn comes)."""
    response = requests.get(status_url, timeout=10)
    return response.status_code == 200 and response.json()["runtimeStatus"] in ("Completed", "Failed", "Terminated")


def blobs_under(host: HostProcess, container: str, instance_id: str) -> list[Path]:
    folder = Path(host.env["BLOB_LOCAL_ROOT"]) / container / instance_id
    return sorted(path for path in folder.rglob("*") if path.is_file())


def test_terminated_task_tensors_uploads_and_history_are_swept_and_purged(
    request: pytest.FixtureRequest, sdk_runner: asyncio.Runner, shared_images_dir: Path
) -> None:
    host: HostProcess = request.getfixturevalue("e2e_host")  # test_end_to_end's app host
    files = (photos(shared_images_dir) * IMAGES)[:IMAGES]
    finished, _ = poll(submit(host, files[:1], ["resnet18"])["statusQueryGetUri"])
    terminated = submit(host, files, ["resnet18", "resnet50"])
    terminate_during_inference(terminated)
    instance_id = terminated["id"]

    # The finding: every preprocessed tensor is left behind, and nothing removes it by itself.
    tensors = blobs_under(host, "tensors", instance_id)
    assert len(tensors) == IMAGES * 2, tensors
    megabytes = sum(path.stat().st_size for path in tensors) / 1e6
    assert megabytes > 5, megabytes  # 3x224x224 bytes each: ~7 MB
    time.sleep(1.0)
    assert len(blobs_under(host, "tensors", instance_id)) == IMAGES * 2
    assert len(blobs_under(host, "uploads", instance_id)) == IMAGES

    # The sweep: a terminated instance's tensors go at once; its uploads stay for UPLOAD_RETENTION_HOURS.
    now = datetime.now(UTC)
    maintenance = Maintenance(host, sdk_runner)
    report = maintenance.run(now)
    assert report.sweep.tensor_blobs == IMAGES * 2 and report.sweep.tensor_bytes / 1e6 == pytest.approx(megabytes)
    assert blobs_under(host, "tensors", instance_id) == []
    assert len(blobs_under(host, "uploads", instance_id)) == IMAGES
    assert report.instances_purged == 0  # nothing is 30 days old

    report = maintenance.run(now + UPLOADS_EXPIRED)
    assert report.sweep.upload_blobs == IMAGES and blobs_under(host, "uploads", instance_id) == []

    # The purge: finished instances older than INSTANCE_RETENTION_DAYS leave the task hub, not the database.
    report = maintenance.run(now + HISTORY_EXPIRED)
    assert report.instances_purged >= 2
    for task_id in (instance_id, finished["output"]["task_id"]):
        assert requests.get(f"{host.base_url}/runtime/webhooks/durabletask/instances/{task_id}").status_code == 404
    stored = requests.get(api(host, f"tasks/{finished['output']['task_id']}"), timeout=10)
    assert stored.status_code == 200 and stored.json()["instance_id"] == finished["output"]["task_id"]
    gone = requests.get(api(host, f"tasks/{instance_id}"), timeout=10)
    assert gone.status_code == 404 and "purged" in gone.json()["error"]


@pytest.fixture(scope="module")
def maintained_host(tmp_path_factory: pytest.TempPathFactory, torch_home: Path) -> Iterator[HostProcess]:
    """The app with the maintenance timer every second and retention windows of seconds."""
    data = tmp_path_factory.mktemp("retention")
    env = {
        "TORCH_HOME": str(torch_home),
        **local_state(data),
        "INFERENCE_PRECISION": "fp32",
        "MAINTENANCE_SCHEDULE": "* * * * * *",
        "UPLOAD_RETENTION_HOURS": str(UPLOAD_RETENTION_S / 3600),
        "INSTANCE_RETENTION_DAYS": str(INSTANCE_RETENTION_S / 86400),
    }
    with HostProcess(REPO_ROOT, env=env, hub_dir=data / "hub") as running:
        yield running


def eventually(what: str, check: Callable[[], bool], host: HostProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout} s:\n{host.output[-3000:]}"
        time.sleep(0.2)


def test_the_timer_sweeps_and_purges_through_the_host(maintained_host: HostProcess, shared_images_dir: Path) -> None:
    """The timer function itself, on a one-second schedule: a terminated task's tensors go within seconds,
    uploads once UPLOAD_RETENTION_HOURS has passed (also those of a start that never happened), finished
    instances once INSTANCE_RETENTION_DAYS has; a running task keeps its tensors and completes."""
    host = maintained_host
    assert "maintenance: timerTrigger (schedule '* * * * * *'" in host.output
    orphan = Path(host.env["BLOB_LOCAL_ROOT"]) / "uploads" / "never-started" / "0.jpg"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"uploaded, then the starter died before start_new")
    files = (photos(shared_images_dir) * IMAGES)[:IMAGES]
    terminated = submit(host, files, ["resnet18", "resnet50"])
    terminate_during_inference(terminated)
    completed, _ = poll(submit(host, files[:2], ["resnet18"])["statusQueryGetUri"])  # swept every second meanwhile
    assert completed["output"]["status"] == "Completed" and completed["output"]["database_task_id"]
    instance_id = terminated["id"]

    eventually("the terminated task's tensors are swept", lambda: not blobs_under(host, "tensors", instance_id), host)
    eventually(
        "uploads past their retention are deleted",
        lambda: not blobs_under(host, "uploads", instance_id) and not orphan.exists(),
        host,
    )

    def purged(task_id: str) -> bool:
        url = f"{host.base_url}/runtime/webhooks/durabletask/instances/{task_id}"
        return requests.get(url, timeout=10).status_code == 404

    completed_id = completed["instanceId"]
    eventually("finished instances are purged", lambda: purged(instance_id) and purged(completed_id), host)
    assert requests.get(api(host, f"tasks/{completed_id}"), timeout=10).status_code == 200  # the SQL rows stay
    assert not list((Path(host.env["BLOB_LOCAL_ROOT"]) / "tensors").rglob("*.u8"))
    # (The terminated task's inference activities still in flight may fail on their swept tensors: their
    # results are dropped, as the host drops every late result of a terminated instance.)
    host.wait_for_output("Executed 'Functions.maintenance' (Succeeded")
    assert "Executed 'Functions.maintenance' (Failed" not in host.output


def test_the_timer_keeps_the_uploads_of_a_task_a_suspended_session_has_not_taken_yet(
    maintained_host: HostProcess, shared_images_dir: Path
) -> None:
    """A suspended session holds the task event without listing the task in its custom status. Its uploads
    (``<task>/session@<name>/...``) outlive ``UPLOAD_RETENTION_HOURS`` however often the timer sweeps, since
    the session cannot say; once resumed, it takes the task (the starter, still waiting, answers 202), and the
    task runs on them."""
    host = maintained_host
    session = f"held-{uuid.uuid4().hex[:6]}"
    task_id = f"{session}-b"
    management = f"{host.base_url}/runtime/webhooks/durabletask/instances/session@{session}"
    body = {"models": ["resnet18"], "session": session}
    images = [{"data": base64.b64encode(photos(shared_images_dir)[0].read_bytes()).decode(), "name": "a.jpg"}]
    first = requests.post(api(host, "tasks"), json={**body, "images": images}, timeout=60)
    eventually("the first task ends", partial(ended, first.json()["statusQueryGetUri"]), host)
    assert requests.post(f"{management}/suspend", params={"reason": "test"}, timeout=10).status_code == 202
    eventually("the session is suspended", lambda: requests.get(management, timeout=10).json()["runtimeStatus"]
               == "Suspended", host)  # fmt: skip

    with ThreadPoolExecutor(1) as pool:  # the starter waits for the session to show the task
        answer = pool.submit(
            requests.post, api(host, "tasks"), json={**body, "images": images, "task_id": task_id}, timeout=60
        )
        eventually("the starter stores the upload", lambda: bool(blobs_under(host, "uploads", task_id)), host)
        (upload,) = blobs_under(host, "uploads", task_id)
        assert upload.parent.parent.name == f"session@{session}"  # <task>/session@<name>/<submission>/0.jpg
        time.sleep(UPLOAD_RETENTION_S + 3)  # swept every second, past the upload's retention
        assert upload.exists()
        assert requests.post(f"{management}/resume", params={"reason": "test"}, timeout=10).status_code == 202
        assert answer.result().status_code == 202, answer.result().text
    url = answer.result().json()["statusQueryGetUri"]
    eventually("the held task ends", partial(ended, url), host)
    final = requests.get(url, timeout=10).json()
    assert final["runtimeStatus"] == "Completed" and final["output"]["status"] == "Completed", final
    assert final["output"]["images"][0]["error"] is None
