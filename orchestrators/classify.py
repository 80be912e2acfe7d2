"""The classification orchestration: preprocessing and per-model inference fanned out in batches, persistence.

Replayed from history on every episode, so it only yields activity calls and makes pure decisions
(``orchestrators.workflow``); time comes from ``context.current_utc_datetime``. A failed image or a
failed model is recorded and the rest goes on; only an orchestration-level bug fails the instance.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Generator
from typing import Any

import azure.durable_functions as df

from contracts import (
    CLASSIFY_ORCHESTRATOR,
    DISCARD_TENSORS_ACTIVITY,
    INFERENCE_ACTIVITY,
    PERSIST_ACTIVITY,
    PREPROCESS_ACTIVITY,
    ClassificationRequest,
    InferenceInput,
    InferenceOutput,
    PersistOutput,
    PreprocessBatchInput,
)
from orchestrators.reply import deliver_failure, deliver_reply
from orchestrators.workflow import (
    BatchOutcome,
    Outcome,
    activity_error_message,
    build_output,
    build_task_record,
    images_settled,
    images_to_retry_alone,
    plan_batches,
    plan_preprocessing,
    preprocessed_images,
    progress,
)

bp = df.Blueprint()


def wait_each(
    context: df.DurableOrchestrationContext,
    tasks: list[Any],
    on_done: Callable[[list[Outcome]], None],
) -> Generator[Any, Any, list[Outcome]]:
    """Wait for every task, tolerating failures, calling ``on_done(outcomes)`` after each completion.

    ``task_all`` fails as soon as one child fails, which would lose the other images' results; a
    ``task_any`` loop keeps every outcome and lets the custom status advance as work completes.
    """
    positions = {id(task): position for position, task in enumerate(tasks)}
    pending = list(tasks)
    outcomes: list[Outcome] = []
    while pending:
        done = yield context.task_any(pending)
        pending.remove(done)
        if isinstance(done.result, Exception):
            outcomes.append((positions[id(done)], None, activity_error_message(done.result)))
        else:
            outcomes.append((positions[id(done)], done.result, None))
        on_done(outcomes)
    return sorted(outcomes, key=lambda outcome: outcome[0])


def discard_tensors(context: df.DurableOrchestrationContext) -> Generator[Any, Any]:
    """Delete this instance's tensors when the task will not be persisted (persisting deletes them
    otherwise). A failure here is left to the maintenance sweep rather than masking the task's outcome."""
    with contextlib.suppress(Exception):  # the SDK raises bare Exception for a failed activity
        yield context.call_activity(DISCARD_TENSORS_ACTIVITY, context.instance_id)


def preprocess_batches(
    context: df.DurableOrchestrationContext,
    batches: list[PreprocessBatchInput],
    retry: df.RetryOptions,
    total: int,
    settled: int,
) -> Generator[Any, Any, list[Outcome]]:
    """One retried preprocessing activity per batch; the custom status counts the images settled so far."""
    tasks = [context.call_activity_with_retry(PREPROCESS_ACTIVITY, retry, batch.to_json()) for batch in batches]
    return (
        yield from wait_each(
            context,
            tasks,
            lambda outcomes: context.set_custom_status(
                progress("preprocessing", total, settled + images_settled(batches, outcomes))
            ),
        )
    )


@bp.orchestration_trigger(context_name="context", orchestration=CLASSIFY_ORCHESTRATOR)
def classify_images(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """The task, and on an orchestration failure the cleanup of its tensors and the failure's delivery to
    ``reply_to`` before the failure is recorded."""
    try:
        return (yield from classify(context))
    except Exception as error:
        yield from discard_tensors(context)
        yield from deliver_failure(context, error)
        raise


def classify(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    # The instance id, not the input's task_id: restartPostUri starts a new instance with the old input,
    # and its tensors and rows must not land under (and overwrite) the finished task's.
    payload = context.get_input()
    if not isinstance(payload, dict):
        raise TypeError(f"{CLASSIFY_ORCHESTRATOR} takes a ClassificationRequest object as input, got {payload!r}")
    request = dataclasses.replace(ClassificationRequest.from_json(payload), task_id=context.instance_id)
    retry = df.RetryOptions(request.retry_interval_ms, request.retry_attempts)
    total = len(request.images)

    context.set_custom_status(progress("preprocessing", total, 0))
    prep_batches = plan_preprocessing(request)
    prep_outcomes = yield from preprocess_batches(context, prep_batches, retry, total, 0)
    preprocessed = preprocessed_images(prep_batches, prep_outcomes)
    alone = images_to_retry_alone(prep_batches, prep_outcomes)
    if alone:
        settled = images_settled(prep_batches, prep_outcomes)
        preprocessed.update(
            preprocessed_images(alone, (yield from preprocess_batches(context, alone, retry, total, settled)))
        )

    batches = [
        (model, items)
        for model in request.models
        for items in plan_batches(preprocessed.values(), model, request.batch_size)
    ]
    images_per_batch = [len(items) for _, items in batches]
    work_total = sum(images_per_batch)
    context.set_custom_status(progress("inference", total, total, predictions_total=work_total, predictions_done=0))
    inference_tasks = [
        context.call_activity_with_retry(
            INFERENCE_ACTIVITY,
            retry,
            InferenceInput(request.task_id, model, request.top_k, items).to_json(),
        )
        for model, items in batches
    ]
    inference_outcomes = yield from wait_each(
        context,
        inference_tasks,
        lambda outcomes: context.set_custom_status(
            progress(
                "inference",
                total,
                total,
                predictions_total=work_total,
                predictions_done=sum(images_per_batch[position] for position, _, _ in outcomes),
            )
        ),
    )
    inference: dict[str, list[BatchOutcome]] = {model: [] for model in request.models}
    for position, result, error in inference_outcomes:
        model, items = batches[position]
        output = InferenceOutput.from_json(result) if error is None else InferenceOutput(model=model, error=error)
        inference[model].append(BatchOutcome(items=items, output=output))

    record = build_task_record(request, preprocessed, inference, context.current_utc_datetime)
    context.set_custom_status(progress("persisting", total, total))
    persisted: PersistOutput | None = None
    persist_error: str | None = None
    try:
        persist_retry = df.RetryOptions(
            request.persist_interval_ms or request.retry_interval_ms, request.persist_attempts or request.retry_attempts
        )
        result = yield context.call_activity_with_retry(PERSIST_ACTIVITY, persist_retry, record.to_json())
        persisted = PersistOutput.from_json(result)
    except Exception as exc:  # noqa: BLE001  the SDK raises bare Exception for a failed activity; results stay in the output
        persist_error = activity_error_message(exc)
        yield from discard_tensors(context)

    context.set_custom_status(progress("done", total, total, status=record.status))
    task_output = build_output(request, preprocessed, record, persisted, persist_error)
    return (yield from deliver_reply(context, request, task_output))
