"""Delivering a finished task's outcome to its ``reply_to``: a storage queue, or a signed callback URL.

Failures that another attempt may cure (the network, the storage service, a callback answering 408, 429
or 5xx) raise, so the orchestration's retry policy tries again and each attempt is in its history.
Failures that will not change (a 4xx answer, a URL no longer allowed, callbacks switched off) return
``delivered: false`` with the reason at once.

The document is the orchestration's output. A queue message holds 48 KiB of JSON (64 KiB in base64), so
a larger output goes as a summary without its ``images`` (``images_omitted`` says how many): the whole
output stays at the task's ``statusQueryGetUri`` and ``GET /api/tasks/{id}``.

A callback is a ``POST`` of the JSON body, signed with ``CALLBACK_SIGNING_SECRET`` (HMAC-SHA256 in
``X-Classifier-Signature: sha256=<hex>``), to the address the URL policy checked: the host name is resolved
once and that address is connected to, redirects are not followed, and ``URL_FETCH_TIMEOUT_SECONDS``
bounds the whole exchange.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import azure.durable_functions as df
from urllib3.exceptions import HTTPError

from activities.sources import Deadline, checked_connection, resolve_address
from contracts import DELIVER_ACTIVITY, Delivery, DeliveryOutcome
from messaging.queues import MessageTooLargeError, encode, send, shared_service
from messaging.replies import ReplyError, ReplyKind, check_callback_url, check_queue_name, reply_kind
from messaging.signing import signed_headers
from settings import Settings, get_settings

bp = df.Blueprint()

#: Answers worth another attempt: the receiver is busy or broken for now.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
#: Bytes of a callback's answer read (and ignored) before the connection is closed.
_ANSWER_LIMIT = 64 * 1024


def queue_document(document: dict[str, Any]) -> bytes:
    """The output as a message, or its summary without the images when the output does not fit."""
    try:
        return encode(document)
    except MessageTooLargeError:
        images = document.get("images") or []
        summary = {key: value for key, value in document.items() if key != "images"}
        return encode({**summary, "images_omitted": len(images)})


def deliver_to_queue(name: str, document: dict[str, Any], settings: Settings) -> DeliveryOutcome:
    """Send the output; a queue that may not be used or a summary that cannot fit will not change on a retry."""
    try:
        check_queue_name(name, settings)
        data = queue_document(document)
    except (ReplyError, MessageTooLargeError) as exc:
        return DeliveryOutcome(delivered=False, target=f"queue {name}", error=str(exc))
    send(shared_service(), name, data)
    return DeliveryOutcome(delivered=True, target=f"queue {name}")


def post_callback(url: str, document: dict[str, Any], settings: Settings) -> DeliveryOutcome:
    """POST the signed body; raises for an outcome worth retrying, returns the others."""
    try:
        checked = check_callback_url(url, settings)
    except ReplyError as exc:
        return DeliveryOutcome(delivered=False, target=url, error=str(exc))
    body = json.dumps(document, separators=(",", ":")).encode()
    headers = {
        "Host": checked.host_header,
        "Content-Type": "application/json",
        **signed_headers(body, settings.callback_signing_secret),
        "X-Classifier-Task": str(document.get("task_id", "")),
    }
    budget = settings.url_fetch_timeout_seconds
    try:
        address = resolve_address(checked)
    except OSError as exc:  # DNS may answer on a later attempt
        raise ConnectionError(f"callback {url} failed: {exc}") from None
    connection = checked_connection(checked, address, budget)
    try:
        with Deadline(budget) as deadline:
            try:
                connection.connect()
                deadline.watch(connection.sock)
                # not preloaded: the answer is read only up to _ANSWER_LIMIT
                connection.request("POST", checked.target, body=body, headers=headers, preload_content=False)
                response = connection.getresponse()
            except (OSError, HTTPError) as exc:
                if deadline.expired.is_set():
                    raise TimeoutError(f"callback {url} took longer than {budget:g} s") from None
                raise ConnectionError(f"callback {url} failed: {exc}") from None
            # The status line decides: a receiver that answered 2xx has the callback, whatever happens to the
            # rest of its answer (read only to free the connection); retrying would deliver it twice.
            with contextlib.suppress(OSError, HTTPError):
                response.read(_ANSWER_LIMIT)
    finally:
        connection.close()
    if 200 <= response.status < 300:
        return DeliveryOutcome(delivered=True, target=url)
    if response.status >= 500 or response.status in RETRYABLE_STATUSES:
        raise ConnectionError(f"callback {url} answered HTTP {response.status}")
    return DeliveryOutcome(delivered=False, target=url, error=f"callback {url} answered HTTP {response.status}")


def deliver(delivery: Delivery, settings: Settings) -> DeliveryOutcome:
    if reply_kind(delivery.reply_to) is ReplyKind.CALLBACK:
        return post_callback(delivery.reply_to, delivery.document, settings)
    return deliver_to_queue(delivery.reply_to, delivery.document, settings)


@bp.activity_trigger(input_name="payload", activity=DELIVER_ACTIVITY)
def deliver_result(payload: dict) -> dict:  # type: ignore[type-arg]  # Azure's worker refuses dict[str, Any]
    return deliver(Delivery.from_json(payload), get_settings()).to_json()
