"""Queue-triggered starter: a message with the JSON of ``POST /api/tasks`` starts the same task.

The message may also carry ``task_id``, ``session`` and ``reply_to``; it is validated by the same code as
the HTTP body. A start is idempotent either way: without a ``task_id`` the instance id is
``queue@<message id>``, and the queue keeps a message's id across its redeliveries, so a message
redelivered after a crash (delivery is at least once) finds the task its first delivery started; ``@`` is
in no client's ``task_id``, so the two kinds of id never meet. The queue is
``TASK_QUEUE_NAME`` on the host's own storage connection (``AzureWebJobsStorage``; on Azure its
identity-based form, ``AzureWebJobsStorage__queueServiceUri``).

Poison messages: one that can never start a task (not JSON, failing validation) is written by this
function to ``<queue>-poison`` as an envelope with the error and the original text, and the function
returns, so the trigger deletes it: ``maxDequeueCount`` more tries would give the same answer, and the
consumer of the poison queue learns why. A failure that may pass (blob storage, the durable backend, a
session that does not answer) raises instead, so the trigger makes the message visible again and, after
``maxDequeueCount`` attempts, moves the original message to ``<queue>-poison`` itself, as Azure does.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from api.starter import TaskIdTakenError, start_task
from api.validation import RequestError, TaskSubmission, parse_json_submission
from messaging.queues import MessageTooLargeError, encode, send, shared_service
from settings import get_settings, task_queue_name

bp = df.Blueprint()
log = logging.getLogger(__name__)

#: Characters of the error and of the field it names kept in a poison envelope: both may quote the message
#: (an unknown field's 40,000-character name), and the message itself is what the envelope is for.
POISON_REASON_CHARS = 1024
#: The instance id of a message without ``task_id`` is this prefix and the message's id.
MESSAGE_TASK_PREFIX = "queue@"


def with_message_task_id(submission: TaskSubmission, msg: func.QueueMessage) -> TaskSubmission:
    """The submission with ``queue@<message id>`` as its task id unless the message named one."""
    if submission.routing.task_id or not msg.id:
        return submission  # (a trigger always gives the id; only a message built by hand lacks one)
    return replace(submission, routing=replace(submission.routing, task_id=f"{MESSAGE_TASK_PREFIX}{msg.id}"))


def poison_envelope(msg: func.QueueMessage, body: bytes, error: RequestError) -> bytes:
    """The error, where the message came from, and its text: the longest start of it that fits.

    What fits is counted in bytes of JSON, not in characters: JSON writes a non-ASCII or control character
    (or the replacement of an invalid UTF-8 byte) as six bytes, so a 48 KB message can take twice that.
    """
    text = body.decode("utf-8", errors="replace")
    reason = {
        key: value if len(value) <= POISON_REASON_CHARS else f"{value[:POISON_REASON_CHARS]}..."
        for key, value in error.to_json().items()
    }
    envelope: dict[str, Any] = {
        **reason,
        "message_id": msg.id,
        "dequeue_count": msg.dequeue_count,
        "inserted_at": msg.insertion_time.isoformat() if msg.insertion_time else None,
        "rejected_at": datetime.now(UTC).isoformat(),
        "message": text,
    }
    try:
        return encode(envelope)
    except MessageTooLargeError:
        pass
    fits, too_long = 0, len(text)  # the longest prefix that fits, by bisection (a few dozen encodings at most)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        try:
            encode({**envelope, "message": text[:middle], "message_truncated": True})
            fits = middle
        except MessageTooLargeError:
            too_long = middle
    return encode({**envelope, "message": text[:fits], "message_truncated": True})


def reject(msg: func.QueueMessage, body: bytes, error: RequestError) -> None:
    poison = f"{get_settings().task_queue_name}-poison"
    send(shared_service(), poison, poison_envelope(msg, body, error))
    log.warning("queue message %s rejected to %s: %s", msg.id, poison, error.message)


@bp.queue_trigger(arg_name="msg", queue_name=task_queue_name(), connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def start_from_queue(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    body = msg.get_body()
    try:
        submission = parse_json_submission(body, get_settings())
    except RequestError as error:
        await asyncio.to_thread(reject, msg, body, error)
        return
    try:
        started = await start_task(client, with_message_task_id(submission, msg))
    except TaskIdTakenError as taken:  # refused as a bad request is: to the poison queue, with the reason
        await asyncio.to_thread(reject, msg, body, RequestError(str(taken), "task_id"))
        return
    log.info(
        "queue message %s: task %s %s",
        msg.id,
        started.instance_id,
        "existed already"
        if started.duplicate
        else f"accepted (session {started.session_instance_id})"
        if started.session_instance_id
        else "started",
    )
