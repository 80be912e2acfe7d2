"""The last step of a task with a ``reply_to``: deliver its outcome, without changing that outcome.

The delivery activity is retried by the orchestration (``call_activity_with_retry``), so every attempt
and its error are in the task's history. Python's ``RetryOptions`` has a first interval and a number of
attempts but no back-off coefficient, so the attempts are evenly spaced (``DELIVERY_RETRY_INTERVAL_MS``).
Whatever happens, the task ends as it would have without ``reply_to``: a completed task's output says under
``delivery`` whether the outcome was delivered and why not; an orchestration that fails delivers a short
failure document first (:func:`deliver_failure`) and then fails with its own error.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from contracts import DELIVER_ACTIVITY, ClassificationRequest, Delivery, DeliveryOutcome
from orchestrators.workflow import activity_error_message


def deliver(
    context: df.DurableOrchestrationContext, reply_to: str, document: dict[str, Any], attempts: int, interval_ms: int
) -> Generator[Any, Any, DeliveryOutcome]:
    retry = df.RetryOptions(interval_ms, attempts)
    try:
        result = yield context.call_activity_with_retry(DELIVER_ACTIVITY, retry, Delivery(reply_to, document).to_json())
    except Exception as exc:  # noqa: BLE001  the SDK raises bare Exception once the last attempt failed
        return DeliveryOutcome(delivered=False, target=reply_to, error=activity_error_message(exc))
    return DeliveryOutcome.from_json(result)


def deliver_reply(
    context: df.DurableOrchestrationContext, request: ClassificationRequest, output: dict[str, Any]
) -> Generator[Any, Any, dict[str, Any]]:
    """``output``, with ``delivery`` added when the request named a ``reply_to``."""
    if not request.reply_to:
        return output
    document = {**output, "session": request.session} if request.session else output
    outcome = yield from deliver(
        context, request.reply_to, document, request.delivery_attempts, request.delivery_interval_ms
    )
    return {**output, "delivery": outcome.to_json()}


def _positive(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def deliver_failure(context: df.DurableOrchestrationContext, error: Exception) -> Generator[Any, Any]:
    """Tell the ``reply_to`` of a task whose orchestration fails, read from its input as far as it is usable."""
    payload = context.get_input()
    reply_to = payload.get("reply_to") if isinstance(payload, dict) else None
    if not isinstance(reply_to, str) or not reply_to:
        return
    assert isinstance(payload, dict)
    session = payload.get("session")
    document = {
        "task_id": context.instance_id,
        "status": "Failed",
        "runtimeStatus": "Failed",
        "error": activity_error_message(error),
        **({"session": session} if isinstance(session, str) else {}),
    }
    attempts = _positive(payload.get("delivery_attempts"), 1)
    yield from deliver(context, reply_to, document, attempts, _positive(payload.get("delivery_interval_ms"), 1000))
