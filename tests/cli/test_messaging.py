"""``classify submit --session --reply-to`` and ``classify enqueue`` against the app on the local host with a
real Azurite queue service."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.queue import BinaryBase64DecodePolicy, QueueServiceClient
from click.testing import CliRunner
from PIL import Image

from classifier_cli.main import cli
from durable_host.testing import HostProcess
from tests.cli.conftest import COLUMNS, Classify, Run
from tests.conftest import REPO_ROOT
from tests.fixtures.app_host import RANDOM_WEIGHTS, local_state
from tests.fixtures.azurite import Azurite

pytestmark = pytest.mark.host

TASK_QUEUE = "cli-tasks"


@pytest.fixture(scope="module")
def queue_host(tmp_path_factory: pytest.TempPathFactory, azurite_queue: Azurite) -> Iterator[HostProcess]:
    data = tmp_path_factory.mktemp("cli-messaging")
    env = {
        **RANDOM_WEIGHTS,
        **local_state(data),
        "AzureWebJobsStorage": azurite_queue.connection_string,
        "TASK_QUEUE_NAME": TASK_QUEUE,
    }
    QueueServiceClient.from_connection_string(azurite_queue.connection_string).create_queue(TASK_QUEUE)
    with HostProcess(REPO_ROOT, env=env, hub_dir=data / "hub", startup_timeout=120) as host:
        yield host


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("small-images")
    for index in range(3):
        Image.new("RGB", (40, 40), (index * 80, 40, 200 - index * 60)).save(folder / f"shot{index}.png")
    return folder


def replies_on(azurite: Azurite, name: str) -> list[dict[str, object]]:
    client = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client(
        name, message_decode_policy=BinaryBase64DecodePolicy()
    )
    return [json.loads(m.content) for m in client.peek_messages(max_messages=32)]


def enqueue(azurite: Azurite, *args: str) -> Run:
    result = CliRunner().invoke(
        cli,
        ["enqueue", "--queue", TASK_QUEUE, *args],
        env={"COLUMNS": COLUMNS, "AzureWebJobsStorage": azurite.connection_string},
        catch_exceptions=False,
    )
    return Run(result.exit_code, result.stdout, result.stderr)


def test_enqueue_puts_the_request_on_the_queue_and_prints_the_reply(
    queue_host: HostProcess, azurite_queue: Azurite, images: Path
) -> None:
    replies = f"cli-replies-{uuid.uuid4().hex[:6]}"
    run = enqueue(azurite_queue, str(images / "shot0.png"), "--reply-to", replies, "--wait", "90", "--task-id", "cli-1")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert "shot0.png" in run.stdout and "task cli-1 · Completed" in run.stdout
    assert replies_on(azurite_queue, replies) == []  # the reply was taken off the queue


def test_enqueue_refuses_a_request_too_large_for_a_message(azurite_queue: Azurite, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(range(256)) * 300)
    run = enqueue(azurite_queue, str(big))
    assert run.exit_code == 2 and "over the 49152 a queue message holds" in run.stderr
    assert "--blob" in run.stderr


def test_wait_needs_a_reply_queue(azurite_queue: Azurite, images: Path) -> None:
    run = enqueue(azurite_queue, str(images), "--wait", "5")
    assert run.exit_code == 2 and "--wait needs --reply-to QUEUE" in run.stderr


def test_submit_with_a_session_follows_queued_tasks_and_replies_come_in_order(
    queue_host: HostProcess, azurite_queue: Azurite, images: Path
) -> None:
    replies = f"cli-session-{uuid.uuid4().hex[:6]}"
    session = f"cli-{uuid.uuid4().hex[:6]}"
    run = Classify(queue_host.base_url)(
        "submit", str(images), "--batch", "1", "--session", session, "--reply-to", replies, "--json"
    )
    assert run.exit_code == 0, run.stdout + run.stderr
    statuses = json.loads(run.stdout)
    assert [s["runtimeStatus"] for s in statuses] == ["Completed"] * 3
    delivered = replies_on(azurite_queue, replies)
    assert [d["task_id"] for d in delivered] == [s["instanceId"] for s in statuses]
    assert all(d["session"] == session for d in delivered)
