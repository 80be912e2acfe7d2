"""Persist activity: write the task and its results to SQL, then drop the task's temporary blobs.

``save_task`` is idempotent per instance id, so a replayed or retried call rewrites the same rows
instead of adding new ones; tensors and the images the starter stored for this task (uploads) are
deleted only after the rows are committed, so a retry after a failed write still has nothing it needs
missing (persistence reads neither). Without this, every uploaded image stayed in storage forever.
A task that ends without being persisted has its tensors discarded by the orchestration
(``discard_tensors``); its uploads are kept for ``UPLOAD_RETENTION_HOURS`` (see ``maintenance``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.durable_functions as df

from contracts import DISCARD_TENSORS_ACTIVITY, PERSIST_ACTIVITY, PersistOutput, TaskRecord
from services import blob_store, database
from settings import get_settings
from storage.results import save_task

bp = df.Blueprint()
log = logging.getLogger(__name__)


def persist(record: TaskRecord) -> PersistOutput:
    """Save, then drop the temporary blobs as a best effort.

    Once the rows are committed the task is persisted, whatever happens to the clean-up: a storage error
    there must not turn into a persist failure (the output would say the result was lost while it is
    stored). What is left is removed by the maintenance sweep after ``UPLOAD_RETENTION_HOURS``.
    """
    task_id = save_task(database(), record)
    settings = get_settings()
    for container in (settings.tensor_container, settings.upload_container):
        prefix = f"{container}/{record.instance_id}/"
        try:
            blob_store().delete_prefix(prefix)
        except Exception:  # any storage failure: the sweep retries later
            log.warning(
                "task %s is persisted; deleting %s failed, the sweep will", record.instance_id, prefix, exc_info=True
            )
    return PersistOutput(task_id=task_id, persisted_at=datetime.now(UTC).isoformat())


@bp.activity_trigger(input_name="payload", activity=PERSIST_ACTIVITY)
def persist_results(payload: dict) -> dict:  # type: ignore[type-arg]  # Azure's worker refuses dict[str, Any]
    return persist(TaskRecord.from_json(payload)).to_json()


def discard(instance_id: str) -> int:
    """The tensors of a task that failed or could not be persisted: nothing will read them again."""
    return blob_store().delete_prefix(f"{get_settings().tensor_container}/{instance_id}/")


@bp.activity_trigger(input_name="instance_id", activity=DISCARD_TENSORS_ACTIVITY)
def discard_tensors(instance_id: str) -> int:
    return discard(instance_id)
