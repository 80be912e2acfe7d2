"""The last step of a task with a ``reply_to``: deliver its outcome, without changing that outcome.

The delivery activity is retried by the orchestration (``call_activity_with_retry``), so every attempt
and its error are in the task's history. Python's ``RetryOptions`` has a first interval and a number of
attempts but no back-off coefficient, so the attempts are evenly spaced (``DELIVERY_RETRY_INTERVAL_MS``).
Whatever happens, the task ends as it would have without ``reply_to``; its output says under
``delivery`` whether the outcome was delivered, and why not.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from contracts import DELIVER_ACTIVITY, ClassificationRequest, Delivery, DeliveryOutcome
from orchestrators.workflow import activity_error_message


def deliver_reply(
    context: df.DurableOrchestrationContext, request: ClassificationRequest, output: dict[str, Any]
) -> Generator[Any, Any, dict[str, Any]]:
    """``output``, with ``delivery`` added when the request named a ``reply_to``."""
    if not request.reply_to:
        return output
    document = {**output, "session": request.session} if request.session else output
    retry = df.RetryOptions(request.delivery_interval_ms, request.delivery_attempts)
    try:
        result = yield context.call_activity_with_retry(
            DELIVER_ACTIVITY, retry, Delivery(request.reply_to, document).to_json()
        )
        outcome = DeliveryOutcome.from_json(result)
    except Exception as exc:  # noqa: BLE001  the SDK raises bare Exception once the last attempt failed
        outcome = DeliveryOutcome(delivered=False, target=request.reply_to, error=activity_error_message(exc))
    return {**output, "delivery": outcome.to_json()}
