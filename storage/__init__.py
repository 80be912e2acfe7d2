"""Storage layer: blobs (Azure Blob Storage, Azurite or a local folder) and results in SQL.

Knows azure-storage-blob and SQLAlchemy only; callers hand in and get back the dataclasses of
``contracts``. Import from here rather than from the submodules.
"""

from storage.blobs import (
    AzureBlobStore,
    BlobNotFoundError,
    BlobStore,
    InvalidBlobNameError,
    LocalFolderBlobStore,
    open_blob_store,
)
from storage.database import DEFAULT_DATABASE_URL, ensure_schema, get_engine
from storage.results import StoredTask, load_task, save_task

__all__ = [
    "DEFAULT_DATABASE_URL",
    "AzureBlobStore",
    "BlobNotFoundError",
    "BlobStore",
    "InvalidBlobNameError",
    "LocalFolderBlobStore",
    "StoredTask",
    "ensure_schema",
    "get_engine",
    "load_task",
    "open_blob_store",
    "save_task",
]
