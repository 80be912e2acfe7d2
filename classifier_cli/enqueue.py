"""``classify enqueue``: put a classification request on the app's task queue, optionally wait for the reply.

The message is the JSON of ``POST /api/tasks`` (plus ``task_id``, ``session``, ``reply_to``), base64-encoded
as the Functions queue trigger expects by default. A queue message holds 64 KiB, 48 KiB of JSON once
base64-encoded, so local files go inline only while they fit; larger images go by ``--blob`` (a blob the
app can read) or ``--url`` (a host the app allows). The queue service is reached with a connection string
(``AzureWebJobsStorage``, e.g. Azurite's ``UseDevelopmentStorage=true``), never through the app's HTTP API.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient, QueueServiceClient

from classifier_cli.files import InputError, find_images
from classifier_cli.render import print_output

if TYPE_CHECKING:
    from classifier_cli.main import App

#: JSON bytes that fit in one queue message once base64-encoded (64 KiB of base64).
MAX_JSON_BYTES = 64 * 1024 * 3 // 4
DEFAULT_QUEUE = "classification-requests"


def queue_client(connection_string: str, name: str) -> QueueClient:
    try:
        service = QueueServiceClient.from_connection_string(connection_string)
    except ValueError as exc:
        raise InputError(f"not a storage connection string: {exc}") from None
    return service.get_queue_client(
        name, message_encode_policy=BinaryBase64EncodePolicy(), message_decode_policy=BinaryBase64DecodePolicy()
    )


def request_message(
    paths: Sequence[Path],
    blobs: Sequence[str],
    urls: Sequence[str],
    models: Sequence[str],
    top_k: int,
    routing: dict[str, str],
) -> bytes:
    """The message body; an :class:`InputError` when there is no image or the message would not fit."""
    images: list[dict[str, str]] = [image.to_json() for image in find_images(paths)] if paths else []
    images += [{"blob": blob} for blob in blobs] + [{"url": url} for url in urls]
    if not images:
        raise InputError("give at least one image: files, --blob NAME or --url URL")
    data = json.dumps({"models": list(models), "top_k": top_k, "images": images, **routing}).encode()
    if len(data) > MAX_JSON_BYTES:
        raise InputError(
            f"the request is {len(data)} bytes of JSON, over the {MAX_JSON_BYTES} a queue message holds: "
            "send large images by --blob or --url, or use `classify submit`"
        )
    return data


def wait_for_reply(replies: QueueClient, task_id: str, timeout: float) -> dict[str, Any] | None:
    """The reply for ``task_id``, taken off the queue; other tasks' replies are left for their owners."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for message in replies.receive_messages(max_messages=32, visibility_timeout=1):
                document = json.loads(message.content)
                if isinstance(document, dict) and document.get("task_id") == task_id:
                    replies.delete_message(message)
                    return document
        except AzureError:  # the app creates the reply queue with its first reply
            pass
        time.sleep(0.5)
    return None


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--blob", "blobs", multiple=True, metavar="CONTAINER/PATH", help="An image in the app's blob storage.")
@click.option("--url", "urls", multiple=True, help="An image URL (its host must be in the app's URL_ALLOWED_HOSTS).")
@click.option("-m", "--model", "models", multiple=True, default=("resnet18",), show_default=True)
@click.option("-k", "--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--task-id", help="The task's id (default: a new one); the same id twice starts one task.")
@click.option("--session", help="Run after the session's earlier tasks, one at a time.")
@click.option("--reply-to", help="A queue name (or an allowed callback URL) that gets the outcome.")
@click.option(
    "--queue",
    "queue_name",
    envvar="TASK_QUEUE_NAME",
    default=DEFAULT_QUEUE,
    show_default=True,
    help="The app's task queue (env TASK_QUEUE_NAME).",
)
@click.option(
    "--connection-string",
    envvar="AzureWebJobsStorage",
    required=True,
    help="Storage connection string (env AzureWebJobsStorage; Azurite: UseDevelopmentStorage=true).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=None,
    help="Wait this many seconds for the reply on the --reply-to queue and print it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_obj
def enqueue(
    app: App,
    paths: Sequence[Path],
    blobs: Sequence[str],
    urls: Sequence[str],
    models: Sequence[str],
    top_k: int,
    task_id: str | None,
    session: str | None,
    reply_to: str | None,
    queue_name: str,
    connection_string: str,
    wait_s: float | None,
    as_json: bool,
) -> None:
    """Put a classification request on the app's task queue (no HTTP involved).

    PATH... are image files or folders, sent inline (base64) while the message fits in 64 KiB. The app
    validates the message; one it cannot use goes to the QUEUE-poison queue with the reason.
    """
    if wait_s is not None and (not reply_to or reply_to.startswith(("http://", "https://"))):
        raise click.UsageError("--wait needs --reply-to QUEUE")
    task_id = task_id or uuid.uuid4().hex
    routing = (
        {"task_id": task_id} | ({"session": session} if session else {}) | ({"reply_to": reply_to} if reply_to else {})
    )
    data = request_message(paths, blobs, urls, models, top_k, routing)
    tasks = queue_client(connection_string, queue_name)
    try:
        with contextlib.suppress(ResourceExistsError):  # Azurite starts empty; on Azure the queue usually exists
            tasks.create_queue()
        sent = tasks.send_message(data)
    except AzureError as exc:
        raise InputError(f"could not put the request on queue {queue_name!r}: {exc.message}") from None
    answer = {"task_id": task_id, "queue": queue_name, "message_id": sent.id}
    if wait_s is None:
        if as_json:
            app.emit_json(answer)
        else:
            app.out.print(f"task {task_id} queued on {queue_name} (message {sent.id})", highlight=False)
        return
    assert reply_to is not None
    app.err.print(f"task {task_id} queued; waiting for its reply on {reply_to}…", highlight=False)
    reply = wait_for_reply(queue_client(connection_string, reply_to), task_id, wait_s)
    if reply is None:
        raise InputError(f"no reply for task {task_id} on {reply_to} within {wait_s:g} s (it may still be running)")
    if as_json:
        app.emit_json(reply)
    else:
        print_output(app.out, reply, title=f"task {task_id} · {reply.get('status')}")
    raise SystemExit(1 if reply.get("status") != "Completed" else 0)
