"""The whole app served by the local Durable Functions host, driven through its public HTTP API only.

One real host process (``durable_host.testing.HostProcess``) runs ``function_app.py`` from the repository
root with a temporary blob folder, SQLite file and task hub, and seeded checkpoints under torchvision's
canonical names; the results are compared with torchvision's reference pipeline on the same weights.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import torch

from durable_host.testing import HostProcess
from tests.conftest import REPO_ROOT
from tests.fixtures.app_host import local_state
from tests.fixtures.checkpoints import reference_logits

pytestmark = pytest.mark.host

TIMEOUT = 120.0


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, torch_home: Path) -> Iterator[HostProcess]:
    data = tmp_path_factory.mktemp("app-data")
    env = {
        "TORCH_HOME": str(torch_home),
        **local_state(data),
        "INFERENCE_PRECISION": "fp32",
        "INFERENCE_BATCH_SIZE": "4",
        "ACTIVITY_RETRY_INTERVAL_MS": "100",
    }
    with HostProcess(REPO_ROOT, env=env, hub_dir=data / "hub") as running:
        yield running


@pytest.fixture(autouse=True)
def _reference_weights(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference computation in this process loads the same checkpoints as the host."""
    monkeypatch.setenv("TORCH_HOME", str(torch_home))


def api(host: HostProcess, path: str) -> str:
    return f"{host.base_url}/api/{path}"


def photos(shared_images_dir: Path) -> list[Path]:
    return sorted(shared_images_dir.glob("*.jpg"))


def poll(status_url: str) -> tuple[dict[str, Any], list[Any]]:
    """Poll statusQueryGetUri until done; return the final status and every customStatus seen."""
    deadline = time.monotonic() + TIMEOUT
    seen: list[Any] = []
    while time.monotonic() < deadline:
        response = requests.get(status_url, timeout=10)
        body = response.json()
        if body.get("customStatus") not in seen[-1:]:
            seen.append(body.get("customStatus"))
        if body["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
            assert response.status_code == 200
            return body, seen
        assert response.status_code == 202 and "Location" in response.headers
        time.sleep(0.05)
    raise AssertionError(f"task did not finish within {TIMEOUT} s: {seen[-1:]}")


def test_submit_poll_and_read_the_persisted_result(host: HostProcess, shared_images_dir: Path) -> None:
    files = photos(shared_images_dir)
    images = [{"data": base64.b64encode(p.read_bytes()).decode(), "name": p.name} for p in files]
    response = requests.post(
        api(host, "tasks"), json={"models": ["ResNet18", "resnet50"], "images": images, "top_k": 3}, timeout=30
    )
    assert response.status_code == 202, response.text
    payload = response.json()
    for key in ("id", "statusQueryGetUri", "sendEventPostUri", "terminatePostUri", "purgeHistoryDeleteUri"):
        assert key in payload
    assert response.headers["Location"] == payload["statusQueryGetUri"]

    status, progress = poll(payload["statusQueryGetUri"])
    assert status["runtimeStatus"] == "Completed"
    assert any(p and p.get("stage") == "preprocessing" for p in progress) or progress[-1]["stage"] == "done"
    output = status["output"]
    assert output["status"] == "Completed" and output["task_id"] == payload["id"]
    assert [image["name"] for image in output["images"]] == [p.name for p in files]
    for model, weights_name in (("resnet18", "IMAGENET1K_V1"), ("resnet50", "IMAGENET1K_V2")):
        assert weights_name in output["weights"][model]
        expected = torch.softmax(reference_logits(model, weights_name, files), dim=1).topk(3, dim=1).indices
        got = [[p["class_index"] for p in image["predictions"][model]["top_k"]] for image in output["images"]]
        assert got == expected.tolist()
    timings = output["timings"]
    assert timings["submitted_at"] <= timings["processing_started_at"] <= timings["processing_finished_at"]

    stored = requests.get(api(host, f"tasks/{payload['id']}"), timeout=10)
    assert stored.status_code == 200
    record = stored.json()
    assert record["task_id"] == output["database_task_id"]
    assert len(record["results"]) == len(files) * 2
    by_task_id = requests.get(api(host, f"tasks/{record['task_id']}"), timeout=10).json()
    assert by_task_id["instance_id"] == payload["id"]


def test_raw_upload_in_synchronous_mode(host: HostProcess, shared_images_dir: Path) -> None:
    photo = photos(shared_images_dir)[0]
    response = requests.post(
        api(host, "tasks"),
        params={"model": "resnet18", "top_k": "2", "wait": "60"},
        data=photo.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=90,
    )
    assert response.status_code == 200, response.text
    output = response.json()
    assert output["status"] == "Completed"
    assert len(output["images"][0]["predictions"]["resnet18"]["top_k"]) == 2


def test_legacy_create_task_and_a_bad_image(host: HostProcess, shared_images_dir: Path) -> None:
    good = photos(shared_images_dir)[1]
    response = requests.post(
        api(host, "create_task"),
        json={
            "model_type": "ResNet18",
            "images": [
                {"data": base64.b64encode(good.read_bytes()).decode(), "name": good.name},
                {"data": base64.b64encode(b"plain text, no pixels").decode(), "name": "notes.jpg"},
            ],
        },
        timeout=30,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted" and body["model_type"] == "ResNet18"
    assert body["task_id"] == body["id"] and body["message"]
    status, _ = poll(body["statusQueryGetUri"])
    output = status["output"]
    assert output["status"] == "CompletedWithErrors"
    assert output["images"][0]["error"] is None
    assert "notes.jpg" in output["images"][1]["error"]
    assert output["images"][1]["predictions"]["resnet18"]["error"] == output["images"][1]["error"]


def test_a_task_id_reused_after_its_history_was_purged_is_a_409_and_the_stored_result_stays(
    host: HostProcess, shared_images_dir: Path
) -> None:
    """INSTANCE_RETENTION_DAYS later the maintenance purge removes a task's history; its rows stay, the
    permanent record. The same task_id then must not start a task that overwrites them."""
    photo = photos(shared_images_dir)[0]
    image = {"data": base64.b64encode(photo.read_bytes()).decode(), "name": photo.name}
    first = requests.post(
        api(host, "tasks"), json={"model": "resnet18", "images": [image], "task_id": "kept-1"}, timeout=30
    )
    status, _ = poll(first.json()["statusQueryGetUri"])
    stored = requests.get(api(host, "tasks/kept-1"), timeout=10).json()
    assert status["output"]["database_task_id"] == stored["task_id"]
    assert requests.delete(first.json()["purgeHistoryDeleteUri"], timeout=10).status_code == 200

    again = requests.post(
        api(host, "tasks"), json={"model": "resnet50", "images": [image], "task_id": "kept-1"}, timeout=30
    )
    assert again.status_code == 409, again.text
    assert again.json()["field"] == "task_id" and again.json()["TaskID"] == stored["task_id"]
    assert "GET /api/tasks/kept-1" in again.json()["error"]
    assert requests.get(api(host, "tasks/kept-1"), timeout=10).json() == stored
    assert requests.get(first.json()["statusQueryGetUri"], timeout=10).status_code == 404  # nothing started


def test_the_older_api_answers_a_duplicate_task_id_with_the_existing_task(
    host: HostProcess, shared_images_dir: Path
) -> None:
    photo = photos(shared_images_dir)[0]
    image = {"data": base64.b64encode(photo.read_bytes()).decode(), "name": photo.name}
    first = requests.post(
        api(host, "create_task"),
        json={"model_type": "ResNet18", "images": [image], "task_id": "legacy-dup"},
        timeout=30,
    )
    assert first.status_code == 202 and first.json()["status"] == "accepted"
    again = requests.post(
        api(host, "create_task"),
        json={"model_type": "ResNet50", "images": [image], "task_id": "legacy-dup"},
        timeout=30,
    )
    assert again.status_code == 202
    assert again.json()["status"] == "exists" and again.json()["model_type"] == "ResNet18"
    assert "nothing new was started" in again.json()["message"]
    status, _ = poll(first.json()["statusQueryGetUri"])
    assert list(status["output"]["weights"]) == ["resnet18"]


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b"{broken", "application/json", "not valid JSON"),
        (b'{"model": "vgg19", "images": [{"blob": "photos/b.jpg"}]}', "application/json", "resnet18"),
        (b'{"model": "resnet18", "images": []}', "application/json", "non-empty"),
        (b'{"model": "resnet18", "images": [{"data": "%%%"}]}', "application/json", "base64"),
        (b'{"model": "resnet18", "images": [{"blob": "photos/b.jpg"}], "top_k": 0}', "application/json", "top_k"),
    ],
)
def test_bad_input_is_a_400_with_a_json_reason(host: HostProcess, body: bytes, content_type: str, words: str) -> None:
    response = requests.post(api(host, "tasks"), data=body, headers={"Content-Type": content_type}, timeout=10)
    assert response.status_code == 400
    assert words in response.json()["error"]


@pytest.mark.parametrize("route", ["tasks", "create_task"])
@pytest.mark.parametrize(
    ("body", "content_type", "query"),
    [
        (b'{"model": "resnet18", "images": [{"blob": "photos/b.jpg"}], "top_k": "--5"}', "application/json", ""),
        ('{"model": "resnet18", "images": [{"blob": "photos/b.jpg"}], "top_k": "²"}'.encode(), "application/json", ""),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", ""),
        (b"\xff\xd8\xff", "image/jpeg", "?model=resnet18&top_k=--5"),
        (b"\xff\xd8\xff", "image/jpeg", "?model=resnet18&top_k=%C2%B2"),
    ],
)
def test_client_errors_are_400_not_500(
    host: HostProcess, route: str, body: bytes, content_type: str, query: str
) -> None:
    response = requests.post(api(host, route) + query, data=body, headers={"Content-Type": content_type}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


@pytest.mark.parametrize(
    "ref", ["9223372036854775808", "2147483648", "9" * 5000, "x" * 101, "a%3Fb%3D1%23c", "%E2%9C%93"]
)
def test_ids_no_task_can_have_are_a_404(host: HostProcess, ref: str) -> None:
    response = requests.get(api(host, f"tasks/{ref}"), timeout=10)
    assert response.status_code == 404 and response.json()["error"]


def test_unknown_task_result_is_a_404_with_a_json_reason(host: HostProcess) -> None:
    response = requests.get(api(host, "tasks/does-not-exist"), timeout=10)
    assert response.status_code == 404
    assert "does-not-exist" in response.json()["error"]
