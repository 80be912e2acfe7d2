"""JSON contracts between the HTTP API, the orchestrator, the activities and persistence.

Everything that crosses an activity boundary is recorded in orchestration history, so these
documents stay small (tensors travel as blob names) and plain (only JSON types). Each contract is a
frozen dataclass with ``to_json`` / ``from_json`` so both sides agree on one shape; the shape is the
version, so a change that breaks it needs a new field name, not a new meaning for an old one.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self
from urllib.parse import quote

PREPROCESS_ACTIVITY = "preprocess_images"  # input: PreprocessBatchInput; output: PreprocessBatchOutput
INFERENCE_ACTIVITY = "classify_batch"
PERSIST_ACTIVITY = "persist_results"
DISCARD_TENSORS_ACTIVITY = "discard_tensors"  # input: the instance id; output: how many blobs it deleted
CLASSIFY_ORCHESTRATOR = "classify_images"
SESSION_ORCHESTRATOR = "classify_session"  # one eternal instance per session: its tasks, in order
SESSION_TASK_EVENT = "task"  # the external event that hands a session a ClassificationRequest
DELIVER_ACTIVITY = "deliver_result"  # input: Delivery; output: DeliveryOutcome
#: A session's orchestration is ``session@<name>``: a client's task ids cannot contain ``@``, so no task takes it.
SESSION_INSTANCE_PREFIX = "session@"


#: What no instance id on Azure contains (Azure Storage keys refuse them), and what the extension's HTTP API
#: cannot carry in its path even encoded: it URL-decodes the whole path before matching, so ``/`` splits it.
_NOT_IN_INSTANCE_IDS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


def instance_id_for_client(ref: str) -> str | None:
    """``ref`` as the durable client's ``get_status`` must be given it, or None when no instance can have it.

    azure-functions-durable 1.x puts the id into its request URL as is, and the extension (and the local host)
    decode that path once, the extension ``+`` as a space too: unencoded, ``%5A1`` would ask about ``Z1``, and
    ``?`` or a newline about the list of all instances. So the id is percent-encoded whole, and one that no
    instance can have is not asked about. The HTTP API and the maintenance timer both ask through this.
    """
    if not ref or _NOT_IN_INSTANCE_IDS.search(ref):
        return None
    return quote(ref, safe="")


def session_instance_id(session: str) -> str:
    return f"{SESSION_INSTANCE_PREFIX}{session}"


def session_task_ids(custom_status: Any) -> frozenset[str]:
    """The tasks a session orchestration's custom status shows accepted and not finished: the running one and
    the queued ones (``orchestrators.session.session_status`` writes it; a queued task has no instance yet)."""
    if not isinstance(custom_status, dict):
        return frozenset()
    running = custom_status.get("running")
    queued = custom_status.get("queued")
    held = [running, *queued] if isinstance(queued, list) else [running]
    return frozenset(task_id for task_id in held if isinstance(task_id, str))


def session_queued_count(custom_status: Any) -> int:
    """How many tasks a session's custom status shows waiting behind the running one."""
    queued = custom_status.get("queued") if isinstance(custom_status, dict) else None
    return len(queued) if isinstance(queued, list) else 0


def session_refused(custom_status: Any) -> str | None:
    """The task the session last refused because its status had no room for it (``session_status``)."""
    refused = custom_status.get("refused") if isinstance(custom_status, dict) else None
    return refused if isinstance(refused, str) else None


_CANONICAL_RESNET = re.compile(r"resnet(\d+)")
_LEGACY_RESNET = re.compile(r"ResNet(\d+)")


def to_legacy_model_name(model: str) -> str:
    """ "resnet50" -> "ResNet50": the older API's ``model_type`` and the ``ModelType`` column that the existing
    reports filter on; other names unchanged."""
    match = _CANONICAL_RESNET.fullmatch(model)
    return f"ResNet{match.group(1)}" if match else model


def from_legacy_model_name(model: str) -> str:
    """Inverse of :func:`to_legacy_model_name`."""
    match = _LEGACY_RESNET.fullmatch(model)
    return f"resnet{match.group(1)}" if match else model


class _Json:
    """Round-trips a dataclass through plain JSON values, nested contracts included."""

    # Every contract is a dataclass: this declaration lets the type checker see that (DataclassInstance).
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        kwargs: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        for name, value in data.items():
            if name not in known:
                continue
            nested = _NESTED.get((cls.__name__, name))
            if nested is not None and value is not None:
                value = [nested.from_json(v) for v in value] if isinstance(value, list) else nested.from_json(value)
            kwargs[name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class ImageSource(_Json):
    """Where an image is read from: exactly one of ``blob`` ("container/path") or ``url``."""

    blob: str | None = None
    url: str | None = None
    name: str | None = None  # what the user called it (file name or URL), for reports

    @property
    def display_name(self) -> str:
        return self.name or self.blob or self.url or ""


@dataclass(frozen=True)
class ClassificationRequest(_Json):
    """Orchestration input, written once by a starter."""

    task_id: str  # the orchestration instance id
    models: list[str]  # canonical lower-case names, e.g. ["resnet18", "resnet50"]
    images: list[ImageSource]
    top_k: int
    submitted_at: str  # ISO-8601 UTC, stamped by the starter
    batch_size: int  # images per preprocessing activity and per inference activity
    retry_attempts: int  # attempts per activity for transient failures (blob read, database write)
    retry_interval_ms: int
    reply_to: str | None = None  # a queue name or an https callback URL that gets the outcome
    session: str | None = None  # tasks of one session run one at a time, in submission order
    delivery_attempts: int = 1  # attempts to deliver to reply_to (each one in the history)
    delivery_interval_ms: int = 1000
    persist_attempts: int | None = None  # attempts to persist; None: retry_attempts (inputs written before)
    persist_interval_ms: int | None = None


@dataclass(frozen=True)
class Delivery(_Json):
    """Input of the delivery activity: where the outcome goes and the document to send."""

    reply_to: str
    document: dict[str, Any]


@dataclass(frozen=True)
class DeliveryOutcome(_Json):
    """What became of a delivery; ``error`` says why it failed (the task's own outcome is unchanged)."""

    delivered: bool
    target: str  # "queue <name>" or the callback URL
    error: str | None = None


@dataclass(frozen=True)
class SessionState(_Json):
    """Input of each execution of a session orchestration (continue-as-new carries it on)."""

    session: str
    queue: list[ClassificationRequest] = field(default_factory=list)  # accepted, not yet finished; head runs
    recent: list[str] = field(default_factory=list)  # ids of the latest finished tasks: a repeated event is ignored
    finished: int = 0


@dataclass(frozen=True)
class PreprocessInput(_Json):
    """One image of a :class:`PreprocessBatchInput`, as the worker preprocesses it."""

    task_id: str
    image_index: int
    source: ImageSource
    models: list[str]  # tensors are made for each distinct reference transform of these models


@dataclass(frozen=True)
class ImageToPreprocess(_Json):
    image_index: int  # the image's position in the task
    source: ImageSource


@dataclass(frozen=True)
class PreprocessBatchInput(_Json):
    """Input of the preprocessing activity: up to a batch of one task's images."""

    task_id: str
    models: list[str]
    images: list[ImageToPreprocess]

    def each(self) -> list[PreprocessInput]:
        return [PreprocessInput(self.task_id, image.image_index, image.source, self.models) for image in self.images]


@dataclass(frozen=True)
class PreprocessOutput(_Json):
    """Either ``tensors`` (model name -> blob name of the stored tensor) or ``error``; ``model_errors`` says why
    a model has no tensor while the others have one (its weights setting names no transform)."""

    image_index: int
    tensors: dict[str, str] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    model_errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PreprocessBatchOutput(_Json):
    """One :class:`PreprocessOutput` per image of the batch, in the input's order."""

    images: list[PreprocessOutput]


@dataclass(frozen=True)
class BatchItem(_Json):
    image_index: int
    tensor_blob: str


@dataclass(frozen=True)
class InferenceInput(_Json):
    task_id: str
    model: str
    top_k: int
    items: list[BatchItem]


@dataclass(frozen=True)
class Prediction(_Json):
    label: str
    class_index: int
    probability: float


@dataclass(frozen=True)
class ImagePredictions(_Json):
    image_index: int
    top_k: list[Prediction]


@dataclass(frozen=True)
class InferenceOutput(_Json):
    """Top-k per image of one batch, or ``error`` for the whole batch (e.g. weights missing)."""

    model: str
    weights: str | None = None  # human label of the weights that produced the logits
    results: list[ImagePredictions] = field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ResultRecord(_Json):
    """One row of ``InferenceResults``: one image through one model (or why it failed)."""

    image_index: int
    image_name: str
    model: str
    weights: str | None
    label: str | None
    class_index: int | None
    confidence: float | None
    top_k: list[Prediction]
    started_at: str | None
    finished_at: str | None
    inference_ms: float | None
    error: str | None = None


@dataclass(frozen=True)
class TaskRecord(_Json):
    """One row of ``InferenceTasks`` plus its results: what the persist activity writes."""

    instance_id: str
    models: list[str]
    status: str  # "Completed" | "CompletedWithErrors" | "Failed"
    submitted_at: str
    processing_started_at: str | None
    processing_finished_at: str | None
    completed_at: str
    image_count: int
    error: str | None
    results: list[ResultRecord]


@dataclass(frozen=True)
class PersistOutput(_Json):
    """The database's ``TaskID`` and when the rows were committed (the end of the last activity)."""

    task_id: int
    persisted_at: str


_NESTED: dict[tuple[str, str], type[_Json]] = {
    ("ClassificationRequest", "images"): ImageSource,
    ("SessionState", "queue"): ClassificationRequest,
    ("PreprocessInput", "source"): ImageSource,
    ("ImageToPreprocess", "source"): ImageSource,
    ("PreprocessBatchInput", "images"): ImageToPreprocess,
    ("PreprocessBatchOutput", "images"): PreprocessOutput,
    ("InferenceInput", "items"): BatchItem,
    ("ImagePredictions", "top_k"): Prediction,
    ("InferenceOutput", "results"): ImagePredictions,
    ("ResultRecord", "top_k"): Prediction,
    ("TaskRecord", "results"): ResultRecord,
}
