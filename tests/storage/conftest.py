"""SQL fixtures for the storage tests: a fresh SQLite file per test, schema created."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from storage.database import ensure_schema, get_engine


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'results.db'}"


@pytest.fixture
def engine(database_url: str) -> Engine:
    engine = get_engine(database_url)
    ensure_schema(engine)
    return engine
