"""Persist activity: write the task and its results to SQL, then drop the task's temporary blobs.

``save_task`` is idempotent per instance id, so a replayed or retried call rewrites the same rows
instead of adding new ones; tensors and the images the starter stored for this task (uploads) are
deleted only after the rows are committed, so a retry after a failed write still has nothing it needs
missing (persistence reads neither). Without this, every uploaded image stayed in storage forever.
"""

from __future__ import annotations

from datetime import UTC, datetime

import azure.durable_functions as df

from contracts import PERSIST_ACTIVITY, PersistOutput, TaskRecord
from services import blob_store, database
from settings import get_settings
from storage.results import save_task

bp = df.Blueprint()


def persist(record: TaskRecord) -> PersistOutput:
    task_id = save_task(database(), record)
    settings = get_settings()
    for container in (settings.tensor_container, settings.upload_container):
        blob_store().delete_prefix(f"{container}/{record.instance_id}/")
    return PersistOutput(task_id=task_id, persisted_at=datetime.now(UTC).isoformat())


@bp.activity_trigger(input_name="payload", activity=PERSIST_ACTIVITY)
def persist_results(payload: dict) -> dict:  # type: ignore[type-arg]  # Azure's worker refuses dict[str, Any]
    return persist(TaskRecord.from_json(payload)).to_json()
