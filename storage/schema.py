"""The Azure SQL DDL, compiled from the models so ``database_schema.sql`` cannot drift from them.

Regenerate the script after changing ``storage/models.py``::

    python -m storage.schema > database_schema.sql
"""

from __future__ import annotations

from sqlalchemy.dialects import mssql
from sqlalchemy.schema import CreateIndex, CreateTable

from storage.models import Base

HEADER = """\
-- Azure SQL schema for the ResNet classifier's results (InferenceTasks, InferenceResults).
-- GENERATED from storage/models.py by `python -m storage.schema > database_schema.sql`;
-- do not edit by hand: tests/storage/test_schema.py fails when the two differ.
-- Datetimes are naive UTC (DATETIME2). The app creates missing tables itself at start-up
-- (storage.database.ensure_schema); this script is for DBAs provisioning the database.
"""


def mssql_statements() -> list[str]:
    """CREATE TABLE and CREATE INDEX statements, parents first, as SQLAlchemy emits them."""
    dialect = mssql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves dialect __init__ unannotated
    statements = []
    for table in Base.metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    return statements


def mssql_script() -> str:
    """The whole script: header, then each statement as its own ``GO`` batch."""
    batches = []
    for statement in mssql_statements():
        text = "\n".join(line.rstrip() for line in statement.splitlines())
        batches.append(f"\n{text};\nGO\n")
    return HEADER + "".join(batches)


if __name__ == "__main__":
    print(mssql_script(), end="")
