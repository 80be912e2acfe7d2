"""Writing and reading a task's results: ``TaskRecord`` in, ``TaskRecord`` out.

The persist activity may run more than once for the same orchestration (replay, retry, a second
worker), so ``save_task`` is an upsert keyed by the instance id: the task row is updated in place
and its result rows are replaced, all in one transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from contracts import Prediction, ResultRecord, TaskRecord, from_legacy_model_name, to_legacy_model_name
from storage.database import write_session
from storage.models import Base, InferenceResult, InferenceTask, fit_nvarchar

# One retry settles an insert race; the third attempt covers a delete racing the retry.
_SAVE_ATTEMPTS = 3

#: The TaskID column is INT on SQL Server; a larger number is no TaskID (and overflows the driver).
MAX_TASK_ID = 2**31 - 1
#: The InstanceID column's length.
MAX_INSTANCE_ID_LENGTH = 100


@dataclass(frozen=True)
class StoredTask:
    """A saved task: the database's ``TaskID`` and the record as it was saved."""

    task_id: int
    record: TaskRecord


def save_task(engine: Engine, record: TaskRecord) -> int:
    """Insert or update the task ``record.instance_id`` with its results; returns its TaskID.

    When two writers insert the same new task at once, the unique constraint on InstanceID
    rejects the second one; its transaction is rolled back and retried, and then it updates.
    """
    for _ in range(_SAVE_ATTEMPTS - 1):
        try:
            return _save_once(engine, record)
        except IntegrityError:
            pass  # lost an insert race: the retry finds the winner's row and updates it
    return _save_once(engine, record)


def _save_once(engine: Engine, record: TaskRecord) -> int:
    with write_session(engine) as session:
        return _save(session, record)


def _save(session: Session, record: TaskRecord) -> int:
    # Core statements on the session's connection: the ORM's bulk-update and bulk-insert paths took 0.5 ms
    # of a 1.8 ms save on SQLite
    connection = session.connection()
    tasks, results = (Base.metadata.tables[entity.__tablename__] for entity in (InferenceTask, InferenceResult))
    values = _by_column(InferenceTask, _task_values(record))
    # Update first: it is the replay case, and on SQL Server it locks the row against a
    # concurrent writer until commit.
    updated = connection.execute(
        update(tasks).where(tasks.c.InstanceID == record.instance_id).values(values).returning(tasks.c.TaskID)
    ).scalar()
    if updated is None:
        task_id: int = connection.execute(
            insert(tasks).values({tasks.c.InstanceID.key: record.instance_id, **values}).returning(tasks.c.TaskID)
        ).scalar_one()
    else:
        task_id = updated
        connection.execute(delete(results).where(results.c.TaskID == task_id))
    if record.results:
        rows = [_by_column(InferenceResult, _result_values(task_id, result)) for result in record.results]
        connection.execute(insert(results), rows)
    return task_id


def _by_column(entity: type[Base], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` keyed by the table's column names instead of the entity's attribute names, each string
    fitted to its column's length.

    SQL Server refuses a string longer than its column ("String or binary data would be truncated"), counted
    in UTF-16 units, which would fail the whole save; SQLite stores it whole. The weights label of a checkpoint
    names its path and can outgrow ``Weights NVARCHAR(200)``: the middle goes, the start (the kind) and the end
    (the digest and the transforms) stay. The orchestration's output keeps the whole label.
    """
    mapped = entity.__mapper__.columns
    row = {}
    for name, value in values.items():
        column = mapped[name]
        limit = getattr(column.type, "length", None)
        if isinstance(value, str) and limit is not None:
            value = fit_nvarchar(value, limit)
        row[column.key] = value
    return row


def load_task(engine: Engine, ref: str) -> StoredTask | None:
    """The task with TaskID ``ref`` when ``ref`` is all digits, else with instance id ``ref``.

    An all-digit ``ref`` that is no TaskID is still tried as an instance id, since callers may
    choose their own instance ids. Results come back ordered by (ImageIndex, ModelType).
    """
    with Session(engine) as session:
        query = select(InferenceTask).options(selectinload(InferenceTask.results))
        task = None
        if len(ref) > MAX_INSTANCE_ID_LENGTH:  # cannot match a row: no query for it
            return None
        if ref.isascii() and ref.isdigit() and int(ref) <= MAX_TASK_ID:
            task = session.scalar(query.where(InferenceTask.task_id == int(ref)))
        if task is None:
            task = session.scalar(query.where(InferenceTask.instance_id == ref))
        if task is None:
            return None
        return StoredTask(task_id=task.task_id, record=_task_record(task))


def stored_task(engine: Engine, instance_id: str) -> tuple[int, str] | None:
    """The TaskID and submission time (ISO 8601) of the task saved under ``instance_id``, without its results."""
    with engine.connect() as connection:
        row = connection.execute(
            select(InferenceTask.task_id, InferenceTask.submitted_at).where(InferenceTask.instance_id == instance_id)
        ).first()
    if row is None:
        return None
    task_id, submitted_at = row
    return task_id, submitted_at.isoformat()


def _task_values(record: TaskRecord) -> dict[str, Any]:
    """Columns of ``InferenceTasks`` except the keys (TaskID, InstanceID)."""
    return {
        "model_type": ",".join(to_legacy_model_name(model) for model in record.models),
        "status": record.status,
        "submitted_at": _parse_time(record.submitted_at),
        "processing_started_at": _parse_time(record.processing_started_at),
        "processing_finished_at": _parse_time(record.processing_finished_at),
        "completed_at": _parse_time(record.completed_at),
        "image_count": record.image_count,
        "error": record.error,
    }


def _result_values(task_id: int, result: ResultRecord) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "image_index": result.image_index,
        "image_name": result.image_name,
        "model_type": to_legacy_model_name(result.model),
        "weights": result.weights,
        "label": result.label,
        "class_index": result.class_index,
        "confidence": result.confidence,
        "top_k_json": json.dumps([prediction.to_json() for prediction in result.top_k]),
        "started_at": _parse_time(result.started_at),
        "finished_at": _parse_time(result.finished_at),
        "inference_ms": result.inference_ms,
        "error": result.error,
    }


def _task_record(task: InferenceTask) -> TaskRecord:
    return TaskRecord(
        instance_id=task.instance_id,
        models=[from_legacy_model_name(model) for model in task.model_type.split(",") if model],
        status=task.status,
        submitted_at=_format_time(task.submitted_at),
        processing_started_at=_format_time(task.processing_started_at),
        processing_finished_at=_format_time(task.processing_finished_at),
        completed_at=_format_time(task.completed_at),
        image_count=task.image_count,
        error=task.error,
        results=[_result_record(result) for result in task.results],
    )


def _result_record(result: InferenceResult) -> ResultRecord:
    return ResultRecord(
        image_index=result.image_index,
        image_name=result.image_name,
        model=from_legacy_model_name(result.model_type),
        weights=result.weights,
        label=result.label,
        class_index=result.class_index,
        confidence=result.confidence,
        top_k=[Prediction.from_json(item) for item in json.loads(result.top_k_json)],
        started_at=_format_time(result.started_at),
        finished_at=_format_time(result.finished_at),
        inference_ms=result.inference_ms,
        error=result.error,
    )


@overload
def _parse_time(value: str) -> datetime: ...
@overload
def _parse_time(value: None) -> None: ...
def _parse_time(value: str | None) -> datetime | None:
    """ISO-8601 to an aware UTC datetime; "Z" and any offset are accepted, naive means UTC."""
    if value is None:
        return None
    if value.endswith(("Z", "z")):  # fromisoformat() accepts "Z" but not "z"
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@overload
def _format_time(value: datetime) -> str: ...
@overload
def _format_time(value: None) -> None: ...
def _format_time(value: datetime | None) -> str | None:
    """The canonical form, as ``datetime.now(timezone.utc).isoformat()`` writes it."""
    return None if value is None else value.astimezone(UTC).isoformat()
