"""database_schema.sql must be exactly the DDL SQLAlchemy compiles for the models (mssql)."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from storage.models import Base
from storage.schema import mssql_script, mssql_statements

pytestmark = pytest.mark.unit

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "database_schema.sql"


def normalise(script: str) -> list[str]:
    """Statements without comments, ``GO`` batch separators, terminators or layout."""
    lines = [line for line in script.splitlines() if not re.fullmatch(r"\s*(--.*|GO\s*)?", line, re.I)]
    statements = (" ".join(chunk.split()) for chunk in "\n".join(lines).split(";"))
    return [statement for statement in statements if statement]


def test_schema_file_matches_models() -> None:
    on_disk = SCHEMA_FILE.read_text(encoding="utf-8")
    expected = mssql_script()
    diff = "".join(
        difflib.unified_diff(
            on_disk.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            fromfile=str(SCHEMA_FILE.name),
            tofile="compiled from storage/models.py",
        )
    )
    assert normalise(on_disk) == [" ".join(s.split()) for s in mssql_statements()], (
        "database_schema.sql is out of date; regenerate it with\n"
        "    python -m storage.schema > database_schema.sql\n" + diff
    )


def test_statements_cover_every_table_and_index() -> None:
    heads = [statement.split(" (")[0] for statement in normalise(mssql_script())]
    expected = []
    for table in Base.metadata.sorted_tables:
        expected.append(f"CREATE TABLE [{table.name}]")
        expected += [f"CREATE INDEX [{index.name}] ON [{table.name}]" for index in table.indexes]
    assert heads == expected


def test_normalise_ignores_layout_comments_and_batches() -> None:
    script = "-- header\nCREATE TABLE [t] (\n\t[a] INT, \n\t[b] INT\n);\nGO\n\ngo\nCREATE INDEX [i] ON [t] ([a])"
    assert normalise(script) == ["CREATE TABLE [t] ( [a] INT, [b] INT )", "CREATE INDEX [i] ON [t] ([a])"]


def test_the_azure_types_are_the_intended_ones() -> None:
    """Guard the choices made in models.py against a silent dialect change."""
    script = mssql_script()
    assert not re.search(r"\b(NTEXT|DATETIME)\b", script)
    assert "[TopKJson] NVARCHAR(max) NOT NULL" in script
    assert "[TaskID] INTEGER NOT NULL IDENTITY" in script
    assert "CONSTRAINT [UQ_InferenceTasks_InstanceID] UNIQUE ([InstanceID])" in script
    assert "UNIQUE ([TaskID], [ImageIndex], [ModelType])" in script
    assert "CREATE INDEX [IX_InferenceResults_TaskID] ON [InferenceResults] ([TaskID])" in script
