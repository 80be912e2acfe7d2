"""One eternal orchestration per session: its tasks run one at a time, in the order it accepted them.

Each execution runs the task at the head of its queue as a sub-orchestration of ``classify_images`` whose
instance id is the task's own (the id its starter returned, so the client polls it like any task), while
it keeps accepting ``task`` events into the queue. When the task ends, completed or failed (a failed task
does not block the ones behind it), the orchestration continues as new with the rest of the queue, so its
history holds one task's worth of events however long the session lives.

There is always exactly one open ``wait_for_external_event``, yielded at every point the orchestration
waits, from the episode that runs ``ExecutionStarted`` on: azure-functions-durable 1.7.0 keeps an event that
arrives with no waiter under its name only, so a second such event would replace the first, and the kept
event is never cleared, so it would satisfy every later wait on that name (SDK issue 507). Both the
extension and the local host deliver ``ExecutionStarted`` before any event of an execution, so no task event
finds this orchestration without a waiter. Events that arrive in the same episode as, and after, the
completion that ends an execution are dropped with that execution (the SDK's ``continue_as_new`` has no
``preserveUnprocessedEvents``); the starter therefore checks this orchestration's custom status
(``running`` / ``queued``) and raises the event again, and a task id already held here is ignored.

The extension fails an orchestration whose custom status is over 16 KB of UTF-16 (extension PR 3113), which
would lose every queued task. Starters refuse a task beyond ``SESSION_MAX_QUEUED`` waiting ones, but they
read the status before they raise the event, so racing starters can pass that check together; the session
therefore accepts a task only while its status, with that task queued and the widest ``last`` and
``refused`` it may show later, stays under the limit, and while the next execution's input (which carries
the queued requests) stays under :data:`STATE_MAX_CHARS`. A task it has no room for is not taken: its id is
shown as ``refused``, and its starter answers that the session is full (a 503, or a queue message retried).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from contracts import (
    CLASSIFY_ORCHESTRATOR,
    SESSION_ORCHESTRATOR,
    SESSION_TASK_EVENT,
    ClassificationRequest,
    SessionState,
)
from orchestrators.workflow import activity_error_message

bp = df.Blueprint()

#: Finished task ids remembered across executions, so a task event raised again late is not run twice.
RECENT_TASKS = 100
#: The custom status's JSON as Python writes it (ASCII, ", " separators) is never shorter than the extension's
#: UTF-16 form, whose limit is 8192 units; the rest is room for the ``finished`` counter to grow.
STATUS_MAX_CHARS = 8000
#: The longest JSON string of a text the status shows besides task ids (an error, a refused id).
SHOWN_TEXT_CHARS = 300
_WIDEST_TEXT = "x" * (SHOWN_TEXT_CHARS - 2)
_WIDEST_LAST = {"task_id": "", "runtimeStatus": "Completed", "error": _WIDEST_TEXT}
#: The longest the JSON of a session's input may get: half of the Durable Task Scheduler's message limit.
STATE_MAX_CHARS = 512 * 1024
#: What ``recent`` may take of it: ids of at most 64 characters, quoted and separated.
_RECENT_MAX_CHARS = RECENT_TASKS * (64 + 4)


def clipped(text: str, limit: int = SHOWN_TEXT_CHARS) -> str:
    """``text``, cut short with "..." so that it takes at most ``limit`` characters as a JSON string."""
    if len(json.dumps(text)) <= limit:
        return text
    size = len(json.dumps("..."))
    kept: list[str] = []
    for char in text:
        size += len(json.dumps(char)) - 2
        if size > limit:
            break
        kept.append(char)
    return "".join(kept) + "..."


def session_status(
    state: SessionState, queue: list[ClassificationRequest], last: dict[str, Any] | None, refused: str | None
) -> dict[str, Any]:
    """The custom status the starter reads: which task runs, which wait, how the previous one ended, and the
    last task refused for want of room."""
    return {
        "session": state.session,
        "running": queue[0].task_id if queue else None,
        "queued": [request.task_id for request in queue[1:]],
        "finished": state.finished,
        "last": last,
        "refused": clipped(refused) if refused else None,
    }


def has_room(state: SessionState, queue: list[ClassificationRequest], request: ClassificationRequest) -> bool:
    """Whether the status and the input of the next execution stay under their limits with ``request`` queued.

    The status whatever ``last`` and ``refused`` show later: a finished task leaves the queue as it enters
    ``last``, so the queue only ever frees room. The input carries every queued request whole (32 images
    with URLs and names of 2,048 characters make one of 130 KB): the Durable Task Scheduler refuses a
    message over about 1 MB, and the Python SDK has no large-payload offload, so the queue stays under
    :data:`STATE_MAX_CHARS` with the ``recent`` ids grown to their bound.
    """
    widest = session_status(state, [*queue, request], _WIDEST_LAST, _WIDEST_TEXT)
    if len(json.dumps(widest)) > STATUS_MAX_CHARS:
        return False
    carried = SessionState(session=state.session, queue=[*queue, request], finished=state.finished)
    return len(json.dumps(carried.to_json())) <= STATE_MAX_CHARS - _RECENT_MAX_CHARS


def parse_task_event(event: Any) -> ClassificationRequest | None:
    """The request an event carries, or None for one that carries none (ignored: it must not end the session).

    ``raise_event`` from Python arrives as JSON text (the extension re-serialises the body it got, which the
    SDK had already serialised); a raw ``sendEventPostUri`` POST of an object arrives as that object.
    """
    try:
        document = json.loads(event) if isinstance(event, str) else event
        request = ClassificationRequest.from_json(document)
    except (ValueError, TypeError, AttributeError):
        return None
    return request if isinstance(request.task_id, str) and request.task_id else None


@bp.orchestration_trigger(context_name="context", orchestration=SESSION_ORCHESTRATOR)
def classify_session(context: df.DurableOrchestrationContext) -> Generator[Any, Any]:
    payload = context.get_input()
    if not isinstance(payload, dict):
        raise TypeError(f"{SESSION_ORCHESTRATOR} takes a SessionState object as input, got {payload!r}")
    state = SessionState.from_json(payload)
    queue = list(state.queue)
    last: dict[str, Any] | None = None
    refused: str | None = None

    def accept(event: Any) -> None:
        nonlocal refused
        request = parse_task_event(event)
        if request is not None and request.task_id not in {r.task_id for r in queue} | set(state.recent):
            if has_room(state, queue, request):
                queue.append(request)
            else:
                refused = request.task_id
        context.set_custom_status(session_status(state, queue, last, refused))

    waiter = context.wait_for_external_event(SESSION_TASK_EVENT)
    context.set_custom_status(session_status(state, queue, last, refused))
    while not queue:  # idle: the first task wakes the session
        accept((yield waiter))
        waiter = context.wait_for_external_event(SESSION_TASK_EVENT)

    head = queue[0]
    child = context.call_sub_orchestrator(CLASSIFY_ORCHESTRATOR, head.to_json(), instance_id=head.task_id)
    while True:
        done = yield context.task_any([child, waiter])
        if done is child:
            break
        accept(waiter.result)
        waiter = context.wait_for_external_event(SESSION_TASK_EVENT)

    failed = isinstance(child.result, Exception)
    last = {
        "task_id": head.task_id,
        "runtimeStatus": "Failed" if failed else "Completed",
        "error": clipped(activity_error_message(child.result)) if failed else None,
    }
    queue.pop(0)
    context.set_custom_status(session_status(state, queue, last, refused))
    context.continue_as_new(
        SessionState(
            session=state.session,
            queue=queue,
            recent=[*state.recent, head.task_id][-RECENT_TASKS:],
            finished=state.finished + 1,
        ).to_json()
    )
