"""Starting a task from a validated submission: one path for the HTTP starters and the queue starter.

Uploaded bytes go to blob storage first, so only their names travel through orchestration history.
A client's ``task_id`` is the instance id, which makes a start idempotent: a second submission with the
same id (a redelivered queue message, a client retrying a POST) finds the instance and starts nothing,
whatever state that instance is in; a Failed task stays Failed and a new attempt needs a new id. Once the
instance's history is purged, its result in the database still holds the id (:class:`TaskIdTakenError`).

A task with a ``session`` is handed to that session's orchestration (``session@<name>``) as an external
event; the session runs its tasks one at a time, in the order it accepted them, each as a sub-orchestration
whose instance id is the task's, so every task keeps its own status URL. Raising an event is
fire-and-forget, and azure-functions-durable 1.x drops events that arrive in the same batch as the one
after which an orchestration continues as new (its ``continue_as_new`` has no ``preserveUnprocessedEvents``),
so the starter waits until the session's custom status lists the task (or the task's instance exists)
and raises the event again if it does not; the session ignores a task id it already holds.

A session lists its queued task ids in its custom status, which the extension limits to 16 KB: the starter
refuses a task (:class:`SessionFullError`) when the session already has ``SESSION_MAX_QUEUED`` waiting, and
also when the session itself refused it for want of room (starters racing past that count).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
from azure.core.exceptions import AzureError

from api.validation import TaskSubmission
from contracts import (
    CLASSIFY_ORCHESTRATOR,
    SESSION_ORCHESTRATOR,
    SESSION_TASK_EVENT,
    ClassificationRequest,
    ImageSource,
    SessionState,
    session_instance_id,
    session_queued_count,
    session_refused,
    session_task_ids,
)
from services import blob_store, database
from settings import Settings, get_settings
from storage.results import stored_task

log = logging.getLogger(__name__)

_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp"}
#: How long a start waits for the database to say whether a ``task_id`` holds a stored result, and how long
#: starts skip that check after it failed.
STORED_CHECK_TIMEOUT_S = 2.0
STORED_CHECK_PAUSE_S = 30.0
_checks_paused_until = 0.0
#: Times the event is raised before the starter gives up on a session (a transient failure).
SESSION_HANDOVER_ATTEMPTS = 3
_ENDED = {
    df.OrchestrationRuntimeStatus.Completed,
    df.OrchestrationRuntimeStatus.Failed,
    df.OrchestrationRuntimeStatus.Terminated,
}


class StartError(Exception):
    """The task could not be started for a reason that may pass (storage or the session is unavailable)."""


class SessionFullError(StartError):
    """The session has as many tasks waiting as it may hold: the client retries once some have run."""


class TaskIdTakenError(Exception):
    """The ``task_id`` names a task whose result is stored but whose orchestration history was purged
    (``INSTANCE_RETENTION_DAYS``): starting it again would overwrite that result with another task's."""

    def __init__(self, task_id: str, stored_task_id: int, submitted_at: str) -> None:
        super().__init__(
            f"task_id {task_id!r} was used by a task submitted at {submitted_at}, whose result is stored as "
            f"TaskID {stored_task_id} (GET /api/tasks/{task_id}); submit a new task with another task_id"
        )
        self.task_id, self.stored_task_id = task_id, stored_task_id


@dataclass(frozen=True)
class Started:
    instance_id: str
    duplicate: bool = False  # an instance with this task_id existed: nothing new was started
    session_instance_id: str | None = None


def upload_folder(settings: Settings, instance_id: str, session: str | None, submission_id: str) -> str:
    """``<UPLOAD_CONTAINER>/<task>/<submission>/``, and for a task of a session
    ``<UPLOAD_CONTAINER>/<task>/session@<name>/<submission>/``.

    The session segment: a task waiting in its session's queue has no instance yet, and the maintenance sweep
    learns from the name which session to ask before it takes the uploads for those of a task that never
    started. The submission segment: two submissions of one ``task_id`` (a client's retry racing the first, or
    a resubmission while the task waits in its session) never write over each other's bytes, so the task that
    runs reads the images it was given. Persisting deletes the whole ``<task>/`` folder.
    """
    folder = f"{settings.upload_container}/{instance_id}/"
    if session:
        folder = f"{folder}{session_instance_id(session)}/"
    return f"{folder}{submission_id}/"


async def store_uploads(submission: TaskSubmission, instance_id: str, settings: Settings) -> list[ImageSource]:
    """Put uploaded bytes in blob storage so that only their names travel through history."""
    store = blob_store()
    folder = upload_folder(settings, instance_id, submission.routing.session, uuid.uuid4().hex)
    sources: list[ImageSource] = []
    for position, image in enumerate(submission.images):
        if image.source is not None:
            sources.append(image.source)
            continue
        assert image.data is not None
        name = f"{folder}{position}{_EXTENSIONS.get(image.content_type or '', '')}"
        await asyncio.to_thread(store.put, name, image.data, image.content_type)
        sources.append(ImageSource(blob=name, name=image.name or f"upload-{position}"))
    return sources


async def runtime_status(client: df.DurableOrchestrationClient, instance_id: str) -> Any:
    """The instance's status, or None when there is no such instance (yet); :class:`StartError` when the task
    hub does not answer (the SDK raises a bare ``Exception``, or aiohttp's errors), as the client may retry."""
    try:
        status = await client.get_status(instance_id)
    except Exception as exc:
        raise StartError(f"the durable task hub is unavailable: {exc}") from exc
    return status if status is not None and status.runtime_status is not None else None


async def start_task(client: df.DurableOrchestrationClient, submission: TaskSubmission) -> Started:
    """Start the task (or hand it to its session); :class:`StartError` when storage is unavailable."""
    settings = get_settings()
    routing = submission.routing
    instance_id = routing.task_id or uuid.uuid4().hex
    session_id = session_instance_id(routing.session) if routing.session else None
    if routing.task_id and await runtime_status(client, instance_id):
        log.info("task %s exists already: not started again", instance_id)
        return Started(instance_id, duplicate=True, session_instance_id=session_id)
    if routing.task_id and session_id is not None and holds(await runtime_status(client, session_id), instance_id):
        log.info("task %s waits in %s already: not handed over again", instance_id, session_id)
        return Started(instance_id, duplicate=True, session_instance_id=session_id)
    if routing.task_id:
        await refuse_if_stored(instance_id)
    try:
        images = await store_uploads(submission, instance_id, settings)
    except (OSError, AzureError) as exc:  # the folder's errors, and Azure's (an AzureError is no OSError)
        raise StartError(f"image storage is unavailable: {exc}") from exc
    request = ClassificationRequest(
        task_id=instance_id,
        models=submission.models,
        images=images,
        top_k=submission.top_k,
        submitted_at=datetime.now(UTC).isoformat(),
        batch_size=settings.inference_batch_size,
        retry_attempts=settings.activity_retry_attempts,
        retry_interval_ms=settings.activity_retry_interval_ms,
        reply_to=routing.reply_to,
        session=routing.session,
        delivery_attempts=settings.delivery_retry_attempts,
        delivery_interval_ms=settings.delivery_retry_interval_ms,
        persist_attempts=settings.persist_retry_attempts,
        persist_interval_ms=settings.persist_retry_interval_ms,
    )
    if session_id is not None:
        try:
            await hand_to_session(client, session_id, request, settings)
        except StartError:
            raise
        except Exception as exc:  # the SDK raises bare Exception when the task hub does not answer
            raise StartError(f"session {routing.session!r} is unavailable: {exc}") from exc
        log.info("task %s handed to %s", instance_id, session_id)
        return Started(instance_id, session_instance_id=session_id)
    try:
        await client.start_new(CLASSIFY_ORCHESTRATOR, instance_id, request.to_json())
    except Exception as exc:  # the SDK raises bare Exception; a concurrent start of the same task_id won the race
        if routing.task_id and await runtime_status(client, instance_id):
            return Started(instance_id, duplicate=True)
        raise StartError(f"the durable task hub did not start the task: {exc}") from exc
    log.info("started task %s: %d image(s), models %s", instance_id, len(request.images), request.models)
    return Started(instance_id)


async def refuse_if_stored(task_id: str) -> None:
    """:class:`TaskIdTakenError` when ``task_id``'s result is in the database although the task hub no longer
    knows it. The database is needed only when the task persists: one that fails (down, a token it cannot get,
    a bad connection string) or does not answer within :data:`STORED_CHECK_TIMEOUT_S` is logged, and the start
    goes on rather than fail or wait for it (the check, engine included, runs off the event loop).

    A check that timed out still holds its thread until the driver's own timeout (15-30 s for ODBC's login):
    after a failure the checks pause for :data:`STORED_CHECK_PAUSE_S`, so that an outage cannot fill the
    thread pool the uploads share with hanging checks."""
    global _checks_paused_until
    if time.monotonic() < _checks_paused_until:
        return
    try:
        stored = await asyncio.wait_for(
            asyncio.to_thread(lambda: stored_task(database(), task_id)), STORED_CHECK_TIMEOUT_S
        )
    except Exception as exc:  # noqa: BLE001  any failure of the database: SQLAlchemy, azure-identity, a timeout
        _checks_paused_until = time.monotonic() + STORED_CHECK_PAUSE_S
        log.warning(
            "task %s: the results database did not answer (%r); started without checking it, as are the starts of "
            "the next %g s",
            task_id,
            exc,
            STORED_CHECK_PAUSE_S,
        )
        return
    if stored is not None:
        raise TaskIdTakenError(task_id, *stored)


async def ensure_session(client: df.DurableOrchestrationClient, session_id: str, session: str) -> Any:
    """Start the session's orchestration unless it runs; a concurrent starter may have just started it.

    Returns the status of the session found running, None when this call started it."""
    status = await runtime_status(client, session_id)
    if status is not None and status.runtime_status not in _ENDED:
        return status
    try:
        await client.start_new(SESSION_ORCHESTRATOR, session_id, SessionState(session=session).to_json())
    except Exception:  # the SDK raises bare Exception: another starter created it between the two calls
        status = await runtime_status(client, session_id)
        if status is None or status.runtime_status in _ENDED:
            raise
        return status
    log.info("session %s: orchestration %s started", session, session_id)
    return None


def holds(status: Any, task_id: str) -> bool:
    """Whether a session's custom status shows the task accepted (running or queued)."""
    return status is not None and task_id in session_task_ids(status.custom_status)


def refused(status: Any, task_id: str) -> bool:
    """Whether a session's status shows this task as the last one it refused for want of room."""
    return status is not None and session_refused(status.custom_status) == task_id


def refuse_if_full(status: Any, request: ClassificationRequest, max_queued: int) -> None:
    """:class:`SessionFullError` when the session has ``max_queued`` tasks waiting (and not this one)."""
    if (
        status is not None
        and not holds(status, request.task_id)
        and session_queued_count(status.custom_status) >= max_queued
    ):
        raise SessionFullError(
            f"session {request.session!r} is full: {max_queued} tasks are waiting (SESSION_MAX_QUEUED); retry later"
        )


async def hand_to_session(
    client: df.DurableOrchestrationClient, session_id: str, request: ClassificationRequest, settings: Settings
) -> None:
    """Raise the task event until the session shows it accepted or refused it (see the module docstring).

    A refusal counts only if the status did not already show this task refused before the event was raised
    (an earlier submission of the same id): then only acceptance, or the timeout, ends the wait."""
    assert request.session is not None
    timeout = settings.session_accept_timeout_seconds
    for _ in range(SESSION_HANDOVER_ATTEMPTS):
        before = await ensure_session(client, session_id, request.session)
        refuse_if_full(before, request, settings.session_max_queued)
        refused_before = refused(before, request.task_id)
        await client.raise_event(session_id, SESSION_TASK_EVENT, request.to_json())
        deadline = time.monotonic() + timeout
        interval = 0.02
        while time.monotonic() < deadline:
            status = await runtime_status(client, session_id)
            if holds(status, request.task_id):
                return
            if refused(status, request.task_id) and not refused_before:
                raise SessionFullError(f"session {request.session!r} is full: it has no room for the task; retry later")
            if await runtime_status(client, request.task_id):  # accepted, run and maybe finished already
                return
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 0.5)
        log.warning("%s did not show task %s within %g s: raising it again", session_id, request.task_id, timeout)
    raise StartError(f"session {request.session!r} did not accept the task within {timeout:g} s")
