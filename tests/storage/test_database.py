"""Engines (cache, pool, SQLite pragmas) and schema creation, on real SQLite files."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from storage.database import (
    DEFAULT_DATABASE_URL,
    engine_options,
    ensure_schema,
    get_engine,
)
from storage.models import Base

pytestmark = pytest.mark.unit


def test_one_engine_per_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with ThreadPoolExecutor(max_workers=16) as pool:
        engines = list(pool.map(lambda _: get_engine(url), range(64)))
    assert all(engine is engines[0] for engine in engines)
    assert get_engine(f"sqlite:///{tmp_path / 'b.db'}") is not engines[0]


def test_pool_settings(engine: Engine) -> None:
    pool = engine.pool
    assert type(pool).__name__ == "QueuePool"
    assert pool.size() == 8
    assert pool._max_overflow == 24  # type: ignore[attr-defined]
    assert pool._pre_ping is True  # type: ignore[attr-defined]
    assert pool._recycle == 1800  # type: ignore[attr-defined]


def test_pool_allows_32_concurrent_connections(engine: Engine) -> None:
    with ExitStack() as stack:
        connections = [stack.enter_context(engine.connect()) for _ in range(32)]
        assert [c.scalar(text("SELECT 1")) for c in connections] == [1] * 32
        assert engine.pool.overflow() == 24  # type: ignore[attr-defined]


def test_sqlite_pragmas(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.scalar(text("PRAGMA journal_mode")) == "wal"
        assert connection.scalar(text("PRAGMA busy_timeout")) == 30_000
        assert connection.scalar(text("PRAGMA foreign_keys")) == 1
        assert connection.scalar(text("PRAGMA synchronous")) == 1  # NORMAL, as the task hub


def test_sqlite_connections_cross_threads(engine: Engine) -> None:
    """check_same_thread=False: a pooled connection is reused by whichever thread checks it out."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: _select(engine, i), range(200)))
    assert results == list(range(200))


def _select(engine: Engine, value: int) -> int:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT :v"), {"v": value})


def test_default_url_creates_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = get_engine(DEFAULT_DATABASE_URL)
    ensure_schema(engine)
    assert (tmp_path / ".localdata" / "results.db").is_file()


def test_in_memory_sqlite_is_refused() -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ValueError, match="in-memory"):
            get_engine(url)


def test_mssql_options() -> None:
    url = "mssql+pyodbc://user:pw@server.database.windows.net/db?driver=ODBC+Driver+18+for+SQL+Server"
    options = engine_options(url)
    assert options["fast_executemany"] is True
    assert (options["pool_size"], options["max_overflow"], options["pool_pre_ping"]) == (8, 24, True)
    assert "connect_args" not in options


def test_mssql_engine_uses_fast_executemany() -> None:
    try:
        import pyodbc  # noqa: F401
    except ImportError as error:  # pyodbc needs the unixODBC shared library
        pytest.skip(f"pyodbc cannot be imported here: {error}")
    engine = get_engine("mssql+pyodbc://user:pw@localhost/db?driver=ODBC+Driver+18+for+SQL+Server")
    assert engine.dialect.fast_executemany is True  # type: ignore[attr-defined]
    assert engine.pool.size() == 8


def test_ensure_schema_is_idempotent(engine: Engine) -> None:
    ensure_schema(engine)
    ensure_schema(engine)
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == {"InferenceTasks", "InferenceResults"}
    assert [ix["name"] for ix in inspector.get_indexes("InferenceResults")] == ["IX_InferenceResults_TaskID"]


def test_ensure_schema_from_threads(database_url: str) -> None:
    engine = get_engine(database_url)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: ensure_schema(engine), range(16)))
    assert set(inspect(engine).get_table_names()) == set(Base.metadata.tables)


def _ensure_schema_in_process(url: str) -> list[str]:
    engine = get_engine(url)
    ensure_schema(engine)
    return sorted(inspect(engine).get_table_names())


@pytest.mark.slow
def test_ensure_schema_from_processes(database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        tables = list(pool.map(_ensure_schema_in_process, [database_url] * 8))
    assert tables == [sorted(Base.metadata.tables)] * 8
