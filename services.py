"""Per-process clients built once from settings: the blob store and the database engine.

Azure Functions reuses a worker process for many invocations, so clients that hold connection pools
are created on first use and shared by every invocation (and thread) of the process.
"""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy

from settings import get_settings
from storage.blobs import BlobStore, open_blob_store
from storage.database import ensure_schema, get_engine


@lru_cache(maxsize=1)
def blob_store() -> BlobStore:
    settings = get_settings()
    return open_blob_store(
        settings.blob_connection_string, settings.blob_local_root, account_url=settings.blob_account_url
    )


@lru_cache(maxsize=1)
def database() -> sqlalchemy.Engine:
    """The pooled engine, with the tables created if this database has none yet."""
    engine = get_engine(get_settings().sql_connection_string)
    ensure_schema(engine)
    return engine
