"""A queue trigger's ``connection``: the app settings that say which storage account to poll.

As in the Storage Queues extension 5.x: the ``connection`` property names an app setting (empty:
``AzureWebJobsStorage``), also looked up with the ``AzureWebJobs`` prefix; its value is a
connection string (``UseDevelopmentStorage=true`` is Azurite on 127.0.0.1:10001). Without such a
setting, ``<connection>__queueServiceUri`` (or ``__serviceUri``, or ``__accountName``) selects an
identity-based connection with ``__credential=managedidentity`` and ``__clientId`` honoured.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.storage.queue.aio import QueueServiceClient

DEFAULT_CONNECTION = "AzureWebJobsStorage"
log = logging.getLogger("durable_host")
# The SDK logs every request at INFO; the Functions host keeps its polling out of the console.
_SDK_LOG = logging.getLogger("durable_host.queue_sdk")
_SDK_LOG.setLevel(logging.WARNING)
# A few quick retries (1 s, then 3 s) instead of the SDK's 15 s, 60 s, 240 s: an unreachable account
# is reported within seconds and polling goes on with the listener's own back-off.
_CLIENT_OPTIONS: dict[str, Any] = {"logger": _SDK_LOG, "retry_total": 2, "initial_backoff": 1, "increment_base": 2}


@dataclass(frozen=True)
class QueueConnection:
    """Where a connection points; ``describe`` names it without secrets, for logs and the listing."""

    setting: str
    connection_string: str | None = None
    service_uri: str | None = None
    credential: str | None = None  # ``__credential``; only ``managedidentity`` changes anything
    client_id: str | None = None

    def describe(self) -> str:
        if self.service_uri is not None:
            return f"{self.service_uri} (identity)"
        probe = QueueServiceClient.from_connection_string(self.connection_string or "")
        return probe.url.rstrip("/")

    def client(self, credential: AsyncTokenCredential | None = None) -> QueueServiceClient:
        """An async service client: by the connection string's key, else by ``credential`` (``identity``)."""
        if self.connection_string is not None:
            return QueueServiceClient.from_connection_string(self.connection_string, **_CLIENT_OPTIONS)
        assert self.service_uri is not None  # resolve_connection sets one of the two
        return QueueServiceClient(self.service_uri, credential=credential, **_CLIENT_OPTIONS)

    def identity(self) -> AsyncTokenCredential | None:
        """An identity-based connection's ``azure-identity`` credential, as on Azure; whoever asks closes it."""
        if self.service_uri is None:
            return None
        from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

        if (self.credential or "").lower() == "managedidentity":
            return ManagedIdentityCredential(client_id=self.client_id)
        return DefaultAzureCredential(managed_identity_client_id=self.client_id)


class QueueServices:
    """One service client per connection, shared by every function that names it, closed at stop.

    The extension keeps one ``QueueServiceClient`` per connection name too: its HTTP connections
    (and, for identity, its token cache) serve all the connection's queues. Closing a client does
    not close its credential, whose own HTTP session (to the token endpoint) is closed here too.
    """

    def __init__(self) -> None:
        self._clients: dict[QueueConnection, QueueServiceClient] = {}
        self._credentials: list[AsyncTokenCredential] = []

    def client(self, connection: QueueConnection) -> QueueServiceClient:
        if connection not in self._clients:
            credential = connection.identity()
            if credential is not None:
                self._credentials.append(credential)
            self._clients[connection] = connection.client(credential)
        return self._clients[connection]

    async def close(self) -> None:
        """Close every client and credential; one that fails is logged and the others still close."""
        clients, self._clients = list(self._clients.values()), {}
        credentials, self._credentials = self._credentials, []
        results = await asyncio.gather(
            *(client.close() for client in clients),
            *(credential.close() for credential in credentials),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("Closing a queue connection failed: %s: %s", type(result).__name__, result)


def resolve_connection(connection: str | None, environ: Mapping[str, str] = os.environ) -> QueueConnection:
    """The connection a trigger's ``connection`` property names, or ``ValueError`` saying what is missing."""
    name = connection or DEFAULT_CONNECTION
    for setting in (name, f"AzureWebJobs{name}"):
        value = environ.get(setting, "").strip()
        if value:
            try:
                QueueServiceClient.from_connection_string(value)
            except ValueError as exc:
                raise ValueError(f"app setting '{setting}' is not a storage connection string: {exc}") from None
            return QueueConnection(setting=setting, connection_string=value)
    section = {key.split("__", 1)[1].lower(): value for key, value in environ.items() if key.startswith(f"{name}__")}
    uri = section.get("queueserviceuri") or section.get("serviceuri")
    if not uri and section.get("accountname"):
        uri = f"https://{section['accountname']}.queue.core.windows.net"
    if uri:
        if urlsplit(uri).scheme not in ("http", "https"):
            raise ValueError(f"app setting '{name}__queueServiceUri' is not an http(s) URL: {uri}")
        return QueueConnection(
            setting=name,
            service_uri=uri.rstrip("/"),
            credential=section.get("credential"),
            client_id=section.get("clientid"),
        )
    raise ValueError(
        f"Storage account connection string '{name}' does not exist: set the app setting '{name}' "
        f"(a connection string) or '{name}__queueServiceUri' (identity-based)"
    )
