"""One Entra credential per process: the blob store, the queues and Azure SQL sign in with the same
``DefaultAzureCredential`` (its token cache and managed-identity client shared), created on first use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.identity import DefaultAzureCredential

from messaging.queues import open_queue_service
from settings import settings_from
from storage.blobs import AzureBlobStore, open_blob_store
from storage.credential import credential_for, shared_credential

pytestmark = pytest.mark.unit

CLIENT_ID = "00000000-0000-0000-0000-00000000c1d0"


@pytest.fixture(autouse=True)
def fresh_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT_ID)
    credential_for.cache_clear()
    yield
    credential_for.cache_clear()


def test_blobs_and_queues_with_the_identity_share_one_credential(tmp_path: Path) -> None:
    """azd up's settings: BLOB_ACCOUNT_URL, and the host's queues through the same identity."""
    store = open_blob_store("", tmp_path, account_url="https://stexample.blob.core.windows.net/")
    settings = settings_from(
        {
            "AzureWebJobsStorage__queueServiceUri": "https://stexample.queue.core.windows.net",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": CLIENT_ID,
        }
    )
    queues = open_queue_service(settings)
    assert isinstance(store, AzureBlobStore)
    assert isinstance(shared_credential(), DefaultAzureCredential)
    assert store._service.credential is queues.credential is shared_credential()
    store.close()
    queues.close()


def test_a_connection_that_names_another_identity_gets_that_identity_s_credential() -> None:
    other = shared_credential("11111111-1111-1111-1111-111111111111")
    assert other is not shared_credential() and other is shared_credential("11111111-1111-1111-1111-111111111111")
    assert shared_credential(CLIENT_ID) is shared_credential()  # AZURE_CLIENT_ID's identity, named or not
