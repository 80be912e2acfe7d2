"""Pure decisions of the classification workflow: batching, progress and the final output.

Kept apart from the orchestrator so that it can be tested without a host, and so that the
orchestrator itself stays a short list of ``yield`` statements that is obviously deterministic.
Nothing here reads a clock, the environment or storage: every time comes from an argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts import (
    BatchItem,
    ClassificationRequest,
    ImageToPreprocess,
    InferenceOutput,
    PersistOutput,
    PreprocessBatchInput,
    PreprocessBatchOutput,
    PreprocessOutput,
    ResultRecord,
    TaskRecord,
)

Outcome = tuple[int, Any, str | None]  # an activity's (position among those scheduled, result, error message)


@dataclass(frozen=True)
class BatchOutcome:
    """What one inference activity returned for the images it was given."""

    items: list[BatchItem]
    output: InferenceOutput


def progress(stage: str, images_total: int, images_done: int, **extra: Any) -> dict[str, Any]:
    """The ``customStatus`` shown while running; one shape for every stage so clients can rely on it."""
    return {"stage": stage, "images_total": images_total, "images_done": images_done, **extra}


def plan_preprocessing(request: ClassificationRequest) -> list[PreprocessBatchInput]:
    """The task's images in batches of ``request.batch_size``, one preprocessing activity each, in image order."""
    images = [ImageToPreprocess(index, source) for index, source in enumerate(request.images)]
    size = request.batch_size
    return [
        PreprocessBatchInput(request.task_id, list(request.models), images[i : i + size])
        for i in range(0, len(images), size)
    ]


def preprocessed_images(
    batches: list[PreprocessBatchInput], outcomes: Iterable[Outcome]
) -> dict[int, PreprocessOutput]:
    """Each image's preprocessing by its index; the images of a batch whose activity failed carry its error."""
    preprocessed: dict[int, PreprocessOutput] = {}
    for position, result, error in outcomes:
        if error is None:
            for output in PreprocessBatchOutput.from_json(result).images:
                preprocessed[output.image_index] = output
        else:
            for image in batches[position].images:
                preprocessed[image.image_index] = PreprocessOutput(image_index=image.image_index, error=error)
    return preprocessed


def images_to_retry_alone(
    batches: list[PreprocessBatchInput], outcomes: Iterable[Outcome]
) -> list[PreprocessBatchInput]:
    """Each image of a batch that failed after its retries, as a batch of its own, in image order.

    A batch fails as a whole when one of its images raises (a URL whose server answers 503 raises, so that
    the activity is retried): tried alone, that image fails alone and the others of its batch go on.
    """
    return [
        dataclasses.replace(batches[position], images=[image])
        for position, _, error in outcomes
        if error is not None and len(batches[position].images) > 1
        for image in batches[position].images
    ]


def images_settled(batches: list[PreprocessBatchInput], outcomes: Iterable[Outcome]) -> int:
    """Images whose preprocessing is over (their batch succeeded, or failed with no other image to spare)."""
    return sum(
        len(batches[position].images)
        for position, _, error in outcomes
        if error is None or len(batches[position].images) == 1
    )


def plan_batches(preprocessed: Iterable[PreprocessOutput], model: str, batch_size: int) -> list[list[BatchItem]]:
    """Group the images that have a tensor for ``model`` into batches, in image order."""
    items = [
        BatchItem(image_index=p.image_index, tensor_blob=p.tensors[model])
        for p in sorted(preprocessed, key=lambda p: p.image_index)
        if p.error is None and model in p.tensors
    ]
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


def activity_error_message(error: BaseException) -> str:
    """The useful first line of an activity failure as the Durable extension reports it.

    The extension formats failures as ``Activity function 'x' failed: Type: message`` followed by
    details of the .NET exception; users need the first line, not the .NET envelope.
    """
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _span_ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000.0, 3)


def _bounds(values: Iterable[str | None]) -> tuple[datetime | None, datetime | None]:
    moments = [m for m in (_parse(v) for v in values) if m is not None]
    return (min(moments), max(moments)) if moments else (None, None)


#: The error of an image and model that neither failed nor got a prediction (a bug, should it ever show).
NO_RESULT = "no result was produced"


def build_results(
    request: ClassificationRequest,
    preprocessed: Mapping[int, PreprocessOutput],
    inference: Mapping[str, list[BatchOutcome]],
) -> list[ResultRecord]:
    """One record per image and model: the prediction, or the reason there is none."""
    by_image: dict[tuple[str, int], tuple[InferenceOutput, int]] = {}
    batch_errors: dict[tuple[str, int], str] = {}
    for model, outcomes in inference.items():
        for outcome in outcomes:
            for position, result in enumerate(outcome.output.results):
                by_image[(model, result.image_index)] = (outcome.output, position)
            if outcome.output.error is not None:
                for item in outcome.items:
                    batch_errors[(model, item.image_index)] = outcome.output.error

    records: list[ResultRecord] = []
    for index, source in enumerate(request.images):
        prep = preprocessed[index]
        for model in request.models:
            found = by_image.get((model, index))
            if found is not None:
                output, position = found
                top = output.results[position].top_k
                records.append(
                    ResultRecord(
                        image_index=index,
                        image_name=source.display_name,
                        model=model,
                        weights=output.weights,
                        label=top[0].label if top else None,
                        class_index=top[0].class_index if top else None,
                        confidence=top[0].probability if top else None,
                        top_k=list(top),
                        started_at=output.started_at,
                        finished_at=output.finished_at,
                        inference_ms=output.duration_ms,
                    )
                )
                continue
            error = prep.error or prep.model_errors.get(model) or batch_errors.get((model, index)) or NO_RESULT
            records.append(
                ResultRecord(
                    image_index=index,
                    image_name=source.display_name,
                    model=model,
                    weights=None,
                    label=None,
                    class_index=None,
                    confidence=None,
                    top_k=[],
                    started_at=None,
                    finished_at=None,
                    inference_ms=None,
                    error=error,
                )
            )
    return records


def task_status(results: list[ResultRecord]) -> str:
    failed = sum(1 for r in results if r.error is not None)
    if failed == 0:
        return "Completed"
    return "Failed" if failed == len(results) else "CompletedWithErrors"


def build_task_record(
    request: ClassificationRequest,
    preprocessed: Mapping[int, PreprocessOutput],
    inference: Mapping[str, list[BatchOutcome]],
    completed_at: datetime,
) -> TaskRecord:
    """Everything the persist activity writes; also the basis of the orchestration output."""
    results = build_results(request, preprocessed, inference)
    started, _ = _bounds(p.started_at for p in preprocessed.values())
    _, finished = _bounds(o.output.finished_at for outs in inference.values() for o in outs)
    if finished is None:
        _, finished = _bounds(p.finished_at for p in preprocessed.values())
    status = task_status(results)
    error = None
    if status == "Failed":
        reasons = sorted({r.error for r in results if r.error})
        error = "; ".join(reasons)
    return TaskRecord(
        instance_id=request.task_id,
        models=list(request.models),
        status=status,
        submitted_at=request.submitted_at,
        processing_started_at=_iso(started),
        processing_finished_at=_iso(finished),
        completed_at=completed_at.isoformat(),
        image_count=len(request.images),
        error=error,
        results=results,
    )


def build_output(
    request: ClassificationRequest,
    preprocessed: Mapping[int, PreprocessOutput],
    record: TaskRecord,
    persisted: PersistOutput | None,
    persist_error: str | None,
) -> dict[str, Any]:
    """The orchestration output: per image, per model top-k (or error), weights and timings."""
    submitted = _parse(record.submitted_at)
    started = _parse(record.processing_started_at)
    finished = _parse(record.processing_finished_at)
    prep_start, _ = _bounds(p.started_at for p in preprocessed.values())
    _, prep_end = _bounds(p.finished_at for p in preprocessed.values())
    inf_start, _ = _bounds(r.started_at for r in record.results)
    _, inf_end = _bounds(r.finished_at for r in record.results)
    weights = {r.model: r.weights for r in record.results if r.weights}

    images = []
    for index, source in enumerate(request.images):
        prep = preprocessed[index]
        predictions: dict[str, Any] = {}
        for r in record.results:
            if r.image_index != index:
                continue
            if r.error is not None:
                predictions[r.model] = {"error": r.error}
            else:
                predictions[r.model] = {
                    "weights": r.weights,
                    "top_k": [p.to_json() for p in r.top_k],
                    "inference_ms": r.inference_ms,
                }
        images.append(
            {
                "index": index,
                "name": source.display_name,
                "width": prep.width,
                "height": prep.height,
                "preprocess_ms": prep.duration_ms,
                "error": prep.error,
                "predictions": predictions,
            }
        )
    return {
        "task_id": record.instance_id,
        "status": record.status,
        "models": list(request.models),
        "top_k": request.top_k,
        "weights": weights,
        "timings": {
            "submitted_at": record.submitted_at,
            "processing_started_at": record.processing_started_at,
            "processing_finished_at": record.processing_finished_at,
            "completed_at": record.completed_at,
            "persisted_at": persisted.persisted_at if persisted else None,
            "queue_ms": _span_ms(submitted, started),
            "preprocess_ms": _span_ms(prep_start, prep_end),
            "inference_ms": _span_ms(inf_start, inf_end),
            "total_ms": _span_ms(submitted, finished),
        },
        "images": images,
        "error": record.error,
        "database_task_id": persisted.task_id if persisted else None,
        "persist_error": persist_error,
    }
