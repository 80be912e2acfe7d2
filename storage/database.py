"""Engines and schema: one pooled engine per database URL per process.

Activities run in a thread pool, so the pool is sized for bursts of concurrent persists
(8 kept, up to 32 open). Azure SQL closes idle connections after about 30 minutes and fails over
without notice, hence ``pool_recycle`` below that and ``pool_pre_ping``. SQLite gets the same pool
plus WAL (readers never block the writer; commits are synced to disk at checkpoints only) and a busy
timeout (writers queue instead of failing).
Azure SQL URLs with ``authentication=ActiveDirectoryAccessToken`` sign in with an Entra token
(``storage.sql_access_token``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from storage.credential import shared_credential
from storage.models import Base
from storage.sql_access_token import install_access_token, uses_access_token, without_marker

DEFAULT_DATABASE_URL = "sqlite:///.localdata/results.db"
POOL_SIZE = 8
MAX_OVERFLOW = 24
POOL_RECYCLE_S = 1800
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Execution option read by the SQLite "begin" hook; see write_session().
_SQLITE_BEGIN = "sqlite_begin"

_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str) -> Engine:
    """The engine for ``url``, created on first use and then shared by every thread.

    The cache is keyed by process id too: a forked child must not reuse the parent's pooled
    connections, so it builds its own engine.
    """
    key = (os.getpid(), url)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = create_pooled_engine(url)
        return engine


def engine_options(url: str | URL) -> dict[str, Any]:
    """The ``create_engine`` keyword arguments used for ``url``."""
    options: dict[str, Any] = {
        "pool_size": POOL_SIZE,
        "max_overflow": MAX_OVERFLOW,
        "pool_pre_ping": True,
        "pool_recycle": POOL_RECYCLE_S,
    }
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        options["connect_args"] = {"check_same_thread": False}
    elif backend == "mssql":
        options["fast_executemany"] = True  # result rows go in one round trip, not one each
    return options


def create_pooled_engine(url: str, credential: TokenCredential | None = None) -> Engine:
    """A new engine for ``url`` (``get_engine`` keeps one per URL and process).

    An access-token URL signs in with ``credential``, by default the process's shared
    ``DefaultAzureCredential`` (:mod:`storage.credential`; SQLite and password URLs never load azure-identity).
    """
    parsed = make_url(url)
    if uses_access_token(parsed):
        parsed = without_marker(parsed)
        engine = create_engine(parsed, **engine_options(parsed))
        install_access_token(engine, credential or shared_credential())
        return engine
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or "mode=memory" in database:
            raise ValueError(
                f"{url!r}: in-memory SQLite gives every pooled connection its own empty database; "
                "use a file, e.g. sqlite:///.localdata/results.db"
            )
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **engine_options(url))
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """WAL with ``synchronous=NORMAL``, busy timeout, foreign keys, and SQLAlchemy emitting BEGIN.

    ``synchronous=NORMAL`` is the local task hub's durability (``durable_host.store``): a commit survives
    the process being killed, and only an OS crash or power cut can undo the last commits (the disk is
    synced at checkpoints, not at every commit). The price: such a crash can leave a task Completed in the
    task hub, its uploads deleted, without its rows. The gain: the persist activity's save took 2.4-2.5
    instead of 3.5-4.0 ms in a served lone task. Azure SQL, the production database, is not affected.

    The sqlite3 driver's own transaction handling starts a transaction only at the first write,
    after any reads; a read-then-write transaction then fails with "database is locked" instead
    of waiting. Emitting BEGIN ourselves lets writers ask for ``BEGIN IMMEDIATE``, which takes the
    write lock up front and honours the busy timeout.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session inside one transaction that commits on success and rolls back on error.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE`` so that concurrent writers
    (threads or processes) queue on the busy timeout; other databases ignore the option.
    """
    with Session(engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})) as session, session.begin():
        yield session


def ensure_schema(engine: Engine) -> None:
    """Create the tables and indexes that are missing; safe to call at every start-up.

    Several workers may start at once. On SQLite the check and the creation share one
    immediate transaction, so they serialise; elsewhere the loser of the race gets an
    "already exists" error, which is fine as long as the tables are there afterwards.
    """
    try:
        with write_session(engine) as session:
            Base.metadata.create_all(session.connection())
    except DBAPIError:
        missing = set(Base.metadata.tables) - set(inspect(engine).get_table_names())
        if missing:
            raise
