"""save_task / load_task on real SQLite: round trip, idempotency, races, time zones."""

from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.exc import IntegrityError

from contracts import Prediction, ResultRecord, TaskRecord, from_legacy_model_name, to_legacy_model_name
from storage.database import ensure_schema, get_engine
from storage.models import InferenceResult, InferenceTask, fit_nvarchar, nvarchar_units
from storage.results import StoredTask, load_task, save_task

pytestmark = pytest.mark.unit


def make_record(instance_id: str = "f3b0c4de9a1b4c2d8e7f6a5b4c3d2e1f", label: str = "tabby") -> TaskRecord:
    models = ["resnet18", "resnet50"]
    results = []
    for image_index, image_name in enumerate(["cat.jpg", "Hund – groß.png", "https://x.test/a?b=1"]):
        for model in models:
            if image_index == 2 and model == "resnet50":
                results.append(
                    ResultRecord(
                        image_index=image_index,
                        image_name=image_name,
                        model=model,
                        weights=None,
                        label=None,
                        class_index=None,
                        confidence=None,
                        top_k=[],
                        started_at=None,
                        finished_at=None,
                        inference_ms=None,
                        error="weights missing: resnet50",
                    )
                )
                continue
            top_k = [
                Prediction(label=f"{label}-{rank}", class_index=281 + rank, probability=0.5 / (rank + 1))
                for rank in range(5)
            ]
            results.append(
                ResultRecord(
                    image_index=image_index,
                    image_name=image_name,
                    model=model,
                    weights=f"IMAGENET1K_V1 ({model})",
                    label=top_k[0].label,
                    class_index=top_k[0].class_index,
                    confidence=top_k[0].probability,
                    top_k=top_k,
                    started_at="2025-03-04T10:00:01.250000+00:00",
                    finished_at="2025-03-04T10:00:02+00:00",
                    inference_ms=123.456789,
                )
            )
    return TaskRecord(
        instance_id=instance_id,
        models=models,
        status="CompletedWithErrors",
        submitted_at="2025-03-04T09:59:59.999999+00:00",
        processing_started_at="2025-03-04T10:00:00.000001+00:00",
        processing_finished_at="2025-03-04T10:00:03+00:00",
        completed_at="2025-03-04T10:00:04.500000+00:00",
        image_count=3,
        error="1 of 6 classifications failed",
        results=results,
    )


def row_counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        tasks = connection.scalar(select(func.count()).select_from(InferenceTask))
        results = connection.scalar(select(func.count()).select_from(InferenceResult))
    return tasks, results


def test_round_trip_by_instance_id_and_task_id(engine: Engine) -> None:
    record = make_record()
    task_id = save_task(engine, record)
    assert load_task(engine, record.instance_id) == StoredTask(task_id=task_id, record=record)
    assert load_task(engine, str(task_id)) == StoredTask(task_id=task_id, record=record)


def test_round_trip_through_json(engine: Engine) -> None:
    """What the activity receives from orchestration history is JSON, not the dataclass."""
    record = TaskRecord.from_json(make_record().to_json())
    save_task(engine, record)
    stored = load_task(engine, record.instance_id)
    assert stored is not None
    assert stored.record.to_json() == make_record().to_json()


def test_minimal_record(engine: Engine) -> None:
    record = TaskRecord(
        instance_id="empty",
        models=[],
        status="Failed",
        submitted_at="2025-01-01T00:00:00+00:00",
        processing_started_at=None,
        processing_finished_at=None,
        completed_at="2025-01-01T00:00:01+00:00",
        image_count=0,
        error="no images",
        results=[],
    )
    task_id = save_task(engine, record)
    assert load_task(engine, "empty") == StoredTask(task_id, record)


def test_legacy_spelling_in_the_database(engine: Engine) -> None:
    task_id = save_task(engine, make_record())
    with engine.connect() as connection:
        models = connection.scalar(text('SELECT "ModelType" FROM "InferenceTasks" WHERE "TaskID" = :i'), {"i": task_id})
        per_result = connection.scalars(text('SELECT DISTINCT "ModelType" FROM "InferenceResults" ORDER BY 1')).all()
        top_k = connection.scalar(
            text('SELECT "TopKJson" FROM "InferenceResults" WHERE "ImageIndex" = 0 AND "ModelType" = \'ResNet18\'')
        )
    assert models == "ResNet18,ResNet50"
    assert per_result == ["ResNet18", "ResNet50"]
    assert top_k.startswith('[{"label": "tabby-0", "class_index": 281, "probability": 0.5}')


@pytest.mark.parametrize(
    ("canonical", "legacy"),
    [("resnet18", "ResNet18"), ("resnet50", "ResNet50"), ("resnet101", "ResNet101"), ("vit_b_16", "vit_b_16")],
)
def test_legacy_model_names(canonical: str, legacy: str) -> None:
    assert to_legacy_model_name(canonical) == legacy
    assert from_legacy_model_name(legacy) == canonical


def test_results_ordered_by_image_then_model(engine: Engine) -> None:
    record = make_record()
    shuffled = dataclasses.replace(record, results=list(reversed(record.results)))
    save_task(engine, shuffled)
    stored = load_task(engine, record.instance_id)
    assert stored is not None
    assert [(r.image_index, r.model) for r in stored.record.results] == [
        (i, m) for i in range(3) for m in ("resnet18", "resnet50")
    ]


def test_unknown_ref(engine: Engine) -> None:
    save_task(engine, make_record())
    assert load_task(engine, "no-such-instance") is None
    assert load_task(engine, "999") is None


@pytest.mark.parametrize("ref", ["9223372036854775808", "2147483648", "9" * 5000, "x" * 101])
def test_refs_no_row_can_have_are_none_not_an_overflow(engine: Engine, ref: str) -> None:
    save_task(engine, make_record())
    assert load_task(engine, ref) is None


def test_all_digit_instance_id(engine: Engine) -> None:
    """A TaskID wins, but an all-digit instance id that is no TaskID is still found."""
    first = save_task(engine, make_record(instance_id="first"))
    numeric = make_record(instance_id="4242")
    task_id = save_task(engine, numeric)
    assert load_task(engine, "4242") == StoredTask(task_id, numeric)
    stored = load_task(engine, str(first))
    assert stored is not None and stored.record.instance_id == "first"


def test_save_twice_is_idempotent(engine: Engine) -> None:
    record = make_record()
    first = save_task(engine, record)
    second = save_task(engine, record)
    assert first == second
    assert row_counts(engine) == (1, 6)
    assert load_task(engine, record.instance_id) == StoredTask(first, record)


def test_second_save_replaces_task_and_results(engine: Engine) -> None:
    other = make_record(instance_id="other")
    other_id = save_task(engine, other)
    task_id = save_task(engine, make_record())
    retried = dataclasses.replace(
        make_record(label="lynx"),
        status="Completed",
        error=None,
        results=[r for r in make_record(label="lynx").results if r.error is None][:3],
    )
    assert save_task(engine, retried) == task_id
    assert load_task(engine, retried.instance_id) == StoredTask(task_id, retried)
    assert load_task(engine, "other") == StoredTask(other_id, other)  # untouched
    assert row_counts(engine) == (2, 9)


def test_failed_save_changes_nothing(engine: Engine) -> None:
    """Task row and result rows are one transaction: a bad result leaves the old state whole."""
    record = make_record()
    task_id = save_task(engine, record)
    duplicate = record.results[0]
    broken = dataclasses.replace(record, status="Completed", results=[duplicate, duplicate])
    with pytest.raises(IntegrityError):
        save_task(engine, broken)
    assert load_task(engine, record.instance_id) == StoredTask(task_id, record)


def test_concurrent_saves_from_threads(engine: Engine) -> None:
    records = [make_record(), make_record(label="lynx")]
    with ThreadPoolExecutor(max_workers=16) as pool:
        task_ids = list(pool.map(lambda i: save_task(engine, records[i % 2]), range(48)))
    assert len(set(task_ids)) == 1
    assert row_counts(engine) == (1, 6)
    stored = load_task(engine, records[0].instance_id)
    assert stored is not None and stored.record in records


def _save_in_process(url: str, label: str) -> int:
    engine = get_engine(url)
    ensure_schema(engine)
    return save_task(engine, make_record(label=label))


@pytest.mark.slow
def test_concurrent_saves_from_processes(database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    labels = ["tabby", "lynx"] * 6
    with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
        task_ids = list(pool.map(_save_in_process, [database_url] * len(labels), labels))
    engine = get_engine(database_url)
    assert len(set(task_ids)) == 1
    assert row_counts(engine) == (1, 6)


def test_insert_race_is_retried_as_update(engine: Engine) -> None:
    """Another writer inserting the same instance between our UPDATE and INSERT.

    SQLite's write lock makes that interleaving impossible, so the competing row is inserted on
    our own connection right before our INSERT; the real unique constraint then rejects ours.
    """
    record = make_record()
    inserts: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def compete(connection: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith('INSERT INTO "InferenceTasks"'):
            inserts.append(statement)
            if len(inserts) == 1:
                connection.connection.dbapi_connection.cursor().execute(statement, parameters)

    try:
        task_id = save_task(engine, record)
    finally:
        event.remove(engine, "before_cursor_execute", compete)
    assert len(inserts) == 2
    assert load_task(engine, record.instance_id) == StoredTask(task_id, record)
    assert row_counts(engine) == (1, 6)


def test_timestamps_are_stored_as_naive_utc(engine: Engine) -> None:
    record = dataclasses.replace(
        make_record(),
        submitted_at="2025-03-04T12:00:00+02:00",
        processing_started_at="2025-03-04T10:00:00Z",
        processing_finished_at="2025-03-04T10:00:03",  # naive: taken as UTC
    )
    save_task(engine, record)
    with engine.connect() as connection:
        raw = connection.execute(
            text('SELECT "TimestampF1", "ProcessingStartedAt", "ProcessingFinishedAt" FROM "InferenceTasks"')
        ).one()
    assert tuple(raw) == ("2025-03-04 10:00:00.000000", "2025-03-04 10:00:00.000000", "2025-03-04 10:00:03.000000")
    stored = load_task(engine, record.instance_id)
    assert stored is not None
    assert stored.record.submitted_at == "2025-03-04T10:00:00+00:00"
    assert stored.record.processing_started_at == "2025-03-04T10:00:00+00:00"
    assert stored.record.processing_finished_at == "2025-03-04T10:00:03+00:00"


def test_a_label_longer_than_its_column_keeps_its_start_and_end(engine: Engine) -> None:
    """SQL Server refuses a string longer than its column (SQLite would keep it): a checkpoint's weights label
    names its path and can pass ``Weights NVARCHAR(200)``, so its middle is left out."""
    label = (
        "checkpoint /home/site/wwwroot/.localdata/checkpoints/" + "deep/" * 40 + "finetune.pth (sha256 0123abcd), "
        "transforms/categories of ResNet50_Weights.IMAGENET1K_V2"
    )
    record = make_record()
    record = dataclasses.replace(record, results=[dataclasses.replace(r, weights=label) for r in record.results])
    save_task(engine, record)
    with engine.connect() as connection:
        stored = connection.scalar(text('SELECT "Weights" FROM "InferenceResults" WHERE "Weights" IS NOT NULL'))
    assert len(label) > 200 and len(stored) == 200 and "…" in stored
    assert stored.startswith("checkpoint /home/site/wwwroot/") and stored.endswith(label[-120:])


def test_strings_are_fitted_in_utf16_units_as_sql_server_counts_them(engine: Engine) -> None:
    """An emoji is one character to Python and two UTF-16 units to ``NVARCHAR(n)``: a name of 1,500 emoji
    passes ``len()`` against ``ImageName NVARCHAR(2048)`` and would fail the save on Azure SQL."""
    name, label = "\U0001f600" * 1500, "checkpoint /models/" + "\U0001f4f7" * 150 + "/finetune.pth (sha256 0123abcd)"
    record = make_record()
    record = dataclasses.replace(
        record, results=[dataclasses.replace(r, image_name=name, weights=label) for r in record.results]
    )
    save_task(engine, record)
    with engine.connect() as connection:
        stored_name, stored_label = connection.execute(
            text('SELECT "ImageName", "Weights" FROM "InferenceResults" WHERE "Weights" IS NOT NULL')
        ).first()
    assert 2046 < nvarchar_units(stored_name) <= 2048 and stored_name.startswith("\U0001f600") and "…" in stored_name
    assert nvarchar_units(stored_label) <= 200 and stored_label.endswith("/finetune.pth (sha256 0123abcd)")
    assert nvarchar_units(fit_nvarchar("a\U0001f600" * 3, 5)) <= 5 and fit_nvarchar("ab", 2) == "ab"


def test_instance_ids_differing_in_case_are_two_tasks(engine: Engine) -> None:
    upper, lower = make_record("Task-A1", label="upper"), make_record("task-a1", label="lower")
    first, second = save_task(engine, upper), save_task(engine, lower)
    assert first != second
    for record in (upper, lower):
        stored = load_task(engine, record.instance_id)
        assert stored is not None and stored.record == record
