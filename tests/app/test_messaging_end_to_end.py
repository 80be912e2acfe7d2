"""Message-driven use, end to end: the app on the local host, a real Azurite queue service and a real
loopback callback server.

A message on the task queue produces the outcome on its reply queue; the same ``task_id`` twice starts one
task; messages that can never start a task land on ``<queue>-poison`` with the reason; a callback that
fails twice gets the signed outcome on the third attempt, each attempt in the task's history; tasks of
three interleaved sessions finish one at a time and in submission order per session, a failed task not
blocking the ones behind it. Weights are seeded random ones (nothing is downloaded).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient, QueueServiceClient
from PIL import Image

from durable_host.testing import HostProcess, wait_for
from maintenance.retention import InstanceState
from messaging.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.app.test_retention_host import Maintenance
from tests.conftest import REPO_ROOT
from tests.fixtures.app_host import RANDOM_WEIGHTS, local_state
from tests.fixtures.azurite import Azurite

pytestmark = pytest.mark.host

SECRET = "test-signing-secret"
TASK_QUEUE = "classify-e2e"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CallbackServer:
    """Answers each path's planned statuses in turn (then 200) and records every request."""

    port: int = 0
    plans: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)  # lets GET answer

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


@pytest.fixture(scope="module")
def callbacks() -> Iterator[CallbackServer]:
    server_state = CallbackServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with server_state.lock:
                server_state.received.append(Received(self.path, dict(self.headers.items()), body))
                plan = server_state.plans.get(self.path, [])
                status = plan.pop(0) if plan else 200
            self.send_response(status)
            if self.path.startswith("/short-answer"):  # promises 100 bytes, sends 3 and hangs up
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"ok!")
                self.close_connection = True
                return
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            """An image URL that answers once the test releases it: a task that takes as long as needed."""
            server_state.release.wait(timeout=60)
            body = base64.b64decode(png(0))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def host(
    tmp_path_factory: pytest.TempPathFactory, azurite_queue: Azurite, callbacks: CallbackServer
) -> Iterator[HostProcess]:
    data = tmp_path_factory.mktemp("messaging")
    env = {
        **RANDOM_WEIGHTS,
        **local_state(data),
        "AzureWebJobsStorage": azurite_queue.connection_string,
        "TASK_QUEUE_NAME": TASK_QUEUE,
        "CALLBACK_ALLOWED_HOSTS": "127.0.0.1",
        "URL_ALLOWED_HOSTS": "127.0.0.1",
        "URL_FETCH_TIMEOUT_SECONDS": "60",
        "CALLBACK_SIGNING_SECRET": SECRET,
        "DELIVERY_RETRY_ATTEMPTS": "4",
        "DELIVERY_RETRY_INTERVAL_MS": "200",
        "ACTIVITY_RETRY_INTERVAL_MS": "100",
        "SESSION_ACCEPT_TIMEOUT_SECONDS": "3",
    }
    # The task queue exists before the app starts, as on Azure (the trigger does not create it).
    QueueServiceClient.from_connection_string(azurite_queue.connection_string).create_queue(TASK_QUEUE)
    with HostProcess(REPO_ROOT, env=env, hub_dir=data / "hub", startup_timeout=120) as running:
        yield running


@pytest.fixture(scope="module")
def queues(azurite_queue: Azurite) -> QueueServiceClient:
    return QueueServiceClient.from_connection_string(azurite_queue.connection_string)


def queue(service: QueueServiceClient, name: str) -> QueueClient:
    """Base64 both ways, as the Functions queue trigger and the app's replies use."""
    return service.get_queue_client(
        name, message_encode_policy=BinaryBase64EncodePolicy(), message_decode_policy=BinaryBase64DecodePolicy()
    )


def png(seed: int, size: int = 48) -> str:
    """A small distinct image, base64: it fits in a queue message."""
    image = Image.new("RGB", (size, size), ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def task(images: int, seed: int = 0, **routing: Any) -> dict[str, Any]:
    return {
        "model": "resnet18",
        "top_k": 2,
        "images": [{"data": png(seed + i), "name": f"img{seed + i}.png"} for i in range(images)],
        **routing,
    }


def status(host: HostProcess, instance_id: str, history: bool = False) -> dict[str, Any] | None:
    params = {"showHistory": "true"} if history else {}
    answer = requests.get(
        f"{host.base_url}/runtime/webhooks/durabletask/instances/{instance_id}", params=params, timeout=10
    )
    if answer.status_code == 404:
        return None
    body: dict[str, Any] = answer.json()
    return body


def span(host: HostProcess, instance_id: str) -> tuple[datetime, datetime]:
    """When the task's execution started and ended, from its history (microseconds, unlike createdTime)."""
    body = status(host, instance_id, history=True)
    assert body is not None
    events = body["historyEvents"]
    assert events[0]["EventType"] == "ExecutionStarted" and events[-1]["EventType"] == "ExecutionCompleted"
    return datetime.fromisoformat(events[0]["Timestamp"]), datetime.fromisoformat(events[-1]["Timestamp"])


def ended(host: HostProcess, instance_id: str) -> dict[str, Any] | None:
    body = status(host, instance_id)
    return body if body and body["runtimeStatus"] in ("Completed", "Failed", "Terminated") else None


def receive_all(client: QueueClient) -> list[dict[str, Any]]:
    messages = []
    for message in client.receive_messages(max_messages=32, visibility_timeout=60):
        messages.append(json.loads(message.content))
        client.delete_message(message)
    return messages


def test_a_queued_request_gets_its_result_on_the_reply_queue(host: HostProcess, queues: QueueServiceClient) -> None:
    replies = queue(queues, f"replies-{uuid.uuid4().hex[:8]}")
    requests_queue = queue(queues, TASK_QUEUE)
    requests_queue.send_message(json.dumps(task(2, task_id="queued-1", reply_to=replies.queue_name)).encode())

    def reply() -> list[dict[str, Any]]:
        try:
            return receive_all(replies)
        except Exception:  # noqa: BLE001  the reply queue is created with the first reply
            return []

    (document,) = wait_for(reply, "the reply message", host)
    assert document["task_id"] == "queued-1" and document["status"] == "Completed"
    assert [image["name"] for image in document["images"]] == ["img0.png", "img1.png"]
    final = wait_for(lambda: ended(host, "queued-1"), "the task to end", host)
    assert final["output"]["delivery"] == {"delivered": True, "target": f"queue {replies.queue_name}", "error": None}


def test_the_same_task_id_twice_starts_one_task(host: HostProcess, queues: QueueServiceClient) -> None:
    replies = queue(queues, f"replies-{uuid.uuid4().hex[:8]}")
    message = json.dumps(task(1, seed=7, task_id="queued-twice", reply_to=replies.queue_name)).encode()
    requests_queue = queue(queues, TASK_QUEUE)
    requests_queue.send_message(message)
    requests_queue.send_message(message)
    wait_for(lambda: ended(host, "queued-twice"), "the task to end", host)
    wait_for(lambda: requests_queue.get_queue_properties().approximate_message_count == 0, "both messages", host)
    time.sleep(1.0)  # a second task would have started by now; its reply would follow
    assert len(receive_all(replies)) == 1
    listed = requests.get(
        f"{host.base_url}/runtime/webhooks/durabletask/instances",
        params={"instanceIdPrefix": "queued-twice"},
        timeout=10,
    ).json()
    assert [item["instanceId"] for item in listed] == ["queued-twice"]


def test_a_message_redelivered_after_its_task_history_was_purged_starts_nothing(
    host: HostProcess, queues: QueueServiceClient
) -> None:
    """Its result is in the database: the message goes to the poison queue with the reason, and the rows stay."""
    message = json.dumps(task(1, seed=8, task_id="queued-purged")).encode()
    requests_queue = queue(queues, TASK_QUEUE)
    requests_queue.send_message(message)
    wait_for(lambda: ended(host, "queued-purged"), "the task to end", host)
    stored = requests.get(f"{host.base_url}/api/tasks/queued-purged", timeout=10).json()
    purge = f"{host.base_url}/runtime/webhooks/durabletask/instances/queued-purged"
    assert requests.delete(purge, timeout=10).status_code == 200
    sent = requests_queue.send_message(message)
    wait_for(
        lambda: f"queue message {sent.id} rejected to {TASK_QUEUE}-poison: task_id 'queued-purged'" in host.output,
        "the rejection",
        host,
    )
    wait_for(lambda: requests_queue.get_queue_properties().approximate_message_count == 0, "the message", host)
    assert status(host, "queued-purged") is None
    assert requests.get(f"{host.base_url}/api/tasks/queued-purged", timeout=10).json() == stored
    peeked = queue(queues, f"{TASK_QUEUE}-poison").peek_messages(max_messages=32)
    poisoned = [json.loads(m.content) for m in peeked if json.loads(m.content)["message_id"] == sent.id]
    assert len(poisoned) == 1 and poisoned[0]["field"] == "task_id", poisoned
    assert "was used by a task submitted at" in poisoned[0]["error"]


def one_image(name: str, size: int, **routing: Any) -> dict[str, Any]:
    return {"model": "resnet18", "top_k": 1, "images": [{"data": png(size, size=size), "name": name}], **routing}


def test_a_task_id_resubmitted_while_it_waits_in_its_session_keeps_its_first_images(
    host: HostProcess, callbacks: CallbackServer
) -> None:
    """The task waits behind a head that does not end, with no instance yet: the second submission of its id is
    the same task (nothing handed over again), and the task runs on the image it was first given."""
    callbacks.release.clear()  # an earlier test of the module may have released the slow image
    session = f"resubmit-{uuid.uuid4().hex[:6]}"
    head = {"model": "resnet18", "images": [{"url": callbacks.url(f"/slow/{session}.png")}], "session": session}
    task_id = f"{session}-t"
    try:
        assert requests.post(f"{host.base_url}/api/tasks", json=head, timeout=60).status_code == 202
        first = requests.post(f"{host.base_url}/api/tasks", json=one_image("first", 40, session=session,
                              task_id=task_id), timeout=60)  # fmt: skip
        again = requests.post(f"{host.base_url}/api/tasks", json=one_image("again", 50, session=session,
                              task_id=task_id), timeout=60)  # fmt: skip
        assert (first.status_code, again.status_code) == (202, 202) and again.json()["id"] == task_id
        assert (status(host, f"session@{session}") or {})["customStatus"]["queued"] == [task_id]
    finally:
        callbacks.release.set()
    final = wait_for(lambda: ended(host, task_id), "the waiting task", host)
    image = final["output"]["images"][0]
    assert (image["name"], image["width"]) == ("first", 40), final["output"]


def test_racing_submissions_of_one_task_id_run_one_task_on_one_submission_s_image(host: HostProcess) -> None:
    """Eight clients submit the same task_id at once, each with its own image: one task runs, and the image it
    classifies is the one whose name it reports (each submission's uploads have their own folder)."""
    task_id = f"race-{uuid.uuid4().hex[:6]}"
    bodies = [one_image(f"size-{size}", size, task_id=task_id) for size in range(32, 40)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: requests.post(f"{host.base_url}/api/tasks", json=b, timeout=60), bodies))
    assert {a.status_code for a in answers} == {202} and {a.json()["id"] for a in answers} == {task_id}
    final = wait_for(lambda: ended(host, task_id), "the task", host)
    image = final["output"]["images"][0]
    assert image["name"] == f"size-{image['width']}", final["output"]


def suspended_session(host: HostProcess, prefix: str) -> tuple[str, str]:
    """A new session that has run one task and is then suspended: (its name, its management URL)."""
    session = f"{prefix}-{uuid.uuid4().hex[:6]}"
    first = requests.post(f"{host.base_url}/api/tasks", json=task(1, session=session), timeout=60)
    wait_for(lambda: ended(host, first.json()["id"]), "the first task", host)
    management = f"{host.base_url}/runtime/webhooks/durabletask/instances/session@{session}"
    assert requests.post(f"{management}/suspend", params={"reason": "test"}, timeout=10).status_code == 202
    wait_for(lambda: (status(host, f"session@{session}") or {}).get("runtimeStatus") == "Suspended", "suspend", host)
    return session, management


def test_a_message_without_task_id_redelivered_after_a_failed_start_runs_one_task(
    host: HostProcess, queues: QueueServiceClient
) -> None:
    """At-least-once delivery: the first delivery hands its task to a suspended session, which holds the event
    without showing the task, so the start fails after the event was raised and the message comes back with
    the same id after ``visibilityTimeout``. Both deliveries name the task ``queue@<message id>``: the resumed
    session runs it once, and the second delivery finds it instead of starting another."""
    session, management = suspended_session(host, "redeliver")

    requests_queue = queue(queues, TASK_QUEUE)
    sent = requests_queue.send_message(json.dumps(task(1, seed=11, session=session)).encode())
    wait_for(lambda: f"session '{session}' did not accept the task" in host.output, "the first delivery fails", host)
    assert requests.post(f"{management}/resume", params={"reason": "test"}, timeout=10).status_code == 202
    final = wait_for(lambda: ended(host, f"queue@{sent.id}"), "the task named after the message", host)
    assert final["runtimeStatus"] == "Completed"
    wait_for(lambda: f"queue message {sent.id}: task queue@{sent.id} existed already" in host.output, "2nd", host)
    time.sleep(1.0)  # a second task would be queued in the session by now
    custom = (status(host, f"session@{session}") or {})["customStatus"]
    assert custom["finished"] == 2 and custom["running"] is None and custom["queued"] == [], custom


def test_messages_that_cannot_start_a_task_go_to_the_poison_queue_with_the_reason(
    host: HostProcess, queues: QueueServiceClient
) -> None:
    requests_queue = queue(queues, TASK_QUEUE)
    poison = queue(queues, f"{TASK_QUEUE}-poison")
    requests_queue.send_message(b"{not json")
    requests_queue.send_message(json.dumps(task(1, task_id="bad-model") | {"model": "resnet999"}).encode())
    found: list[dict[str, Any]] = []

    def both() -> list[dict[str, Any]]:
        with contextlib.suppress(Exception):  # the poison queue is created with the first rejection
            ours = (
                e for e in receive_all(poison) if e["message"].startswith("{not json") or "resnet999" in e["message"]
            )
            found.extend(ours)  # other tests' rejections may be there too
        return found if len(found) >= 2 else []

    wait_for(both, "two poison messages", host)
    by_text = {envelope["message"][:9]: envelope for envelope in found}
    assert "not valid JSON" in by_text["{not json"]["error"]
    bad_model = next(e for e in found if "resnet999" in e["message"])
    assert bad_model["field"] == "model" and "resnet999" in bad_model["error"]
    assert status(host, "bad-model") is None


def test_a_callback_that_fails_twice_gets_the_signed_outcome_on_the_third_attempt(
    host: HostProcess, callbacks: CallbackServer
) -> None:
    callbacks.plans["/flaky"] = [503, 503]
    answer = requests.post(
        f"{host.base_url}/api/tasks", json=task(1, seed=3, reply_to=callbacks.url("/flaky")), timeout=30
    )
    assert answer.status_code == 202, answer.text
    instance_id = answer.json()["id"]
    final = wait_for(lambda: ended(host, instance_id), "the task to end", host)
    assert final["runtimeStatus"] == "Completed"
    assert final["output"]["delivery"]["delivered"] is True
    attempts = callbacks.requests_to("/flaky")
    assert len(attempts) == 3
    for attempt in attempts:
        signature, timestamp = attempt.headers.get(SIGNATURE_HEADER), attempt.headers.get(TIMESTAMP_HEADER)
        assert verify(attempt.body, SECRET, signature, timestamp)
        assert not verify(attempt.body + b" ", SECRET, signature, timestamp)
    delivered = json.loads(attempts[-1].body)
    assert delivered["task_id"] == instance_id and delivered["status"] == "Completed"
    history = status(host, instance_id, history=True)
    assert history is not None
    tries = [e for e in history["historyEvents"] if e.get("FunctionName") == "deliver_result"]
    assert [e["EventType"] for e in tries] == ["TaskFailed", "TaskFailed", "TaskCompleted"]


def test_a_callback_answered_2xx_is_delivered_once_even_if_its_answer_breaks_off(
    host: HostProcess, callbacks: CallbackServer
) -> None:
    answer = requests.post(
        f"{host.base_url}/api/tasks", json=task(1, reply_to=callbacks.url("/short-answer")), timeout=30
    )
    final = wait_for(lambda: ended(host, answer.json()["id"]), "the task to end", host)
    assert final["output"]["delivery"] == {"delivered": True, "target": callbacks.url("/short-answer"), "error": None}
    assert len(callbacks.requests_to("/short-answer")) == 1


def test_a_callback_refused_for_good_leaves_the_task_completed(host: HostProcess, callbacks: CallbackServer) -> None:
    callbacks.plans["/gone"] = [410]
    answer = requests.post(f"{host.base_url}/api/tasks", json=task(1, reply_to=callbacks.url("/gone")), timeout=30)
    final = wait_for(lambda: ended(host, answer.json()["id"]), "the task to end", host)
    assert final["runtimeStatus"] == "Completed" and final["output"]["status"] == "Completed"
    assert final["output"]["delivery"]["delivered"] is False
    assert "HTTP 410" in final["output"]["delivery"]["error"]
    assert len(callbacks.requests_to("/gone")) == 1  # a 4xx is not retried


def test_tasks_of_a_session_run_one_at_a_time_in_order_and_a_failed_one_does_not_block(
    host: HostProcess, queues: QueueServiceClient
) -> None:
    sessions = {name: f"s{n}-{uuid.uuid4().hex[:6]}" for n, name in enumerate("abc")}
    plan = [("a", 3), ("b", 1), ("c", 2), ("a", 1), ("b", 0), ("c", 1), ("a", 2), ("b", 2), ("c", 3)]  # 0: fails
    submitted: dict[str, list[str]] = {name: [] for name in sessions}
    requests_queue = queue(queues, TASK_QUEUE)
    for position, (name, images) in enumerate(plan):
        task_id = f"{sessions[name]}-{position}"
        body = task(max(images, 1), seed=position, session=sessions[name], task_id=task_id)
        if images == 0:  # every image of this task fails: the task ends with status Failed
            body["images"] = [{"blob": "missing/never-uploaded.png"}]
        if position % 3 == 2:  # some through the queue, the rest over HTTP: one starter path
            requests_queue.send_message(json.dumps(body).encode())
            wait_for(
                lambda session=sessions[name], task_id=task_id: (
                    task_id in json.dumps(status(host, f"session@{session}")) or status(host, task_id)
                ),
                "the session to accept the queued task",
                host,
            )
        else:
            answer = requests.post(f"{host.base_url}/api/tasks", json=body, timeout=60)
            assert answer.status_code == 202, answer.text
            assert answer.json()["id"] == task_id
        submitted[name].append(task_id)

    finals = {
        task_id: wait_for(lambda task_id=task_id: ended(host, task_id), f"task {task_id}", host)
        for ids in submitted.values()
        for task_id in ids
    }
    assert finals[f"{sessions['b']}-4"]["output"]["status"] == "Failed"
    spans = {task_id: span(host, task_id) for ids in submitted.values() for task_id in ids}
    for name, ids in submitted.items():
        assert all(finals[i]["runtimeStatus"] == "Completed" for i in ids)
        for earlier, later in itertools.pairwise(ids):  # the next starts only once the previous ended
            assert spans[later][0] >= spans[earlier][1], (name, earlier, later, spans)
        session = status(host, f"session@{sessions[name]}", history=True)
        assert session is not None and session["runtimeStatus"] == "Running"
        assert session["customStatus"]["finished"] == len(ids) and session["customStatus"]["running"] is None
        assert len(session["historyEvents"]) < 10, "continue-as-new keeps one idle execution's events"
    overlapping = [
        (first, second)
        for first, second in itertools.combinations(spans, 2)
        if first.rsplit("-", 1)[0] != second.rsplit("-", 1)[0]
        and spans[first][0] < spans[second][1]
        and spans[second][0] < spans[first][1]
    ]
    assert overlapping, f"tasks of different sessions never ran at the same time: {spans}"


def test_starters_racing_to_create_a_new_session_all_get_their_task_run(host: HostProcess) -> None:
    """Four submissions for a session that does not exist yet, at the same moment: one ``start_new`` of the
    session wins, the others find it running, and every task runs, one at a time."""
    session = f"race-{uuid.uuid4().hex[:6]}"
    barrier = threading.Barrier(4)

    def post(n: int) -> requests.Response:
        barrier.wait()
        return requests.post(f"{host.base_url}/api/tasks", json=task(1, seed=n, session=session), timeout=60)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(post, range(4)))
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    ids = [a.json()["id"] for a in answers]
    for task_id in ids:
        wait_for(lambda task_id=task_id: ended(host, task_id), f"task {task_id}", host)
    spans = sorted(span(host, task_id) for task_id in ids)
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
    session_status = status(host, f"session@{session}")
    assert session_status is not None and session_status["customStatus"]["finished"] == 4
    created = f"session@{session}: Function 'classify_session (Orchestrator)' scheduled. Reason: NewInstance."
    assert host.output.count(created) == 1, "the session was created once"


def test_a_session_that_does_not_take_the_task_is_a_503_and_the_events_raised_again_run_it_once(
    host: HostProcess,
) -> None:
    """A suspended session holds its events: the starter raises the task three times, gives up with a 503
    (the client may retry with the same task_id), and once resumed the session runs the task once."""
    session, management = suspended_session(host, "held")

    held = requests.post(
        f"{host.base_url}/api/tasks", json=task(1, session=session, task_id=f"{session}-b"), timeout=60
    )
    assert held.status_code == 503 and "did not accept the task within 3 s" in held.json()["error"]
    assert requests.post(f"{management}/resume", params={"reason": "test"}, timeout=10).status_code == 202
    final = wait_for(lambda: ended(host, f"{session}-b"), "the held task", host)
    assert final["runtimeStatus"] == "Completed"
    wait_for(lambda: (status(host, f"session@{session}") or {}).get("customStatus", {}).get("finished") == 2, "2", host)
    time.sleep(1.0)  # the duplicates were ignored: nothing else runs
    assert status(host, f"session@{session}")["customStatus"] == {
        "session": session,
        "running": None,
        "queued": [],
        "finished": 2,
        "last": None,
        "refused": None,
    }
    again = requests.post(
        f"{host.base_url}/api/tasks", json=task(1, session=session, task_id=f"{session}-b"), timeout=60
    )
    assert again.status_code == 202 and again.json()["id"] == f"{session}-b"  # a retry after the 503: no new task


def test_the_maintenance_sweep_keeps_the_uploads_of_a_task_queued_in_its_session(
    host: HostProcess, callbacks: CallbackServer, sdk_runner: asyncio.Runner
) -> None:
    """A session's second task waits, with no instance, while the first fetches an image that does not come: a
    sweep a day later (past UPLOAD_RETENTION_HOURS), through the SDK's client on this host, asks the session,
    keeps the waiting task's uploads and deletes a plain orphan's; the waiting task then runs on them."""
    callbacks.release.clear()  # an earlier test of the module may have released the slow image
    session = f"swept-{uuid.uuid4().hex[:6]}"
    head = {"model": "resnet18", "images": [{"url": callbacks.url(f"/slow/{session}.png")}], "session": session}
    assert requests.post(f"{host.base_url}/api/tasks", json=head, timeout=60).status_code == 202
    waiting = requests.post(f"{host.base_url}/api/tasks", json=task(2, seed=5, session=session), timeout=60)
    assert waiting.status_code == 202, waiting.text
    task_id = waiting.json()["id"]
    orphan = Path(host.env["BLOB_LOCAL_ROOT"]) / "uploads" / f"orphan-{session}" / "0.png"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"uploaded, then the starter died before start_new")
    uploads = Path(host.env["BLOB_LOCAL_ROOT"]) / "uploads" / task_id
    assert len([path for path in uploads.rglob("*") if path.is_file()]) == 2
    assert (status(host, f"session@{session}") or {})["customStatus"]["queued"] == [task_id]
    assert status(host, task_id) is None  # no instance while it waits its turn

    try:
        report = Maintenance(host, sdk_runner).run(datetime.now(UTC) + timedelta(hours=25))
    finally:
        callbacks.release.set()
    assert not orphan.exists() and report.sweep.upload_blobs >= 1
    assert len([path for path in uploads.rglob("*") if path.is_file()]) == 2
    final = wait_for(lambda: ended(host, task_id), "the waiting task", host)
    assert final["runtimeStatus"] == "Completed" and final["output"]["status"] == "Completed", final
    assert [image["error"] for image in final["output"]["images"]] == [None, None]


def test_the_api_and_the_maintenance_timer_ask_about_the_same_instance(
    host: HostProcess, sdk_runner: asyncio.Runner
) -> None:
    """The SDK's client puts an id into its request URL as is, where ``%5A`` means ``Z``: both callers give it the
    id percent-encoded whole, so ``%5A...`` is asked about as written (no such instance), not as task ``Z...``."""
    task_id = f"Z{uuid.uuid4().hex[:8]}"
    assert requests.post(f"{host.base_url}/api/tasks", json=task(1, seed=2, task_id=task_id), timeout=60).ok
    wait_for(lambda: ended(host, task_id), "the task", host)
    lookalike = f"%5A{task_id[1:]}"  # the route parameter of /api/tasks/%255A...
    answer = requests.get(f"{host.base_url}/api/tasks/{lookalike.replace('%', '%25')}", timeout=10)
    assert answer.status_code == 404 and f"no stored result for task {lookalike!r}" in answer.json()["error"]
    adapter = Maintenance(host, sdk_runner).adapter
    assert sdk_runner.run(adapter.lookup(task_id)) is InstanceState.FINISHED
    assert sdk_runner.run(adapter.lookup(lookalike)) is InstanceState.UNKNOWN
    assert sdk_runner.run(adapter.lookup("a?b#c")) is InstanceState.UNKNOWN  # no instance can have it
