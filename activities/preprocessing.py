"""The preprocess activity's work (``activities.preprocess``): a batch of a task's images in, one stored tensor per
image and distinct transform out.

The tensor is the uint8 resize + centre crop of the weights' own ``transforms()``; normalisation
happens at inference, which keeps blobs four times smaller than float32 and the logits identical.
It is stored without zlib: compression saved a third of 147 KiB but cost ~2.7 ms of CPU per image
(encode + decode), which the system benchmark showed as lost throughput on a 2-core box.
Models whose weights share a transform share one tensor blob.

One activity takes up to an inference batch of images rather than one image: each activity is a
round trip through the task hub and an entry in the history every later episode replays, and with one per
image the host spent half as much CPU again on 8-image tasks (README, "Performance"). The images of a batch
are still fetched and decoded in parallel, on the worker's preprocessing threads; one that raises fails
the batch, which the orchestrator then retries image by image.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime
from functools import cache

from activities.checkpoints import as_file_spec
from activities.sources import ImageSourceError, read_image_bytes
from contracts import PreprocessBatchInput, PreprocessBatchOutput, PreprocessInput, PreprocessOutput
from inference.errors import InvalidImageError, InvalidWeightsSpecError
from inference.preprocess import crop_uint8, decode_image
from inference.tensor_io import encode_tensor
from inference.torch_threads import use_one_thread_here
from inference.weights import ResolvedWeights, resolve_weights
from services import blob_store
from settings import Settings, get_settings


@cache
def preprocessing_weights(model: str, spec: str) -> ResolvedWeights:
    """The weights' transform, without reading the weights file: preprocessing never needs the file,
    so an image is not failed because a model's weights are missing (inference reports that)."""
    return resolve_weights(model, as_file_spec(spec), check_file=False)


def tensor_blob_name(container: str, task_id: str, image_index: int, transform_key: str) -> str:
    return f"{container}/{task_id}/{image_index}-{transform_key}.u8"


_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def decode_slots(count: int) -> threading.BoundedSemaphore:
    """The worker process's decode slots: ``MAX_DECODE_BYTES`` bounds one image, and a worker preprocesses many
    images at once (``PREPROCESS_THREADS``, 16 by default), so without them its decode memory would be 16 budgets.
    Made under a lock: the first images of a cold worker, decoded at once, must share one set of slots."""
    with _slots_lock:
        slots = _slots.get(count)
        if slots is None:
            slots = _slots[count] = threading.BoundedSemaphore(count)
        return slots


def decode_and_crop(
    data: bytes, weights: list[ResolvedWeights], settings: Settings
) -> tuple[int, int, dict[str, bytes]]:
    """Width, height and the encoded crop per distinct transform; the decoded image lives only inside a slot."""
    with decode_slots(settings.max_concurrent_decodes):
        image = decode_image(
            data,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            max_decode_bytes=settings.max_decode_bytes,
            resize_size=max((w.resize_size for w in weights), default=0),
        )
        width, height = image.size
        crops = {w.transform_key: encode_tensor(crop_uint8(image, w), w.transform_key, compress=False) for w in weights}
        del image  # before the slot is given back
    return width, height, crops


def transforms_by_model(models: list[str], settings: Settings) -> tuple[dict[str, ResolvedWeights], dict[str, str]]:
    """Each model's weights, for its transform, and why a model has none: a malformed weights setting of one
    model fails that model only (inference reports the same), never the image for the other models."""
    weights: dict[str, ResolvedWeights] = {}
    errors: dict[str, str] = {}
    for model in models:
        try:
            weights[model] = preprocessing_weights(model, settings.weights_spec(model))
        except InvalidWeightsSpecError as exc:
            errors[model] = f"{model}: {exc}"
    return weights, errors


def preprocess(request: PreprocessInput) -> PreprocessOutput:
    use_one_thread_here()  # the crop's tensor copy would otherwise give this pool thread an OpenMP team
    settings = get_settings()
    store = blob_store()
    started = datetime.now(UTC)
    clock = time.perf_counter()
    weights_by_model, model_errors = transforms_by_model(request.models, settings)
    if not weights_by_model:  # no model can take the image: reading it would be wasted
        return PreprocessOutput(
            image_index=request.image_index,
            started_at=started.isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            model_errors=model_errors,
        )
    try:
        data = read_image_bytes(request.source, store, settings)
        width, height, crops = decode_and_crop(data, list(weights_by_model.values()), settings)
    except (ImageSourceError, InvalidImageError) as exc:
        return PreprocessOutput(
            image_index=request.image_index,
            started_at=started.isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            error=f"{request.source.display_name}: {exc}",
        )
    blobs_by_transform = {
        key: tensor_blob_name(settings.tensor_container, request.task_id, request.image_index, key) for key in crops
    }
    for key, name in blobs_by_transform.items():
        store.put(name, crops[key], "application/octet-stream")
    tensors = {model: blobs_by_transform[weights.transform_key] for model, weights in weights_by_model.items()}
    return PreprocessOutput(
        image_index=request.image_index,
        tensors=tensors,
        width=width,
        height=height,
        started_at=started.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        duration_ms=round((time.perf_counter() - clock) * 1000.0, 3),
        model_errors=model_errors,
    )


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def preprocessing_threads(count: int) -> ThreadPoolExecutor:
    """The worker process's preprocessing threads, shared by its activities: a batch's images are fetched
    (network I/O on Azure) and decoded in parallel, and the decode slots still bound the decode memory.
    Made under a lock: two activities starting at once must not each start a pool of ``count`` threads."""
    with _pools_lock:
        pool = _pools.get(count)
        if pool is None:
            pool = _pools[count] = ThreadPoolExecutor(max_workers=count, thread_name_prefix="preprocess")
        return pool


def preprocess_batch(request: PreprocessBatchInput) -> PreprocessBatchOutput:
    """Every image of ``request``, in parallel. A bad image is that image's error; a failure that a retry may
    mend (storage) is raised once every image has finished, so a retry never races this attempt's writes."""
    pool = preprocessing_threads(get_settings().preprocess_threads)
    futures = [pool.submit(preprocess, image) for image in request.each()]
    wait(futures)
    return PreprocessBatchOutput(images=[future.result() for future in futures])
