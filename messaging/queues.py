"""Storage queues through the Functions host's own connection (``AzureWebJobsStorage``).

Messages are base64-encoded JSON, the encoding the Functions queue trigger expects by default, so a
reply queue can itself trigger a function. A queue message holds at most 64 KiB, which base64 leaves
48 KiB of JSON: :data:`MAX_JSON_BYTES`.
"""

from __future__ import annotations

import contextlib
import json
from functools import lru_cache
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import BinaryBase64EncodePolicy, QueueClient, QueueServiceClient

from settings import Settings, get_settings
from storage.credential import shared_credential

MAX_MESSAGE_BYTES = 64 * 1024
MAX_JSON_BYTES = MAX_MESSAGE_BYTES * 3 // 4


class MessageTooLargeError(ValueError):
    """A document whose encoded message would exceed the queue's 64 KiB limit."""


def open_queue_service(settings: Settings) -> QueueServiceClient:
    """The connection string if there is one, else the service URI with the (managed) identity's credential,
    the one the blob store and Azure SQL share (:mod:`storage.credential`)."""
    if settings.queue_connection_string:
        return QueueServiceClient.from_connection_string(settings.queue_connection_string)
    if settings.queue_service_uri:
        return QueueServiceClient(settings.queue_service_uri, credential=shared_credential(settings.queue_client_id))
    raise ValueError("no storage queue connection: set AzureWebJobsStorage or AzureWebJobsStorage__queueServiceUri")


@lru_cache(maxsize=1)
def shared_service() -> QueueServiceClient:
    """The process's queue client (it holds a connection pool), built from the app settings once."""
    return open_queue_service(get_settings())


def encode(document: Any) -> bytes:
    """Compact JSON, refused when the message it becomes would not fit in a queue."""
    data = json.dumps(document, separators=(",", ":")).encode()
    if len(data) > MAX_JSON_BYTES:
        raise MessageTooLargeError(
            f"the message is {len(data)} bytes of JSON; a queue message holds {MAX_JSON_BYTES} (64 KiB in base64)"
        )
    return data


def queue_client(service: QueueServiceClient, name: str) -> QueueClient:
    return service.get_queue_client(name, message_encode_policy=BinaryBase64EncodePolicy())


def send(service: QueueServiceClient, name: str, data: bytes) -> None:
    """Put one message on ``name``, creating the queue the first time (as the Functions output binding does)."""
    client = queue_client(service, name)
    try:
        client.send_message(data)
    except ResourceNotFoundError:
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        client.send_message(data)
