"""The process's one Entra credential, for every identity-based connection: blobs, queues and Azure SQL.

``DefaultAzureCredential`` keeps its tokens and its managed-identity client in the instance, so one
instance per identity is shared instead of one per connection (three asked the identity endpoint for
tokens separately before). It is created on first use, and ``azure.identity`` (with msal) is imported
then: an app whose connections are all connection strings or local never loads it.

The identity is the managed identity's client id: ``AZURE_CLIENT_ID`` (what ``DefaultAzureCredential``
reads itself), unless a connection names its own (``AzureWebJobsStorage__clientId``). ``azd up`` sets both
to the app's one identity, so the app holds one credential.
"""

from __future__ import annotations

import os
import threading
from functools import cache

from azure.core.credentials import TokenCredential

_lock = threading.Lock()


def shared_credential(client_id: str = "") -> TokenCredential:
    """The credential for the managed identity ``client_id`` (empty: ``AZURE_CLIENT_ID``), made once."""
    with _lock:  # one instance even when two threads open their first connections at once
        return credential_for(client_id or os.environ.get("AZURE_CLIENT_ID", ""))


@cache
def credential_for(client_id: str) -> TokenCredential:
    """A new ``DefaultAzureCredential``; ``credential_for.cache_clear()`` forgets them (a test's new environment)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id or None)
