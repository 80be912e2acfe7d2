"""Retention rules: what of a task's temporary blobs and finished history may go, and when.

A task leaves tensors (``TENSOR_CONTAINER/<instance id>/...``, written by preprocessing) and uploads
(``UPLOAD_CONTAINER/<instance id>/...``, written by the starter). Persisting deletes both, and a task that
fails or cannot be persisted discards its tensors itself; what is left comes from tasks that cannot run any
code (terminated, or whose host died at the wrong moment) and from uploads of tasks that were never
persisted. The sweep here finds them by listing the containers: the first path segment is the instance id,
whose runtime status says whether anything may still read them. A task handed to a session has no instance
while it waits its turn; its uploads are named ``<task>/session@<name>/...``, and the sweep keeps them while
that session's custom status still lists the task, or the session cannot say (suspended, pending, no answer).

Everything is a plain function of its dependencies (a blob store, the time, status lookups, a purge
call), so the rules are tested without a host and the timer function that runs them stays thin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

import azure.durable_functions as df

from contracts import SESSION_INSTANCE_PREFIX
from storage.blobs import BlobInfo, BlobStore

log = logging.getLogger(__name__)

#: Status lookups in flight at once: enough to sweep thousands of instances quickly, few enough not to
#: crowd out the task hub's own traffic.
LOOKUP_CONCURRENCY = 8
#: Purge by creation time needs a lower bound (the SDK refuses none); no instance is older than this.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class InstanceState(Enum):
    """What the sweep needs to know about an instance, from its runtime status."""

    ACTIVE = "active"  # Pending, Running, Suspended, ContinuedAsNew, or queued in a session: it may still read them
    FINISHED = "finished"  # Completed, Failed, Terminated, Canceled: it never will
    UNKNOWN = "unknown"  # no such instance: purged, not started yet, or never started


FINISHED_STATUSES = (
    df.OrchestrationRuntimeStatus.Completed,
    df.OrchestrationRuntimeStatus.Failed,
    df.OrchestrationRuntimeStatus.Terminated,
)


def state_of(status: df.OrchestrationRuntimeStatus | None) -> InstanceState:
    if status is None:
        return InstanceState.UNKNOWN
    if status in FINISHED_STATUSES or status is df.OrchestrationRuntimeStatus.Canceled:
        return InstanceState.FINISHED
    return InstanceState.ACTIVE


StatusLookup = Callable[[str], Awaitable[InstanceState]]
#: The task ids a session orchestration (``session@<name>``) holds, running or queued; None when the task hub
#: cannot say, which keeps the session's tasks' uploads for a later sweep.
SessionTasks = Callable[[str], Awaitable[frozenset[str] | None]]
PurgeBy = Callable[[datetime, datetime, list[df.OrchestrationRuntimeStatus]], Awaitable[int]]


@dataclass(frozen=True)
class RetentionPolicy:
    tensor_container: str
    upload_container: str
    upload_retention: timedelta  # uploads of tasks that never persisted, counted from their last write
    instance_retention: timedelta  # finished instances' history in the task hub, counted from their creation


@dataclass(frozen=True)
class InstanceBlobs:
    """The blobs one instance left in one container."""

    instance_id: str
    blobs: tuple[BlobInfo, ...]

    @property
    def newest(self) -> datetime:
        return max(blob.last_modified for blob in self.blobs)

    @property
    def session_instance_id(self) -> str | None:
        """The session an upload's task was handed to: ``<container>/<task>/session@<name>/<file>``."""
        for blob in self.blobs:
            segments = blob.name.split("/")
            if len(segments) > 3 and segments[2].startswith(SESSION_INSTANCE_PREFIX):
                return segments[2]
        return None


@dataclass
class SweepReport:
    """What one sweep deleted, for the log line (and the tests)."""

    tensor_blobs: int = 0
    tensor_bytes: int = 0
    upload_blobs: int = 0
    upload_bytes: int = 0
    kept_instances: int = 0

    def add(self, container: str, policy: RetentionPolicy, group: InstanceBlobs) -> None:
        size = sum(blob.size for blob in group.blobs)
        if container == policy.tensor_container:
            self.tensor_blobs += len(group.blobs)
            self.tensor_bytes += size
        else:
            self.upload_blobs += len(group.blobs)
            self.upload_bytes += size


def by_instance(blobs: Iterable[BlobInfo]) -> list[InstanceBlobs]:
    """Group a container's listing by its first path segment, the instance id (a blob directly in the
    container counts as an instance of its own name: it belongs to no task, so no task keeps it)."""
    groups: dict[str, list[BlobInfo]] = {}
    for blob in blobs:
        path = blob.name.partition("/")[2]
        groups.setdefault(path.partition("/")[0], []).append(blob)
    return [InstanceBlobs(instance_id, tuple(found)) for instance_id, found in sorted(groups.items())]


def tensors_expired(group: InstanceBlobs, state: InstanceState, now: datetime, policy: RetentionPolicy) -> bool:
    """A finished instance's tensors go now; an unknown one's once they are as old as an upload may get
    (a purged instance, or one whose start never landed); an active instance still reads them."""
    if state is InstanceState.FINISHED:
        return True
    return state is InstanceState.UNKNOWN and now - group.newest >= policy.upload_retention


def uploads_expired(group: InstanceBlobs, state: InstanceState, now: datetime, policy: RetentionPolicy) -> bool:
    """Uploads outlive their task by ``upload_retention`` (time to restart or inspect it), never an active one."""
    return state is not InstanceState.ACTIVE and now - group.newest >= policy.upload_retention


async def each[K: Hashable, V](keys: Iterable[K], lookup: Callable[[K], Awaitable[V]]) -> dict[K, V]:
    """One lookup per distinct key, a few at a time."""
    gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)

    async def one(key: K) -> tuple[K, V]:
        async with gate:
            return key, await lookup(key)

    return dict(await asyncio.gather(*(one(key) for key in set(keys))))


async def held_in_sessions(
    uploads: Iterable[InstanceBlobs], states: dict[str, InstanceState], session_tasks: SessionTasks
) -> set[str]:
    """The tasks without an instance whose session still holds them (or cannot say): one lookup per session."""
    waiting: dict[str, str] = {}  # task id -> its session's instance id
    for group in uploads:
        session = group.session_instance_id
        if session and states[group.instance_id] is InstanceState.UNKNOWN:
            waiting[group.instance_id] = session
    held = await each(waiting.values(), session_tasks)
    return {task_id for task_id, session in waiting.items() if (tasks := held[session]) is None or task_id in tasks}


async def sweep(
    store: BlobStore, lookup: StatusLookup, session_tasks: SessionTasks, now: datetime, policy: RetentionPolicy
) -> SweepReport:
    """Delete the tensors and uploads nothing will read again; return what was deleted.

    Exactly the blobs listed are deleted (not a prefix), so a blob written after the listing is left
    for the next sweep to judge.
    """
    rules = ((policy.tensor_container, tensors_expired), (policy.upload_container, uploads_expired))
    listings = {container: by_instance(await asyncio.to_thread(_list, store, container)) for container, _ in rules}
    states = await each((g.instance_id for groups in listings.values() for g in groups), lookup)
    for task_id in await held_in_sessions(listings[policy.upload_container], states, session_tasks):
        states[task_id] = InstanceState.ACTIVE
    report = SweepReport()
    for container, expired in rules:
        for group in listings[container]:
            if not expired(group, states[group.instance_id], now, policy):
                report.kept_instances += 1
                continue
            await asyncio.to_thread(_delete, store, group.blobs)
            report.add(container, policy, group)
    return report


def _list(store: BlobStore, container: str) -> list[BlobInfo]:
    return list(store.list_blobs(f"{container}/"))


def _delete(store: BlobStore, blobs: Iterable[BlobInfo]) -> None:
    for blob in blobs:
        store.delete(blob.name)


async def purge_finished(purge: PurgeBy, now: datetime, policy: RetentionPolicy) -> int:
    """Purge the history of Completed, Failed and Terminated instances created before the retention window.

    Only the task hub is purged: the SQL rows (``InferenceTasks`` / ``InferenceResults``) are the
    permanent record, and ``GET /api/tasks/{id}`` keeps answering from them.
    """
    return await purge(EPOCH, now - policy.instance_retention, list(FINISHED_STATUSES))


@dataclass(frozen=True)
class MaintenanceReport:
    sweep: SweepReport
    instances_purged: int

    def summary(self) -> str:
        s = self.sweep
        return (
            f"retention: deleted {s.tensor_blobs} tensor blob(s) ({s.tensor_bytes} bytes) and {s.upload_blobs} "
            f"upload(s) ({s.upload_bytes} bytes), kept {s.kept_instances} instance folder(s); "
            f"purged {self.instances_purged} finished instance(s) from the task hub"
        )


async def run_maintenance(
    store: BlobStore,
    lookup: StatusLookup,
    session_tasks: SessionTasks,
    purge: PurgeBy,
    now: datetime,
    policy: RetentionPolicy,
) -> MaintenanceReport:
    """The sweep, then the purge: sweeping first still knows the statuses of the instances about to be
    purged (afterwards they would be unknown and wait out the upload retention)."""
    swept = await sweep(store, lookup, session_tasks, now, policy)
    report = MaintenanceReport(swept, await purge_finished(purge, now, policy))
    log.info(report.summary())
    return report
