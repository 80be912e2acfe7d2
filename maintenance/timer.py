"""The maintenance timer: the retention sweep and the task hub purge, on ``MAINTENANCE_SCHEDULE``.

A timer trigger because nothing else would run them: a terminated instance cannot clean up after
itself, and purging history is nobody's task. The schedule is an app setting (an NCRONTAB expression with
seconds; hourly, ``0 0 * * * *``, when unset), so tests and operators change it without a code change. The
work is in :mod:`maintenance.retention`; this module only adapts the durable client to it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from contracts import instance_id_for_client, session_task_ids
from maintenance.retention import InstanceState, MaintenanceReport, RetentionPolicy, run_maintenance, state_of
from services import blob_store
from settings import Settings, get_settings, maintenance_schedule

bp = df.Blueprint()
log = logging.getLogger(__name__)

#: Runtime statuses of a session that hold task events without processing them (nor listing their tasks).
_EVENTS_MAY_WAIT = {df.OrchestrationRuntimeStatus.Suspended, df.OrchestrationRuntimeStatus.Pending}


def policy_from(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy(
        tensor_container=settings.tensor_container,
        upload_container=settings.upload_container,
        upload_retention=timedelta(hours=settings.upload_retention_hours),
        instance_retention=timedelta(days=settings.instance_retention_days),
    )


class ClientAdapter:
    """The durable client as the retention functions' status lookups and purge call."""

    def __init__(self, client: df.DurableOrchestrationClient) -> None:
        self.client = client

    async def _status(self, instance_id: str) -> tuple[df.OrchestrationRuntimeStatus | None, Any] | None:
        """The instance's runtime status (None: no such instance) and custom status; None, logged, when the task
        hub does not answer as expected."""
        client_id = instance_id_for_client(instance_id)  # blob folder names allow what instance ids do not
        if client_id is None:
            return None, None
        try:
            status = await self.client.get_status(client_id)
        except Exception:  # the SDK raises bare Exception for an unexpected answer
            log.warning("retention: no status for instance %r; its blobs are kept", instance_id, exc_info=True)
            return None
        return status.runtime_status, status.custom_status

    async def lookup(self, instance_id: str) -> InstanceState:
        """The instance's state; when the task hub cannot say, ACTIVE, which keeps its blobs for a later sweep."""
        found = await self._status(instance_id)
        return InstanceState.ACTIVE if found is None else state_of(found[0])

    async def session_tasks(self, session_id: str) -> frozenset[str] | None:
        """The tasks a session still holds: none once it ended (or if it never ran); None when its status cannot
        say: between two executions, before the new one has set its custom status, and while it is Suspended or
        Pending, when a task event it has not processed yet is in no custom status."""
        found = await self._status(session_id)
        if found is None or found[0] in _EVENTS_MAY_WAIT:
            return None
        runtime_status, custom_status = found
        if state_of(runtime_status) is not InstanceState.ACTIVE:
            return frozenset()
        return session_task_ids(custom_status) if isinstance(custom_status, dict) else None

    async def purge(
        self, created_from: datetime, created_to: datetime, statuses: list[df.OrchestrationRuntimeStatus]
    ) -> int:
        result = await self.client.purge_instance_history_by(created_from, created_to, statuses)
        return int(result.instances_deleted)


async def maintain(client: df.DurableOrchestrationClient, now: datetime) -> MaintenanceReport:
    """One maintenance run against the app's own blob store and task hub."""
    adapter = ClientAdapter(client)
    return await run_maintenance(
        blob_store(), adapter.lookup, adapter.session_tasks, adapter.purge, now, policy_from(get_settings())
    )


@bp.timer_trigger(arg_name="timer", schedule=maintenance_schedule())
@bp.durable_client_input(client_name="client")
async def maintenance(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    await maintain(client, datetime.now(UTC))
