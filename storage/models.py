"""The two result tables, under the table and column names the existing SQL reports query.

Datetimes are stored as naive UTC (``DATETIME2`` on Azure SQL, ISO text on SQLite): every value is
converted to UTC on the way in and comes back as an aware UTC datetime, so neither the server's
time zone nor the database's lack of one can shift a timestamp.

Long text columns are ``Unicode()`` without a length: NVARCHAR(max) on SQL Server, where
``UnicodeText`` would compile to the deprecated NTEXT.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    TypeDecorator,
    Unicode,
    UniqueConstraint,
)
from sqlalchemy.dialects import mssql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine


def nvarchar_units(text: str) -> int:
    """The length SQL Server's ``NVARCHAR(n)`` checks: UTF-16 code units, two for a character beyond the Basic
    Multilingual Plane (most emoji). ``len()`` counts one, so a string of ``n`` such characters passes a
    ``len()`` check and fails the save ("String or binary data would be truncated"); SQLite stores it whole."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def fit_nvarchar(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` UTF-16 units by cutting its middle: the start and the end stay, an
    ellipsis marks the cut."""
    if nvarchar_units(text) <= limit:
        return text
    head_budget = (limit - 1) // 3
    head: list[str] = []
    used = 0
    for char in text:
        units = nvarchar_units(char)
        if used + units > head_budget:
            break
        head.append(char)
        used += units
    tail: list[str] = []
    used += 1  # the ellipsis
    for char in reversed(text):
        units = nvarchar_units(char)
        if used + units > limit:
            break
        tail.append(char)
        used += units
    return "".join(head) + "…" + "".join(reversed(tail))


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, naive UTC in the database, aware UTC out.

    Naive input is taken to be UTC already. On SQL Server the column is ``DATETIME2`` because
    ``DATETIME`` rounds to 3.33 ms and would not give back the timestamps that were stored.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[datetime]:
        if dialect.name == "mssql":
            return dialect.type_descriptor(mssql.DATETIME2())  # type: ignore[no-untyped-call]  # unannotated __init__
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    # Named constraints, so the T-SQL script and every database agree on names that a migration
    # can refer to (SQL Server would otherwise invent random ones per database).
    metadata = MetaData(
        naming_convention={
            "pk": "PK_%(table_name)s",
            "fk": "FK_%(table_name)s_%(column_0_name)s",
            "uq": "UQ_%(table_name)s_%(column_0_N_name)s",
            "ix": "IX_%(table_name)s_%(column_0_N_name)s",
        }
    )


class InferenceTask(Base):
    """One classification request (one orchestration instance)."""

    __tablename__ = "InferenceTasks"
    __table_args__ = (UniqueConstraint("InstanceID"),)

    task_id: Mapped[int] = mapped_column("TaskID", Integer, primary_key=True, autoincrement=True)
    # Binary collation on SQL Server, whose default one ignores case: instance ids "A1" and "a1" are two tasks.
    instance_id: Mapped[str] = mapped_column(
        "InstanceID", Unicode(100).with_variant(Unicode(100, collation="Latin1_General_100_BIN2"), "mssql")
    )
    # Requested models, legacy spelling, comma separated: "ResNet18,ResNet50".
    model_type: Mapped[str] = mapped_column("ModelType", Unicode(200))
    status: Mapped[str] = mapped_column("Status", Unicode(32))
    submitted_at: Mapped[datetime] = mapped_column("TimestampF1", UtcDateTime())
    processing_started_at: Mapped[datetime | None] = mapped_column("ProcessingStartedAt", UtcDateTime())
    processing_finished_at: Mapped[datetime | None] = mapped_column("ProcessingFinishedAt", UtcDateTime())
    completed_at: Mapped[datetime] = mapped_column("CompletedAt", UtcDateTime())
    image_count: Mapped[int] = mapped_column("ImageCount", Integer)
    error: Mapped[str | None] = mapped_column("Error", Unicode())

    results: Mapped[list[InferenceResult]] = relationship(
        back_populates="task",
        order_by="(InferenceResult.image_index, InferenceResult.model_type)",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class InferenceResult(Base):
    """One image through one model: its top-1 in columns, the whole top-k as JSON."""

    __tablename__ = "InferenceResults"
    __table_args__ = (
        UniqueConstraint("TaskID", "ImageIndex", "ModelType"),
        Index(None, "TaskID"),
    )

    result_id: Mapped[int] = mapped_column("ResultID", Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column("TaskID", ForeignKey("InferenceTasks.TaskID", ondelete="CASCADE"))
    image_index: Mapped[int] = mapped_column("ImageIndex", Integer)
    image_name: Mapped[str] = mapped_column("ImageName", Unicode(2048))
    model_type: Mapped[str] = mapped_column("ModelType", Unicode(50))  # legacy spelling
    weights: Mapped[str | None] = mapped_column("Weights", Unicode(200))
    label: Mapped[str | None] = mapped_column("Label", Unicode(200))
    class_index: Mapped[int | None] = mapped_column("ClassIndex", Integer)
    confidence: Mapped[float | None] = mapped_column("Confidence", Float)
    # JSON list of {"label", "class_index", "probability"}, best first.
    top_k_json: Mapped[str] = mapped_column("TopKJson", Unicode())
    started_at: Mapped[datetime | None] = mapped_column("F2_StartTime", UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column("F2_EndTime", UtcDateTime())
    inference_ms: Mapped[float | None] = mapped_column("InferenceMs", Float)
    error: Mapped[str | None] = mapped_column("Error", Unicode())

    task: Mapped[InferenceTask] = relationship(back_populates="results")
