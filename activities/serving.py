"""Model serving for the inference activity (``activities.inference``): one batch of stored tensors through one
cached model, top-k per image.

This module brings in torch and torchvision; loading the app does not import it (see ``activities.inference``).
The model cache lives for the worker process, so only the first batch after a start pays for loading
the weights. Weights that cannot be loaded are a permanent error for this model (returned, not raised,
so the orchestrator does not retry a download that cannot succeed); storage errors are raised and
retried.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from functools import lru_cache

import torch

from activities.checkpoints import fetch_checkpoint
from contracts import ImagePredictions, InferenceInput, InferenceOutput, Prediction
from inference.batcher import DynamicBatcher
from inference.cache import LoadedModel, ModelCache
from inference.errors import InvalidWeightsSpecError, WeightsUnavailableError
from inference.predict import classify, stack_crops
from inference.tensor_io import decode_tensor
from inference.torch_threads import compute_pass, configure_torch_threads, run_on_compute_thread, use_one_thread_here
from inference.weights import resolve_weights
from services import blob_store
from settings import Settings, get_settings

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def process_model_cache() -> ModelCache:
    """Built once per process (``cache_clear`` it to start over); reach it through :func:`model_cache`."""
    settings = get_settings()
    configure_torch_threads(settings.torch_num_threads, None)
    return ModelCache(precision=settings.inference_precision)


_model_cache_lock = threading.Lock()


def model_cache() -> ModelCache:
    """The process's one model cache. ``lru_cache`` alone lets concurrent first calls each build a cache,
    and each cache would then load its own copy of every model: the lock makes them share one."""
    with _model_cache_lock:
        return process_model_cache()


def load(model: str) -> LoadedModel:
    """The cached model with its configured weights (a blob-named checkpoint is fetched first)."""
    spec = fetch_checkpoint(get_settings().weights_spec(model), blob_store())
    return model_cache().get(model, spec)


_batchers: dict[int, DynamicBatcher] = {}
_batchers_lock = threading.Lock()


def batcher_for(model: LoadedModel) -> DynamicBatcher:
    """One batcher per loaded model and process: concurrent activities share its forward passes.

    Activities run on a thread pool; without a batcher, four single-image activities would run four
    forward passes at once and fight over the cores. Keyed by identity: cached models live as long as
    the process.
    """
    with _batchers_lock:
        batcher = _batchers.get(id(model))
        if batcher is None or batcher.closed:  # a failure closed it: the next request gets a new one
            settings = get_settings()
            batcher = DynamicBatcher(
                model,
                max_batch_size=settings.inference_batch_size,
                max_wait_ms=settings.dynamic_batch_max_wait_ms,
                streams=compute_streams(model, settings),
            )
            _batchers[id(model)] = batcher
        return batcher


def compute_streams(model: LoadedModel, settings: Settings) -> int:
    """``COMPUTE_STREAMS``, else one stream per torch thread on a CPU, where under load each pass then runs
    on a core of its own as the best raw pipeline does, and one on a GPU, which runs one pass at a time."""
    if settings.compute_streams is not None:
        return settings.compute_streams
    return settings.torch_num_threads if model.device.type == "cpu" else 1


def batching_on() -> bool:
    return get_settings().dynamic_batch_max_wait_ms > 0


def announce(model: LoadedModel, images: int) -> AbstractContextManager[None]:
    """Tell the model's batcher that ``images`` crops are on their way (its "expected callers" policy).

    Entered before the tensors are read from storage, so a batch that starts meanwhile waits for them,
    while a lone task, which nobody announced company for, runs at once. Nothing when batching is off.
    """
    return batcher_for(model).expecting(images) if batching_on() else nullcontext()


def predict(model: LoadedModel, crops: torch.Tensor, top_k: int) -> list[list[Prediction]]:
    """Through the dynamic batcher, or straight to the model (on the compute thread) when it is switched off."""
    if batching_on():
        return batcher_for(model).classify(crops, top_k)
    return run_on_compute_thread(classify_as_a_pass, model, crops, top_k)


def classify_as_a_pass(model: LoadedModel, crops: torch.Tensor, top_k: int) -> list[list[Prediction]]:
    """:func:`classify` counted among the process's running passes, which share the cores between them."""
    with compute_pass():
        return classify(model, crops, top_k)


#: Why a model cannot be loaded that a retry would not mend: weights missing here, or a setting naming none.
NOT_LOADABLE = (WeightsUnavailableError, InvalidWeightsSpecError)


def _unavailable(name: str, exc: WeightsUnavailableError | InvalidWeightsSpecError) -> None:
    log.warning("%s is not loaded: %s", name, " ".join(str(exc).split()))


def prewarm(models: tuple[str, ...]) -> None:
    """Load ``models`` now; a model without weights is one warning line saying what to do.

    A failure is logged, not raised: a task for that model will then report the same error itself.
    Missing weights are the common case on a machine without internet, so they get the advice alone,
    not a traceback that buries the function listing.
    """
    use_one_thread_here()  # its loads' parallel copies would give this thread a team while the first tasks run
    for name in models:
        try:
            model = load(name)
            log.info("prewarmed %s with %s in %.0f ms", name, model.weights.label, model.load_ms)
        except NOT_LOADABLE as exc:
            _unavailable(name, exc)
        except Exception:
            log.exception("could not prewarm %s", name)


def report_weights(models: tuple[str, ...]) -> None:
    """Find (or download) and check each model's weights without loading a model; say what is missing.

    The local host's dispatcher has this done once at start, before it prints the function listing (in a
    child process, :func:`report_weights_as_json_lines`): each problem is then one line, said once, with the
    listing below it; the worker processes, which load the same weights, stay quiet about them (see
    ``activities.inference``).
    """
    for name in models:
        try:
            weights = resolve_weights(name, fetch_checkpoint(get_settings().weights_spec(name), blob_store()))
            log.info("%s will use %s", name, weights.label)
        except NOT_LOADABLE as exc:
            _unavailable(name, exc)
        except Exception:
            log.exception("could not check the weights of %s", name)


class _JsonLines(logging.Handler):
    """Each record as one JSON line on stdout, ``[logger name, level, text]`` (with its traceback, if any)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(json.dumps([record.name, record.levelno, self.format(record)]), flush=True)
        except Exception:  # noqa: BLE001  logging's contract: a handler never raises into the code that logged
            self.handleError(record)


def report_weights_as_json_lines(models: list[str]) -> None:
    """:func:`report_weights` in a child process: what it logs goes to stdout, for the parent to log again."""
    handler = _JsonLines()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    report_weights(tuple(models))


def infer(request: InferenceInput) -> InferenceOutput:
    use_one_thread_here()  # first: a model loaded on this pool thread would otherwise give it a team
    started = datetime.now(UTC)
    clock = time.perf_counter()
    try:
        model = load(request.model)
    except NOT_LOADABLE as exc:
        return InferenceOutput(model=request.model, error=str(exc), started_at=started.isoformat())
    store = blob_store()
    with announce(model, len(request.items)):
        crops = [decode_tensor(store.get(item.tensor_blob)) for item in request.items]
        predictions = predict(model, stack_crops(model, crops), request.top_k)
    return InferenceOutput(
        model=request.model,
        weights=model.provenance,
        results=[
            ImagePredictions(image_index=item.image_index, top_k=top)
            for item, top in zip(request.items, predictions, strict=True)
        ],
        started_at=started.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        duration_ms=round((time.perf_counter() - clock) * 1000.0, 3),
    )
