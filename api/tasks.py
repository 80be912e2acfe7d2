"""HTTP API: submit a classification task (new and legacy shapes) and read persisted results.

The starters answer at once with Durable Functions' own check-status payload, so clients poll the
management API (``statusQueryGetUri``) and never the database. ``?wait=SECONDS`` turns a submission
into the synchronous mode: the starter polls the orchestration itself and returns the output when it
completes in time, else the same 202 as the asynchronous mode.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from sqlalchemy.exc import SQLAlchemyError

from api.starter import Started, StartError, TaskIdTakenError, start_task
from api.validation import RequestError, TaskSubmission, parse_submission, parse_wait
from contracts import ClassificationRequest, instance_id_for_client, to_legacy_model_name
from services import database
from settings import get_settings
from storage.results import MAX_INSTANCE_ID_LENGTH, load_task

bp = df.Blueprint()
log = logging.getLogger(__name__)

TERMINAL = {
    df.OrchestrationRuntimeStatus.Completed,
    df.OrchestrationRuntimeStatus.Failed,
    df.OrchestrationRuntimeStatus.Terminated,
}


def json_response(body: Any, status: int, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json", headers=headers)


async def wait_for_result(
    client: df.DurableOrchestrationClient, instance_id: str, seconds: float
) -> df.DurableOrchestrationStatus | None:
    """Poll until the orchestration ends or ``seconds`` pass; short intervals first for small tasks."""
    deadline = time.monotonic() + seconds
    interval = 0.01
    while True:
        status = await client.get_status(instance_id)
        if status and status.runtime_status in TERMINAL:
            return status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 1.5, 0.1)


class Rejected(Exception):
    """A submission that gets an error response instead of an orchestration."""

    def __init__(self, response: func.HttpResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


async def submit(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> tuple[Started, TaskSubmission, float | None]:
    """Validate, store uploads and start the orchestration: (what started, submission, seconds to wait)."""
    settings = get_settings()
    try:
        submission = parse_submission(req.get_body(), req.headers.get("Content-Type", ""), req.params, settings)
        wait = parse_wait(req.params, settings)
    except RequestError as exc:
        raise Rejected(json_response(exc.to_json(), 400)) from None
    try:
        started = await start_task(client, submission)
    except StartError as exc:  # blob storage unreachable, a session not answering: the client may retry later
        log.exception("could not start the task")
        raise Rejected(json_response({"error": str(exc)}, 503)) from None
    except TaskIdTakenError as exc:
        raise Rejected(
            json_response({"error": str(exc), "field": "task_id", "TaskID": exc.stored_task_id}, 409)
        ) from None
    return started, submission, wait


async def finished_within(
    client: df.DurableOrchestrationClient, instance_id: str, wait: float | None
) -> func.HttpResponse | None:
    """Synchronous mode: 200 with the output if the task ends within ``wait`` seconds, else None."""
    if not wait:
        return None
    try:
        status = await wait_for_result(client, instance_id, wait)
    except Exception:  # the task hub stopped answering: the task was started, the 202 says where to poll
        log.exception("could not wait for task %s", instance_id)
        return None
    if status is None or status.runtime_status is None:  # not ended in time (an ended one has a status)
        return None
    if status.runtime_status is df.OrchestrationRuntimeStatus.Completed:
        return json_response(status.output, 200)
    return json_response(
        {"task_id": instance_id, "runtimeStatus": status.runtime_status.value, "output": status.output}, 200
    )


async def handle_submission(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    accepted: Callable[[Started, TaskSubmission], Awaitable[func.HttpResponse]],
) -> func.HttpResponse:
    """400/409/503 for a rejected submission, the result in synchronous mode, else ``accepted(...)``."""
    try:
        started, submission, wait = await submit(req, client)
    except Rejected as rejected:
        return rejected.response
    finished = await finished_within(client, started.instance_id, wait)
    return finished or await accepted(started, submission)


@bp.route(route="tasks", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def submit_task(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def accepted(started: Started, _: TaskSubmission) -> func.HttpResponse:
        return client.create_check_status_response(req, started.instance_id)

    return await handle_submission(req, client, accepted)


async def existing_models(client: df.DurableOrchestrationClient, started: Started) -> list[str] | None:
    """The models of the task that ``started`` found under its id, from that instance's input; None when the
    input cannot be read (a task still waiting in its session has no instance yet)."""
    try:
        status = await client.get_status(started.instance_id, show_input=True)
        payload = status.input_ if status is not None else None
        document = json.loads(payload) if isinstance(payload, str) else payload
        return ClassificationRequest.from_json(document).models if isinstance(document, dict) else None
    except Exception:  # the SDK raises bare Exception; the answer then names no models
        log.warning("could not read the input of task %s", started.instance_id, exc_info=True)
        return None


async def legacy_accepted(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, started: Started, submission: TaskSubmission
) -> func.HttpResponse:
    """The older API's answer: its own fields plus the management URLs. For a ``task_id`` that names an
    existing task it says so, with that task's models, not the ones this submission asked for."""
    payload = client.create_check_status_response(req, started.instance_id)
    urls = json.loads(payload.get_body())
    models = await existing_models(client, started) if started.duplicate else submission.models
    body = {
        "status": "exists" if started.duplicate else "accepted",
        "task_id": started.instance_id,
        "model_type": ",".join(to_legacy_model_name(m) for m in models) if models is not None else None,
        "message": "A task with this task_id exists already: nothing new was started; poll statusQueryGetUri "
        "for its progress and result."
        if started.duplicate
        else "Task accepted: poll statusQueryGetUri for progress and the result.",
        **urls,
    }
    return json_response(body, 202, {"Location": urls["statusQueryGetUri"], "Retry-After": "10"})


@bp.route(route="create_task", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def create_task(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The older API: the same orchestration, answered in the older shape."""

    async def accepted(started: Started, submission: TaskSubmission) -> func.HttpResponse:
        return await legacy_accepted(req, client, started, submission)

    return await handle_submission(req, client, accepted)


def not_stored_reason(ref: str, status: df.DurableOrchestrationStatus | None) -> str:
    """Why ``ref`` has no stored result, from its orchestration: a terminated task is not "still running".

    ``ref`` is named as given up to the longest instance id; a longer one (no task has it) is cut short, so a
    client cannot make the answer as large as its request."""
    ref = ref if len(ref) <= MAX_INSTANCE_ID_LENGTH else f"{ref[:MAX_INSTANCE_ID_LENGTH]}..."
    runtime = status.runtime_status if status else None
    if runtime is None:
        return (
            f"no stored result for task {ref!r}: unknown task, a task still waiting in its session's queue, or one "
            "whose history was purged before it was stored"
        )
    if runtime is df.OrchestrationRuntimeStatus.Completed:
        return f"task {ref!r} completed but its result was not persisted (see persist_error in its output)"
    if runtime in TERMINAL:  # Terminated: the output is the reason given; Failed: the error
        reason = f" ({status.output})" if status and status.output else ""
        return f"task {ref!r} ended as {runtime.value}{reason}; its result was not persisted"
    return f"task {ref!r} is {runtime.value}: its result is stored when it ends (poll its statusQueryGetUri)"


@bp.route(route="tasks/{task_id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_task_result(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The persisted result: outlives purged orchestration history, by instance id or TaskID."""
    ref = req.route_params.get("task_id", "")
    try:
        stored = await asyncio.to_thread(load_task, database(), ref)
    except SQLAlchemyError as exc:  # the database is down: say so, the client may retry
        log.exception("could not read task %s", ref)
        return json_response({"error": f"the results database is unavailable: {type(exc).__name__}"}, 503)
    if stored is None:
        client_ref = instance_id_for_client(ref)
        try:
            status = await client.get_status(client_ref) if client_ref else None
        except Exception as exc:  # the SDK raises bare Exception, or aiohttp's errors: the client may retry
            log.exception("could not ask the task hub about task %s", ref)
            return json_response({"error": f"no stored result, and the durable task hub is unavailable: {exc}"}, 503)
        return json_response({"error": not_stored_reason(ref, status)}, 404)
    return json_response({"task_id": stored.task_id, **stored.record.to_json()}, 200)
